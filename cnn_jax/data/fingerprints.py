"""A split's fingerprint: a short hash of the files it is read from, the key of caches."""

from __future__ import annotations

import hashlib
import os

from cnn_jax.data import folder_splits, image_folder, preparation


def fingerprint(name: str, split: str, data_dir: str | None = None) -> str:
  """A short hash of the files a split is read from: the key of caches computed from it.

  Cheap: only file names, sizes and modification times are read. For an
  image folder, the split folder's images; for a TFDS dataset, the files of
  its prepared version folder (an embedded dataset is prepared first).
  Replacing the data changes the hash, so a stale cache is never used.

  Args:
    name: a dataset name as `load` takes it.
    split: a split as `load` takes it.
    data_dir: TFDS data dir (default `preparation.default_data_dir()`).

  Returns:
    16 hex digits.

  Raises:
    DataError: if the dataset or split folder is missing, as in `load`.
  """
  root = folder_splits.folder_root(name)
  if root is not None:
    return image_folder.fingerprint(folder_splits.split_folder(root, split))
  ds_builder = preparation.prepared_builder(name, data_dir)
  digest = hashlib.sha256()
  # Every split's files: a split such as "train[:10%]" needs no parsing here,
  # and a dataset is regenerated as a whole anyway.
  for path in sorted(ds_builder.data_path.iterdir(), key=lambda p: p.name):
    digest.update(f"{path.name}\t{_size_and_mtime(path)}\n".encode())
  return digest.hexdigest()[:16]


def _size_and_mtime(path) -> str:
  """A file's size and modification time (in nanoseconds where the file system has them)."""
  if "://" not in os.fspath(path):  # local: os.stat has the finer mtime
    stat = os.stat(path)
    return f"{stat.st_size} {stat.st_mtime_ns}"
  stat = path.stat()  # a cloud bucket (gs://...): whole seconds
  return f"{stat.length} {stat.mtime}"
