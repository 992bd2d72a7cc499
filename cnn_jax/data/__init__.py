"""Datasets: TFDS sources read by Grain (no TensorFlow), the embedded digits,
scenes of MNIST digits for segmentation and detection (`scenes`),
preprocessing and on-device augmentation."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cnn_jax.data import sources
from cnn_jax.data.preprocess import resize_uint8
from cnn_jax.data.sources import DataError, load


def as_numpy(
    name: str,
    split: str,
    image_size: int | None = None,
    data_dir: str | None = None,
    resize: str = "bilinear",
    start: int = 0,
    count: int | None = None,
    targets: Sequence[str] = ("label",),
) -> dict[str, np.ndarray]:
  """A whole (small) split, or `count` of its examples from `start`, as NumPy arrays.

  Args:
    name: dataset name (see `cnn_jax.data.sources.load`), e.g. "digits".
    split: split name, e.g. "train" or "test[:50%]".
    image_size: bring the images to image_size x image_size.
    data_dir: TFDS data dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets).
    resize: how, "bilinear" or "pad" (see `preprocess.resize_uint8`).
    start: the first example to read.
    count: how many (default: all from `start`; fewer where the split ends).
    targets: the features read besides the image (`sources.target_array`'s keys).

  Returns:
    {"image": uint8 (N, H, W, C), "label": int64 (N,)}, or with other
    targets (e.g. "segmentation_mask": uint8 (N, H, W)) each stacked.

  Raises:
    DataError: if the dataset is unknown or not prepared.
  """
  source = sources.load(name, split, data_dir, image_size=image_size)
  stop = len(source) if count is None else min(start + count, len(source))
  arrays = sources.read_all(source, range(start, stop), targets)
  arrays["image"] = resize_uint8(arrays["image"], image_size, resize)
  return arrays


__all__ = ["DataError", "as_numpy", "load"]
