"""Prepares a TFDS dataset once, in the array_record format Grain reads.

    python -m cnn_jax.data.prepare --dataset=cifar10 [--data_dir=DIR]

Downloading needs network, and most TFDS builders need TensorFlow to
prepare (pip install -e '.[prepare]'); training afterwards needs neither.
The embedded `digits` is prepared automatically on first use.
"""

from __future__ import annotations

from typing import Sequence

from absl import flags, logging

from cnn_jax import errors
from cnn_jax.data import sources

_DATASET = flags.DEFINE_string("dataset", "digits", "TFDS dataset name, e.g. cifar10")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir (default $TFDS_DATA_DIR "
                                "or ~/tensorflow_datasets)")


def prepare(name: str, data_dir: str | None = None) -> str:
  """Downloads and converts a dataset to array_record.

  Args:
    name: TFDS dataset name.
    data_dir: TFDS data dir.

  Returns:
    The folder the dataset was written to.

  Raises:
    DataError: if TFDS knows no such dataset.
  """
  if name in sources.EMBEDDED:  # prepared as on first use: one line, no download
    return str(sources.prepared_builder(name, data_dir).data_path)
  ds_builder = sources.builder(name, data_dir)
  ds_builder.download_and_prepare(file_format="array_record")
  return str(ds_builder.data_path)


def main(argv: Sequence[str]) -> None:
  del argv
  # TFDS and JAX log every file and backend they touch at INFO (as the
  # training CLI, show warnings and errors only unless --verbosity is given).
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  print(f"prepared {_DATASET.value} in {prepare(_DATASET.value, _DATA_DIR.value)}")


if __name__ == "__main__":
  errors.run(main)
