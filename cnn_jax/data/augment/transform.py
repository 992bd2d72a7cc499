"""One drawn geometric transform, applied alike to an image, its mask and its boxes.

A geometric op draws its random parameters once (`ops.TRANSFORMS`) and gets a
`Transform`; the transform's appliers then move the image (the op's own
resampling, bilinear or exact), the segmentation mask (nearest neighbour, so
classes are never blended) and the boxes (by their corners), so all three
stay aligned whatever the op.

Coordinates. A transform says where each output pixel reads the input:
input = matrix @ (row, col) + offset, in pixel-centre coordinates (pixel
(0, 0)'s centre is (0, 0), row 0 at the top). Boxes are TFDS's normalized
(ymin, xmin, ymax, xmax); pixel row r spans normalized y in [r, r + 1) / H.

Boxes. Each corner moves by the inverse of that map; the moved box is the
axis-aligned box around the four moved corners (so a rotation grows it),
clipped to [0, 1]. `Transform.boxes` also returns the fraction of the moved
box's area left inside the image, which `spec.from_spec_with_targets` turns
into the validity rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

Array = jax.Array


def source_positions(height: int, width: int, matrix: Array, offset: Array) -> tuple[Array, Array]:
  """(rows, cols), each (height, width): where each output pixel reads the input."""
  rows, cols = jnp.meshgrid(
      jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij"
  )
  src_rows = matrix[0, 0] * rows + matrix[0, 1] * cols + offset[0]
  src_cols = matrix[1, 0] * rows + matrix[1, 1] * cols + offset[1]
  return src_rows, src_cols


def resample(image: Array, matrix: Array, offset: Array, mode: str) -> Array:
  """Bilinear sample of `image` at matrix @ (row, col) + offset per pixel.

  Args:
    image: (H, W, C).
    matrix: (2, 2) map from output pixel (row, col) to input position.
    offset: (2,) added to the mapped position.
    mode: "constant" (zero outside the image) or "nearest" (edge pixels).

  Returns:
    (H, W, C) image of the same dtype.
  """
  src_rows, src_cols = source_positions(*image.shape[:2], matrix, offset)

  def sample(channel):
    return map_coordinates(channel, [src_rows, src_cols], order=1, mode=mode)

  # One 2-D interpolation per channel: interpolating along the channel axis
  # too would double the gathers for weights that are always zero.
  return jax.vmap(sample, in_axes=2, out_axes=2)(image)


@dataclasses.dataclass(frozen=True)
class Transform:
  """One drawn geometric transform of an (H, W) image, for the image and its targets.

  Attributes:
    matrix: (2, 2) float32 and
    offset: (2,) float32: output pixel (row, col) shows the input at
      matrix @ (row, col) + offset (pixel-centre coordinates).
    size: (H, W) of the image, the mask and the boxes' frame.
    edge: what the mask reads outside the input, as the image does:
      "constant" (0, background) or "nearest" (the edge pixel).
    move_image: the op's own image applier, (H, W, C) -> (H, W, C); None
      means bilinear resampling at the map above. Flips and crops slice
      instead, which is exact and cheaper.
  """

  matrix: Array
  offset: Array
  size: tuple[int, int]
  edge: str = "constant"
  move_image: Callable[[Array], Array] | None = None

  def image(self, image: Array) -> Array:
    """Moves one (H, W, C) float image, exactly as the op does on its own.

    Args:
      image: (H, W, C).

    Returns:
      The moved (H, W, C) image, same dtype.
    """
    if self.move_image is not None:
      return self.move_image(image)
    return resample(image, self.matrix, self.offset, mode=self.edge)

  def mask(self, mask: Array) -> Array:
    """Moves one (H, W) class mask by nearest-neighbour sampling.

    Nearest neighbour copies a class from the input; bilinear weights would
    blend two class numbers into a third, unrelated class.

    Args:
      mask: (H, W) integer classes.

    Returns:
      The moved (H, W) mask, same dtype; 0 (background) where it reads
      outside the input, unless `edge` repeats the edge.
    """
    src_rows, src_cols = source_positions(*self.size, self.matrix, self.offset)
    return map_coordinates(mask, [src_rows, src_cols], order=0, mode=self.edge, cval=0)

  def boxes(self, boxes: Array) -> tuple[Array, Array]:
    """Moves normalized boxes with the image.

    Args:
      boxes: (K, 4) normalized (ymin, xmin, ymax, xmax).

    Returns:
      (moved, visible): moved is (K, 4), each the axis-aligned box around
      the moved corners clipped to [0, 1], in the input's dtype; visible is
      (K,) float32, the fraction of the moved box's area inside the image
      (0 for a box that left the image or has no area).
    """
    size = jnp.asarray(self.size, jnp.float32)
    ys, xs = boxes[:, 0::2].astype(jnp.float32), boxes[:, 1::2].astype(jnp.float32)
    # (K, 4, 2): every (y, x) pair of a box's (ymin, ymax) and (xmin, xmax).
    pairs = jnp.broadcast_arrays(ys[:, :, None], xs[:, None, :])
    corners = jnp.stack(pairs, axis=-1).reshape(-1, 4, 2)
    # The transform maps output pixels to input positions; a corner of the
    # input goes the other way. Pixel centres sit half a pixel into the frame.
    centred = corners * size - 0.5 - self.offset
    moved = (centred @ _inverse_2x2(self.matrix).T + 0.5) / size
    low, high = moved.min(axis=1), moved.max(axis=1)
    area = jnp.prod(high - low, axis=-1)
    low, high = jnp.clip(low, 0.0, 1.0), jnp.clip(high, 0.0, 1.0)
    inside = jnp.prod(high - low, axis=-1)
    visible = jnp.where(area > 0, inside / jnp.where(area > 0, area, 1.0), 0.0)
    return jnp.concatenate([low, high], axis=-1).astype(boxes.dtype), visible


def _inverse_2x2(matrix: Array) -> Array:
  # The closed form keeps flips (diagonal +-1) exact, which an LU solve need not.
  (a, b), (c, d) = matrix
  return jnp.stack([jnp.stack([d, -b]), jnp.stack([-c, a])]) / (a * d - b * c)
