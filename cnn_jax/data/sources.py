"""Random-access data sources: TFDS datasets (array_record) and image folders.

Training reads TFDS's on-disk array_record files through `tfds.data_source`,
which needs no TensorFlow. `load` dispatches a dataset name to its source;
finding and preparing TFDS datasets is `preparation`'s job, a split's
fingerprint `fingerprints`'.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, Sequence

import numpy as np
import tensorflow_datasets as tfds

from cnn_jax.data import png, preparation
from cnn_jax.data.box_targets import BOX_TARGETS, box_target

# preprocess reads a split's fingerprint from here.
from cnn_jax.data.fingerprints import fingerprint  # noqa: F401
from cnn_jax.data.folder_splits import check_split_classes, folder_root, split_folder
from cnn_jax.data.image_folder import ImageFolderSource
from cnn_jax.data.preparation import default_data_dir, prepare_command, prepared_builder
from cnn_jax.errors import ArgumentError, DataError


class RandomAccessSource(Protocol):
  """What Grain needs: len() and an example dict by index."""

  def __len__(self) -> int:
    ...

  def __getitem__(self, index: int) -> dict[str, Any]:
    ...


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
  root = folder_root(name)
  if root is not None:
    # Labels come from the training split's classes, so that splits agree.
    train_root = os.path.join(root, "train")
    classes = ImageFolderSource.class_names(train_root) if os.path.isdir(train_root) else None
    folder = split_folder(root, split)
    if classes is not None and os.path.isdir(folder):
      check_split_classes(folder, train_root, classes)
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


def num_classes(name: str, data_dir: str | None = None) -> int:
  """Number of classes of a dataset (from its TFDS label feature or folders).

  A dense dataset's classes are its objects' labels (TFDS's `objects/label`),
  background not counted.
  """
  return len(class_names(name, data_dir))


def class_names(name: str, data_dir: str | None = None) -> list[str]:
  """The names of a dataset's classes, in label order (as `num_classes` counts them).

  Args:
    name: dataset name.
    data_dir: TFDS data dir.

  Returns:
    One name per class (a dense dataset's object labels, background not among them).
  """
  root = folder_root(name)
  if root is not None:
    return list(ImageFolderSource.class_names(os.path.join(root, "train")))
  features = preparation.builder(name, data_dir).info.features
  if "label" not in features and "objects" in features:
    return list(features["objects"]["label"].names)
  return list(features["label"].names)


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
    source: RandomAccessSource,
    indices: Sequence[int] | None = None,
    targets: Sequence[str] = ("label",),
) -> dict[str, np.ndarray]:
  """Every example of a source (or those at `indices`) stacked into arrays.

  Args:
    source: a random-access source with equal image shapes.
    indices: which examples, in this order (default: all).
    targets: the features to read besides the image (see `target_array`).

  Returns:
    {"image": uint8 (N, H, W, C), "label": int64 (N,)}, or with other
    targets, each stacked as `target_array` reads it.
  """
  indices = list(range(len(source))) if indices is None else [int(i) for i in indices]
  getitems = getattr(source, "__getitems__", None)
  examples = getitems(indices) if getitems else [source[i] for i in indices]
  images = with_channel_axis(np.stack([np.asarray(e["image"]) for e in examples]), batched=True)
  arrays = {"image": images.astype(np.uint8)}
  for key in targets:
    stacked = np.stack([target_array(e, key) for e in examples])
    arrays[key] = stacked.astype(np.int64) if key == "label" else stacked
  return arrays


def target_array(example: dict[str, Any], key: str, image_size: int | None = None) -> np.ndarray:
  """One target of a TFDS example, as the steps take it.

  Args:
    example: a decoded example.
    key: "label" (int32 scalar), "segmentation_mask" (TFDS's per-pixel
      class, uint8 (H, W), 0 = background) or one of the detection targets
      `box_targets.BOX_TARGETS` (the example's objects, padded).
    image_size: the size the images are brought to (None: kept).

  Returns:
    The array.

  Raises:
    DataError: for a feature the example lacks, or a mask whose image would be resized.
  """
  if key in BOX_TARGETS:
    return box_target(example, key)
  if key not in example:
    raise DataError(
        f"the dataset's examples have no {key!r} feature (they have {', '.join(sorted(example))}); "
        "choose a config.task that reads what the dataset holds"
    )
  if key == "label":
    return np.int32(example["label"])
  if key != "segmentation_mask":
    raise ArgumentError(
        f"unknown target {key!r}; use 'label', 'segmentation_mask' or one of {BOX_TARGETS}"
    )
  mask = with_channel_axis(np.asarray(example[key], np.uint8))[..., 0]
  if image_size is not None and mask.shape != (image_size, image_size):
    raise DataError(
        f"{key} is {mask.shape[0]}x{mask.shape[1]} and config.image_size={image_size}: masks "
        "are not resized; set config.image_size=None to train at the dataset's own size"
    )
  return mask
