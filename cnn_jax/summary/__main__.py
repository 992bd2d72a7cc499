"""Prints a zoo model's per-layer table: output volume, parameters and MACs.

python -m cnn_jax.summary --model resnet50 --image_size 224
"""

from __future__ import annotations

from typing import Sequence

from absl import flags

from cnn_jax import cli, summary

_MODEL = flags.DEFINE_string("model", "lenet5", "model name; see cnn_jax.models.names()")
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", None, "input height = width (default: the paper's)"
)
_CHANNELS = flags.DEFINE_integer("channels", None, "input channels (default: the paper's)")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", None, "output classes (default: the paper's)")


def main(argv: Sequence[str]) -> None:
  del argv
  print(summary.paper_table(_MODEL.value, _IMAGE_SIZE.value, _CHANNELS.value, _NUM_CLASSES.value))


if __name__ == "__main__":
  cli.run(main)
