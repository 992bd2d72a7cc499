"""TFDS builders found by name, and the datasets cnn_jax prepares offline, once.

The datasets in `OFFLINE` need neither network nor TensorFlow and are
prepared on first use: the embedded `digits`, and `mnist` and
`fashion_mnist` and their scenes (`mnist_scenes`, `fashion_mnist_scenes`:
see `scenes`) when their idx files are installed (see `idx`). Others are
prepared once with `python -m cnn_jax.data.prepare`.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os

import tensorflow_datasets as tfds

from cnn_jax.data import digits as _digits  # registers the builder
from cnn_jax.data import idx, mnist, scenes  # scenes registers its builders
from cnn_jax.data.quiet_tfds import quiet_tfds
from cnn_jax.errors import DataError

# Datasets we can prepare ourselves, without network.
OFFLINE = ("digits", *mnist.BUILDERS, *scenes.BUILDERS)
# Datasets made from idx files, which --from can point to.
FROM_IDX_FILES = (*idx.DATASETS, *scenes.BUILDERS)


def default_data_dir() -> str:
  """TFDS's data dir: $TFDS_DATA_DIR or ~/tensorflow_datasets."""
  return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def prepare_command(name: str, data_dir: str) -> str:
  """The command that prepares a dataset, quoted in error messages."""
  return f"python -m cnn_jax.data.prepare --dataset={name} --data_dir={data_dir}"


def builder(name: str, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
  """The TFDS builder of a dataset, with a clear error for unknown names.

  Args:
    name: a TFDS name such as "cifar10" or "mnist:3.0.1", or "digits".
    data_dir: TFDS data dir (default `default_data_dir()`).

  Returns:
    The builder (nothing is downloaded or prepared).

  Raises:
    DataError: if TFDS knows no such dataset.
  """
  data_dir = data_dir or default_data_dir()
  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    first_line = str(e).splitlines()[0]
    raise DataError(
        f"unknown dataset {name!r} ({first_line}); use a TFDS name such as "
        "'mnist' or 'cifar10', 'digits', or 'folder:/path/to/images'"
    ) from None


def is_prepared(ds_builder: tfds.core.DatasetBuilder) -> bool:
  """`ds_builder.is_prepared()`, without TFDS's warnings when it is not.

  TFDS logs "Variant folder ... has no dataset_info.json" for a version
  folder that does not exist yet, which is the normal state of a dataset
  before its first use, not a problem; a folder that exists but is
  incomplete keeps the warning.
  """
  return ds_builder.data_path.exists() and ds_builder.is_prepared()


def offline_builder(
    name: str, data_dir: str, from_dir: str | None = None
) -> tuple[tfds.core.DatasetBuilder, str]:
  """A builder that prepares one of `OFFLINE` without network, and what it reads.

  Args:
    name: a name in `OFFLINE`.
    data_dir: TFDS data dir.
    from_dir: for `FROM_IDX_FILES`, the folder of the four files (default:
      the offline installs', see `idx.find`).

  Returns:
    (builder, a few words on its source for the line printed when preparing).

  Raises:
    DataError: when an idx dataset's files are not installed or given.
  """
  if name == "digits":
    return _digits.Digits(data_dir=data_dir), _digits.SOURCE
  folder = idx_folder(name, from_dir)
  if name in scenes.BUILDERS:
    return (
        scenes.BUILDERS[name](source_dir=folder, data_dir=data_dir),
        f"scenes drawn from the official idx files in {folder}, checksums verified",
    )
  return (
      mnist.BUILDERS[name](source_dir=folder, data_dir=data_dir),
      f"the official idx files in {folder}, checksums verified, no download",
  )


def prepare_offline(
    name: str, data_dir: str, from_dir: str | None = None
) -> tfds.core.DatasetBuilder:
  """Prepares one of `OFFLINE`, once, however many processes ask at the same time.

  The runs of a sweep and the processes of a multi-host run may all find the
  dataset missing; without the lock they would all build it, and all but
  the first would fail to move their copy into place. The process that
  prepares prints one line saying what it reads; TFDS's own output (sizes
  "Unknown", progress bars) would read as a network download.

  Args:
    name: a name in `OFFLINE`.
    data_dir: TFDS data dir.
    from_dir: see `offline_builder`.

  Returns:
    The dataset's builder, prepared.

  Raises:
    DataError: see `offline_builder`; or a file is not the official one.
  """
  if name in FROM_IDX_FILES:
    idx_folder(name, from_dir)  # missing files: say so before writing anything
  os.makedirs(data_dir, exist_ok=True)
  with open(os.path.join(data_dir, f".{name}.prepare.lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    ds_builder = builder(name, data_dir)  # anew: another process may have prepared it
    if not is_prepared(ds_builder):
      offline, source = offline_builder(name, data_dir, from_dir)
      print(f"preparing the {name} dataset ({source}) in {offline.data_path}", flush=True)
      with quiet_tfds():
        offline.download_and_prepare(file_format="array_record")
      ds_builder = builder(name, data_dir)
  return ds_builder


def prepared_builder(name: str, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
  """The builder of a prepared TFDS dataset (one of `OFFLINE` is prepared now).

  Args:
    name: a TFDS name, or one of `OFFLINE`.
    data_dir: TFDS data dir (default `default_data_dir()`).

  Returns:
    The builder, its dataset prepared.

  Raises:
    DataError: if the dataset is unknown, or not prepared and not
      preparable offline, with the command that prepares it.
  """
  data_dir = data_dir or default_data_dir()
  ds_builder = builder(name, data_dir)
  if is_prepared(ds_builder):
    return ds_builder
  if name in OFFLINE:
    return prepare_offline(name, data_dir)
  raise DataError(
      f"dataset {name!r} is not prepared in {data_dir}; run once: "
      f"`{prepare_command(name, data_dir)}` (this needs network, and for most "
      "TFDS datasets the TensorFlow extra: pip install -e '.[prepare]')"
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
  data_dir = data_dir or default_data_dir()
  if from_dir and name not in FROM_IDX_FILES:
    raise DataError(f"--from is for {', '.join(FROM_IDX_FILES)} only, not {name!r}")
  if from_dir:  # checked even when the dataset is prepared already: the user asked
    idx.verified_paths(
        scenes.SOURCES[name].idx_name if name in scenes.SOURCES else name,
        idx_folder(name, from_dir),
    )
  if name in OFFLINE and (
      from_dir or not _tensorflow_installed() or name not in idx.DATASETS or _installed(name)
  ):
    return str(prepare_offline(name, data_dir, from_dir).data_path)
  # With TensorFlow and no local files: TFDS's own download (needs network).
  ds_builder = builder(name, data_dir)
  ds_builder.download_and_prepare(file_format="array_record")
  return str(ds_builder.data_path)


def idx_folder(name: str, from_dir: str | None = None) -> str:
  """The folder of the idx files a dataset of `FROM_IDX_FILES` is made from.

  Args:
    name: a name in `FROM_IDX_FILES`.
    from_dir: a folder given by the user; otherwise the offline installs'.

  Returns:
    The folder (its files are verified when the dataset is prepared).

  Raises:
    DataError: when the files are not there, with the command that installs them.
  """
  return (
      scenes.source_folder(name, from_dir) if name in scenes.BUILDERS else idx.find(name, from_dir)
  )


def _tensorflow_installed() -> bool:
  return importlib.util.find_spec("tensorflow") is not None


def _installed(name: str) -> bool:
  try:
    idx.find(name)
  except DataError:
    return False
  return True
