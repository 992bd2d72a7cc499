"""A PNG grid of original and augmented samples, to check an augmentation by eye.

    python -m cnn_jax.data.preview --dataset=digits --augment="rotate(15)|crop(pad=4)" \\
        --out=grid.png

Row i shows example i: the original first, then `--copies` augmented versions.
"""

from __future__ import annotations

from typing import Sequence

from absl import flags

from cnn_jax import cli
from cnn_jax.data.augment import preview_grid

_DATASET = flags.DEFINE_string("dataset", "digits", "dataset name")
_SPLIT = flags.DEFINE_string("split", "train", "split to draw examples from")
_AUGMENT = flags.DEFINE_string("augment", "flip_lr|crop(pad=4)", "augmentation spec")
_OUT = flags.DEFINE_string("out", "augment_preview.png", "output PNG")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 32, "resize images to this size")
_EXAMPLES = flags.DEFINE_integer("examples", 6, "rows: number of examples")
_COPIES = flags.DEFINE_integer("copies", 7, "augmented versions per example")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed of the augmentation")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir")


def main(argv: Sequence[str]) -> None:
  del argv
  preview_grid.write_preview(
      _OUT.value,
      _DATASET.value,
      _AUGMENT.value,
      _SPLIT.value,
      _IMAGE_SIZE.value,
      _EXAMPLES.value,
      _COPIES.value,
      _SEED.value,
      _DATA_DIR.value,
  )
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  cli.run(main)
