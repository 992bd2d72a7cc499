"""Preprocessing as in the lecture: resize, mean subtraction, normalization.

Per-channel mean and standard deviation come from the training split (cached
as JSON in the data dir, under a fingerprint of the split's files, see
`cnn_jax.data.sources.fingerprint`) or from the config. PCA and whitening are not
offered: as the lecture notes, they are not used with CNNs.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import jax.numpy as jnp
import numpy as np
from absl import logging
from PIL import Image

from cnn_jax import records
from cnn_jax.errors import ArgumentError, DataError
from cnn_jax.data import sources

# Examples read to estimate the per-channel mean and std of a large training split.
_STATS_EXAMPLES = 10_000
RESIZES = ("bilinear", "pad")
NORMALIZATIONS = ("standardize", "center", "none", "lecun1998")
# LeCun et al. 1998, Section II-A: "the values of the input pixels are
# normalized so that the background level (white) corresponds to a value of
# -0.1 and the foreground (black) corresponds to 1.175. This makes the mean
# input roughly 0, and the variance roughly 1". In [0, 1] units the
# background is 0 and the ink 1 (MNIST's and the digits' ink is bright).
LECUN1998_BACKGROUND, LECUN1998_INK = -0.1, 1.175


def resize_uint8(images: np.ndarray, size: int | None, method: str = "bilinear") -> np.ndarray:
  """Brings uint8 images to size x size (no-op if already so).

  Args:
    images: uint8 (N, H, W, C) or (H, W, C).
    size: the target height = width, or None to keep the size.
    method: "bilinear" interpolates; "pad" centres the image on zeros
      (LeCun et al. 1998 put the 28x28 MNIST digits in a 32x32 field so).

  Returns:
    uint8 images of the new size, same rank.

  Raises:
    DataError: for "pad" to a size smaller than the image.
    ArgumentError: (a ValueError) for an unknown method.
  """
  if size is None or images.shape[-3:-1] == (size, size):
    return images
  if images.ndim == 3:
    return resize_uint8(images[None], size, method)[0]
  if method == "pad":
    return _pad_uint8(images, size)
  if method != "bilinear":
    raise ArgumentError(f"resize method {method!r}; use one of {RESIZES}")
  channels = images.shape[-1]
  out = np.empty((images.shape[0], size, size, channels), np.uint8)
  for i, image in enumerate(images):
    # PIL works per channel for 1-channel images and on RGB for 3 channels.
    pil = Image.fromarray(image[..., 0] if channels == 1 else image)
    resized = np.asarray(pil.resize((size, size), Image.BILINEAR))
    out[i] = resized[..., None] if channels == 1 else resized
  return out


def _pad_uint8(images: np.ndarray, size: int) -> np.ndarray:
  height, width = images.shape[1:3]
  if height > size or width > size:
    raise DataError(
        f"cannot pad {height}x{width} images to {size}x{size}; use an image "
        f"size of at least {max(height, width)} or resize='bilinear'"
    )
  top, left = (size - height) // 2, (size - width) // 2
  out = np.zeros((images.shape[0], size, size, images.shape[-1]), np.uint8)
  out[:, top : top + height, left : left + width] = images
  return out


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
  """Per-channel mean and standard deviation of uint8 images, in [0, 1] units.

  Args:
    images: uint8 (N, H, W, C).

  Returns:
    (mean, std), each a list of C floats.
  """
  x = images.astype(np.float64) / 255.0
  return x.mean(axis=(0, 1, 2)).tolist(), x.std(axis=(0, 1, 2)).tolist()


def cached_channel_stats(cache_dir: str, key: str, compute) -> tuple[list[float], list[float]]:
  """`channel_stats`, computed once and cached as JSON.

  The cache is found by `key` alone, so the key must name everything the
  statistics depend on, the data's contents included: a key of only the
  dataset's name would serve the old statistics after its images changed.

  Args:
    cache_dir: folder for the cache file (the data dir).
    key: file name stem, e.g. "digits-train-32-<sources.fingerprint(...)>".
    compute: a function returning (mean, std) when the cache is missing.

  Returns:
    (mean, std).
  """
  path = os.path.join(cache_dir, "cnn_jax_stats", f"{key}.json")
  try:
    stats = records.read_json(path)
  except records.DamagedRecord as e:  # e.g. cut short by an older, non-atomic write
    logging.warning("%s; computing the statistics again", e)
    stats = None
  if (
      isinstance(stats, dict)
      and isinstance(stats.get("mean"), list)
      and isinstance(stats.get("std"), list)
  ):
    return stats["mean"], stats["std"]
  mean, std = compute()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  # Atomic, with a temporary file per process: processes of one run may write at once.
  records.write_json(path, {"mean": mean, "std": std})
  return mean, std


def to_unit(images):
  """uint8 images -> float32 in [0, 1] (the units augmentation works in)."""
  return jnp.asarray(images, jnp.float32) / 255.0


def standardize(x, mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,)):
  """(x - mean) / std per channel, for float images in [0, 1] units."""
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def standardize_uint8(images, mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,)):
  """uint8 images -> float32 (x / 255 - mean) / std, per channel.

  Works on NumPy and JAX arrays (and inside jit).

  Args:
    images: uint8 (..., C).
    mean: per-channel mean in [0, 1] units (or one value for all channels).
    std: per-channel standard deviation in [0, 1] units.

  Returns:
    float32 images of the same shape.
  """
  return standardize(to_unit(images), mean, std)


@dataclasses.dataclass(frozen=True)
class ImageSplit:
  """The images a run's statistics come from: a dataset's split as the run sees it.

  Attributes:
    dataset: a dataset name of `cnn_jax.data.sources`.
    split: the split, e.g. "train".
    data_dir: the data dir, or None for the default.
    image_size: the size the images are resized to, or None to keep theirs.
    resize: the resize method of `resize_uint8`.
  """

  dataset: str
  split: str
  data_dir: str | None
  image_size: int | None
  resize: str = "bilinear"


def input_mean_std(
    normalize: str,
    mean: Sequence[float],
    std: Sequence[float],
    split: ImageSplit,
) -> tuple[list[float], list[float]]:
  """Per-channel (mean, std) that a run's steps standardize its input with.

  "standardize" uses the given mean and std, or the split's own (cached);
  "center" keeps that mean but divides by 1; "none" feeds the raw [0, 1]
  pixels (mean 0, std 1); "lecun1998" maps them linearly onto LeCun et al.
  1998's input, background 0 to -0.1 and ink 1 to 1.175 (x -> 1.275 x - 0.1).

  Args:
    normalize: one of NORMALIZATIONS.
    mean: per-channel mean in [0, 1] units, or empty for the split's.
    std: per-channel standard deviation, given with `mean`.
    split: the training images, for statistics not given.

  Returns:
    (mean, std) in [0, 1] units.
  """
  # Cached; "none" and "lecun1998" need only the number of channels.
  mean, std = (list(mean), list(std)) if mean else split_mean_std(split)
  if normalize == "none":
    return [0.0] * len(mean), [1.0] * len(std)
  if normalize == "lecun1998":
    # (x - m) / s = background + x * (ink - background): s = 1 / (ink - background)
    # and m = -background * s, i.e. 1 / 1.275 and 0.1 / 1.275.
    scale = 1.0 / (LECUN1998_INK - LECUN1998_BACKGROUND)
    return [-LECUN1998_BACKGROUND * scale] * len(mean), [scale] * len(std)
  if normalize == "center":
    std = [1.0] * len(mean)
  return mean, std


def split_mean_std(split: ImageSplit) -> tuple[list[float], list[float]]:
  """Per-channel mean and std of a split's images, computed once and cached in its data dir.

  Args:
    split: the images.

  Returns:
    (mean, std) in [0, 1] units.
  """
  data_dir = split.data_dir or sources.default_data_dir()
  name = split.dataset.replace("/", "_").replace(":", "_")
  split_name = split.split.replace("/", "_").replace(":", "_")
  # Keyed by the data's files too (names, sizes, mtimes): statistics of
  # images since replaced must not be used.
  fingerprint = sources.fingerprint(split.dataset, split.split, split.data_dir)
  resize = "" if split.resize == "bilinear" else f"-{split.resize}"  # old keys stay valid
  key = f"{name}-{split_name}-{split.image_size}{resize}-{fingerprint}"

  def compute():
    source = sources.load(split.dataset, split.split, split.data_dir, image_size=split.image_size)
    # An evenly spaced subset is enough for six numbers and bounded in time.
    step = max(1, len(source) // _STATS_EXAMPLES)
    subset = [source[i] for i in range(0, len(source), step)]
    images = np.stack(
        [
            resize_uint8(
                sources.with_channel_axis(np.asarray(e["image"], np.uint8)),
                split.image_size,
                split.resize,
            )
            for e in subset
        ]
    )
    return channel_stats(images)

  return cached_channel_stats(data_dir, key, compute)
