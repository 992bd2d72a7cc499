"""Random-access data sources: TFDS datasets (array_record) and image folders.

Training reads TFDS's on-disk array_record files through `tfds.data_source`,
which needs no TensorFlow. Preparing a dataset (download + conversion) is a
separate, one-time step (`python -m cnn_jax.data.prepare`); most TFDS
builders need network and TensorFlow for it. The datasets in `OFFLINE` need
neither and are prepared on first use: the embedded `digits`, and `mnist`
and `fashion_mnist` when their idx files are installed (see `idx`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from typing import Any, Iterator, Protocol, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import flags, logging

from cnn_jax.data import digits as _digits  # registers the builder
from cnn_jax.data import idx, image_folder, mnist, png
from cnn_jax.data.errors import DataError
from cnn_jax.data.image_folder import ImageFolderSource

IMAGE_FOLDER_PREFIX = "folder:"
# Datasets we can prepare ourselves, without network.
OFFLINE = ("digits", *mnist.BUILDERS)


class RandomAccessSource(Protocol):
  """What Grain needs: len() and an example dict by index."""

  def __len__(self) -> int:
    ...

  def __getitem__(self, index: int) -> dict[str, Any]:
    ...


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


def _is_prepared(ds_builder: tfds.core.DatasetBuilder) -> bool:
  """`ds_builder.is_prepared()`, without TFDS's warnings when it is not.

  TFDS logs "Variant folder ... has no dataset_info.json" for a version
  folder that does not exist yet, which is the normal state of a dataset
  before its first use, not a problem; a folder that exists but is
  incomplete keeps the warning.
  """
  return ds_builder.data_path.exists() and ds_builder.is_prepared()


@contextlib.contextmanager
def _tfds_quiet() -> Iterator[None]:
  """Hides TFDS's progress bars and INFO logs inside the block, then restores both.

  Only around our own preparation of an embedded dataset: a real download
  keeps them. An explicit --verbosity on the command line is respected.
  """
  from tensorflow_datasets.core.utils import tqdm_utils  # the setting has no public getter

  bars = getattr(tqdm_utils, "_active", True)
  verbosity = logging.get_verbosity()
  asked = flags.FLAGS.is_parsed() and flags.FLAGS["verbosity"].present
  tfds.display_progress_bar(False)
  if not asked:
    logging.set_verbosity(min(verbosity, logging.WARNING))  # absl: lower is quieter
  try:
    yield
  finally:
    tfds.display_progress_bar(bars)
    logging.set_verbosity(verbosity)


def offline_builder(
    name: str, data_dir: str, from_dir: str | None = None
) -> tuple[tfds.core.DatasetBuilder, str]:
  """A builder that prepares one of `OFFLINE` without network, and what it reads.

  Args:
    name: a name in `OFFLINE`.
    data_dir: TFDS data dir.
    from_dir: for idx datasets, the folder of the four files (default: the
      offline installs', see `idx.find`).

  Returns:
    (builder, a few words on its source for the line printed when preparing).

  Raises:
    DataError: when an idx dataset's files are not installed or given.
  """
  if name == "digits":
    return _digits.Digits(data_dir=data_dir), _digits.SOURCE
  folder = idx.find(name, from_dir)
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
  if name in idx.DATASETS:
    idx.find(name, from_dir)  # missing files: say so before writing anything
  os.makedirs(data_dir, exist_ok=True)
  with open(os.path.join(data_dir, f".{name}.prepare.lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    ds_builder = builder(name, data_dir)  # anew: another process may have prepared it
    if not _is_prepared(ds_builder):
      offline, source = offline_builder(name, data_dir, from_dir)
      print(f"preparing the {name} dataset ({source}) in {offline.data_path}", flush=True)
      with _tfds_quiet():
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
  if _is_prepared(ds_builder):
    return ds_builder
  if name in OFFLINE:
    return prepare_offline(name, data_dir)
  raise DataError(
      f"dataset {name!r} is not prepared in {data_dir}; run once: "
      f"`{prepare_command(name, data_dir)}` (this needs network, and for most "
      "TFDS datasets the TensorFlow extra: pip install -e '.[prepare]')"
  )


def _split_folder(root: str, split: str) -> str:
  """root/split of an image folder dataset, with a clear error if it is missing."""
  folder = os.path.join(root, split)
  if os.path.isdir(folder) or not os.path.isdir(root):
    return folder  # a missing root is reported by ImageFolderSource
  found = ImageFolderSource.class_names(root)
  raise DataError(
      f"image folder {root!r} has no split folder {split!r} (it has "
      f"{found or 'no subfolder'}); create {folder}/<class>/<image> files "
      "or set the split (config.train_split / config.eval_split) to one it has"
  )


def _check_split_classes(folder: str, train_root: str, train_classes: list[str]) -> None:
  """Refuses a split with a class folder the training split lacks.

  Its images could have no label: they would be left out, and the accuracy
  reported over the other classes ("test/dogs" beside "train/dog"). A split
  that only lacks some training classes (a small test set) uses every image
  it has, with a warning.

  Raises:
    DataError: naming the classes only one side has, and the fix.
  """
  found = ImageFolderSource.class_names(folder)
  extra = [c for c in found if c not in train_classes]
  missing = [c for c in train_classes if c not in found]
  if extra:
    lacks = f"; {train_root} has {missing} that it lacks" if missing else ""
    raise DataError(
        f"image folder {folder!r} has classes {extra} that the training split "
        f"{train_root} lacks{lacks}; rename or move the class folders so that "
        "every split uses the training split's class names"
    )
  if missing:
    logging.warning(
        "image folder %s has no class folder for %s of the training split's "
        "classes; its accuracy covers the other classes",
        folder,
        missing,
    )


def load(
    name: str, split: str, data_dir: str | None = None, image_size: int | None = None
) -> RandomAccessSource:
  """A random-access source for one split of a dataset.

  Args:
    name: "digits", any TFDS image-classification name ("mnist",
      "cifar10", "imagenet2012", ...) or "folder:/path" for an image folder
      with one subfolder per class (see `ImageFolderSource`).
    split: a TFDS split ("train", "test", "train[:10%]", ...); for a folder,
      the subfolder of that name.
    data_dir: TFDS data dir (default `default_data_dir()`).
    image_size: only for folders, the size its images are resized to.

  Returns:
    An object with len() whose items are {"image": uint8 HWC, "label": int}.

  Raises:
    DataError: if the dataset is unknown or not prepared, with the command
      that prepares it.
  """
  if name.startswith(IMAGE_FOLDER_PREFIX):
    root = name[len(IMAGE_FOLDER_PREFIX) :]
    # Labels come from the training split's classes, so that splits agree.
    train_root = os.path.join(root, "train")
    classes = ImageFolderSource.class_names(train_root) if os.path.isdir(train_root) else None
    folder = _split_folder(root, split)
    if classes is not None and os.path.isdir(folder):
      _check_split_classes(folder, train_root, classes)
    return ImageFolderSource(folder, image_size=image_size or 224, classes=classes)
  data_dir = data_dir or default_data_dir()
  ds_builder = prepared_builder(name, data_dir)
  file_format = ds_builder.info.file_format
  if file_format is not None and file_format.value != "array_record":
    raise DataError(
        f"dataset {name!r} in {data_dir} is stored as {file_format.value}, which has no "
        f"random access; convert it with `{prepare_command(name, data_dir)}`"
    )
  image_feature = ds_builder.info.features["image"]
  encoded = isinstance(image_feature, tfds.features.Image)
  try:
    source = tfds.data_source(
        name,
        split=split,
        data_dir=data_dir,
        download=False,
        decoders={"image": tfds.decode.SkipDecoding()} if encoded else None,
    )
  except ValueError as e:  # unknown split
    raise DataError(f"dataset {name!r} has no split {split!r}: {str(e).splitlines()[0]}") from None
  return DecodedImages(source, image_feature.shape[-1]) if encoded else source


class DecodedImages:
  """A TFDS source whose encoded images are decoded by `png.decode`.

  TFDS decodes PNGs with PIL (or OpenCV); ours skip most of that work for
  the PNGs we write, and for others do what TFDS does.
  """

  def __init__(self, source, channels: int):
    self.source, self.channels = source, channels

  def __len__(self) -> int:
    return len(self.source)

  def _decoded(self, example: dict[str, Any]) -> dict[str, Any]:
    return {**example, "image": png.decode(example["image"], self.channels)}

  def __getitem__(self, index: int) -> dict[str, Any]:
    return self._decoded(self.source[index])

  def __getitems__(self, indices) -> list[dict[str, Any]]:
    return [self._decoded(e) for e in self.source.__getitems__(indices)]

  def __repr__(self) -> str:
    # Grain compares reprs when restoring an iterator state.
    return f"DecodedImages({self.source!r})"


def fingerprint(name: str, split: str, data_dir: str | None = None) -> str:
  """A short hash of the files a split is read from: the key of caches computed from it.

  Cheap: only file names, sizes and modification times are read. For an
  image folder, the split folder's images; for a TFDS dataset, the files of
  its prepared version folder (an embedded dataset is prepared first).
  Replacing the data changes the hash, so a stale cache is never used.

  Args:
    name: a dataset name as `load` takes it.
    split: a split as `load` takes it.
    data_dir: TFDS data dir (default `default_data_dir()`).

  Returns:
    16 hex digits.

  Raises:
    DataError: if the dataset or split folder is missing, as in `load`.
  """
  if name.startswith(IMAGE_FOLDER_PREFIX):
    return image_folder.fingerprint(_split_folder(name[len(IMAGE_FOLDER_PREFIX) :], split))
  ds_builder = prepared_builder(name, data_dir)
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


def num_classes(name: str, data_dir: str | None = None) -> int:
  """Number of classes of a dataset (from its TFDS label feature or folders)."""
  if name.startswith(IMAGE_FOLDER_PREFIX):
    return len(
        ImageFolderSource.class_names(os.path.join(name[len(IMAGE_FOLDER_PREFIX) :], "train"))
    )
  return builder(name, data_dir).info.features["label"].num_classes


def with_channel_axis(images: np.ndarray, batched: bool = False) -> np.ndarray:
  """Grey images stored without a channel axis, with one added (others unchanged).

  Args:
    images: one image, (H, W) or (H, W, C); or with `batched`, (N, H, W) or (N, H, W, C).
    batched: whether the first axis counts the images.

  Returns:
    (H, W, C) or (N, H, W, C).
  """
  return images[..., None] if images.ndim - batched == 2 else images


def read_all(
    source: RandomAccessSource, indices: Sequence[int] | None = None
) -> dict[str, np.ndarray]:
  """Every example of a source (or those at `indices`) stacked into arrays.

  Args:
    source: a random-access source with equal image shapes.
    indices: which examples, in this order (default: all).

  Returns:
    {"image": uint8 (N, H, W, C), "label": int64 (N,)}.
  """
  indices = list(range(len(source))) if indices is None else [int(i) for i in indices]
  getitems = getattr(source, "__getitems__", None)
  examples = getitems(indices) if getitems else [source[i] for i in indices]
  images = with_channel_axis(np.stack([np.asarray(e["image"]) for e in examples]), batched=True)
  labels = np.array([e["label"] for e in examples], np.int64)
  return {"image": images.astype(np.uint8), "label": labels}
