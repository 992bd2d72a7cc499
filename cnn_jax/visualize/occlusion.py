"""Occlusion sensitivity (Zeiler & Fergus 2014, Section 4.2).

Slide a square of a fill value over the image; at each position record the
probability of the correct class and the most probable label. Where the
probability drops, the network was looking. Every occluded copy of an image
is built and evaluated on the device in batches.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax import geometry


class OcclusionMaps(NamedTuple):
  """Per image, one value per window position (rows, cols)."""

  probability: jax.Array  # float32 (N, rows, cols): P(label) with the window there
  predicted: jax.Array  # int32 (N, rows, cols): the most probable label then
  unoccluded: jax.Array  # float32 (N,): P(label) of the intact image
  window: int  # side of the square
  stride: int  # step between positions

  def extent(self) -> tuple[float, float, float, float]:
    """(left, right, bottom, top) in pixels: where to draw the maps on the image.

    Each value belongs to the centre of its window position.
    """
    rows, cols = self.probability.shape[1:]
    first = (self.window - 1) / 2
    half = self.stride / 2
    return (
        first - half,
        first + (cols - 1) * self.stride + half,
        first + (rows - 1) * self.stride + half,
        first - half,
    )


def occlusion(
    model: nn.Module,
    variables: Any,
    images: jax.Array,
    labels: jax.Array,
    *,
    window: int = 8,
    stride: int = 2,
    fill: float = 0.0,
    batch_size: int = 256,
) -> OcclusionMaps:
  """Correct-class probability and predicted label with each region occluded.

  Args:
    model: the flax model.
    variables: its variables.
    images: float (N, H, W, C), normalized.
    labels: int (N,).
    window: side of the occluding square, in pixels.
    stride: step between window positions; (H - window) must divide by it.
    fill: the square's value in normalized units (0: the dataset mean; the
      paper's gray square is (0.5 - mean) / std).
    batch_size: occluded copies evaluated per device batch.

  Returns:
    OcclusionMaps.

  Raises:
    GeometryError: when the window positions do not tile the image.
  """
  n, height, width, _ = images.shape
  rows = geometry.pool_output_size(height, window, stride)
  cols = geometry.pool_output_size(width, window, stride)
  top = jnp.arange(rows) * stride
  left = jnp.arange(cols) * stride
  inside_rows = (jnp.arange(height)[None, :] >= top[:, None]) & (
      jnp.arange(height)[None, :] < top[:, None] + window
  )  # (rows, H)
  inside_cols = (jnp.arange(width)[None, :] >= left[:, None]) & (
      jnp.arange(width)[None, :] < left[:, None] + window
  )  # (cols, W)
  masks = (inside_rows[:, None, :, None] & inside_cols[None, :, None, :]).reshape(
      rows * cols, height, width, 1
  )

  fill = jnp.asarray(fill, images.dtype)
  probability, predicted = [], []
  for image, label in zip(images, labels):
    parts = [
        _occluded_probabilities(model, variables, image, label, masks[i : i + batch_size], fill)
        for i in range(0, rows * cols, batch_size)
    ]
    probability.append(jnp.concatenate([p for p, _ in parts]).reshape(rows, cols))
    predicted.append(jnp.concatenate([q for _, q in parts]).reshape(rows, cols))
  intact = nn.softmax(model.apply(variables, images, train=False).astype(jnp.float32))
  return OcclusionMaps(
      jnp.stack(probability),
      jnp.stack(predicted),
      jnp.take_along_axis(intact, labels[:, None], axis=1)[:, 0],
      window,
      stride,
  )


@functools.partial(jax.jit, static_argnames="model")
def _occluded_probabilities(model, variables, image, label, mask_batch, fill):
  occluded = jnp.where(mask_batch, fill, image[None])
  probs = nn.softmax(model.apply(variables, occluded, train=False).astype(jnp.float32))
  return probs[:, label], jnp.argmax(probs, axis=-1).astype(jnp.int32)
