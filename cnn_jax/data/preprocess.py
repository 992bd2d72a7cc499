"""Preprocessing as in the lecture: resize, mean subtraction, normalization.

Per-channel mean and standard deviation come from the training split (cached
as JSON in the data dir, under a fingerprint of the split's files, see
`cnn_jax.data.sources.fingerprint`) or from the config. PCA and whitening are not
offered: as the lecture notes, they are not used with CNNs.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import jax.numpy as jnp
import numpy as np
from PIL import Image

from cnn_jax.data.errors import DataError


RESIZES = ("bilinear", "pad")


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
    ValueError: for an unknown method.
  """
  if size is None or images.shape[-3:-1] == (size, size):
    return images
  if images.ndim == 3:
    return resize_uint8(images[None], size, method)[0]
  if method == "pad":
    return _pad_uint8(images, size)
  if method != "bilinear":
    raise ValueError(f"resize method {method!r}; use one of {RESIZES}")
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
    raise DataError(f"cannot pad {height}x{width} images to {size}x{size}; use an image "
                     f"size of at least {max(height, width)} or resize='bilinear'")
  top, left = (size - height) // 2, (size - width) // 2
  out = np.zeros((images.shape[0], size, size, images.shape[-1]), np.uint8)
  out[:, top:top + height, left:left + width] = images
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
  if os.path.exists(path):
    with open(path) as f:
      stats = json.load(f)
    return stats["mean"], stats["std"]
  mean, std = compute()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f"{path}.{os.getpid()}.tmp"  # processes of one run may write at once
  with open(tmp, "w") as f:
    json.dump({"mean": mean, "std": std}, f)
  os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
  return mean, std


def to_unit(images):
  """uint8 images -> float32 in [0, 1] (the units augmentation works in)."""
  return jnp.asarray(images, jnp.float32) / 255.0


def standardize(x, mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,)):
  """(x - mean) / std per channel, for float images in [0, 1] units."""
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def normalize(images, mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,)):
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
