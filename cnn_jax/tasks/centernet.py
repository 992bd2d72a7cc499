"""CenterNet's targets, loss and decoding ("Objects as Points", Zhou, Wang & Krähenbühl 2019).

The network predicts, on a map of stride R = 4, a heatmap per class whose
peaks are the objects' centres, and at every position the box size and the
offset of the true centre from the map pixel (Section 3). Training renders
the targets from the boxes inside the jitted step (fixed shapes: the
batch's objects padded, with a validity flag):

- heatmap: for each object, a Gaussian around its centre's map pixel
  floor(p / R), of standard deviation (2r + 1) / 6 with r CornerNet's radius
  for a box that still overlaps the object by IoU 0.7 (`gaussian_radius`),
  cut to the (2r + 1)^2 window as the reference code draws it; objects of
  one class meet by their maximum.
- size: the box's (height, width) in map pixels; offset: p / R - floor(p / R).

Loss (Eq. 1-3): the penalty-reduced pixel-wise focal loss (alpha 2, beta
4) summed over the heatmap and divided by the number of objects, plus 0.1
times the L1 size loss and 1 times the L1 offset loss at the centres (each
the mean over the objects and the two coordinates, as the reference's
RegL1Loss). log sigmoid is used in place of the reference's log of a
clamped sigmoid: equal away from saturation, and finite at it.

Decoding (Section 4): the peaks are the pixels equal to the 3x3 max-pool of
the heatmap (no NMS), the 100 highest over all classes are the detections,
each box the centre plus offset, +- half the size.

Outputs are one array per image, (h, w, C + 4): the C class logits of the
heatmap, then size (height, width) and offset (y, x), all in map pixels.
Coordinates are (y, x) throughout, like TFDS's boxes (ymin, xmin, ymax, xmax).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

STRIDE = 4  # R: input pixels per map pixel
SIZE_WEIGHT = 0.1  # lambda_size
OFFSET_WEIGHT = 1.0  # lambda_off
FOCAL_ALPHA = 2.0
FOCAL_BETA = 4.0
MIN_OVERLAP = 0.7  # the IoU a box moved within the radius keeps (CornerNet)
TOP_K = 100  # detections per image, as COCO's evaluation scores at most
BOX_CHANNELS = 4  # size (h, w) and offset (y, x) after the class logits


class Targets(NamedTuple):
  """A batch's rendered targets.

  Attributes:
    heatmap: (B, h, w, C) float32, 1 exactly at the objects' centre pixels.
    centre: (B, M) int32, each object's centre pixel as a flat index y * w + x.
    size: (B, M, 2) float32 box (height, width) in map pixels.
    offset: (B, M, 2) float32 centre minus its pixel, in [0, 1).
    valid: (B, M) bool, the real objects (of positive height and width).
  """

  heatmap: jax.Array
  centre: jax.Array
  size: jax.Array
  offset: jax.Array
  valid: jax.Array


def gaussian_radius(height: jax.Array, width: jax.Array, min_overlap: float = MIN_OVERLAP):
  """CornerNet's radius of a box of `height` x `width`, as CenterNet's code computes it.

  The smallest of three quadratics' roots for corners moved so that the box
  keeps IoU `min_overlap` with the object (CenterNet's utils/image.py
  `gaussian_radius`, including its use of (b + sqrt(d)) / 2 for all three).

  Args:
    height: box heights (map pixels), any shape.
    width: box widths, the same shape.
    min_overlap: the IoU to keep.

  Returns:
    The radii, float32, the same shape.
  """
  height, width = jnp.asarray(height, jnp.float32), jnp.asarray(width, jnp.float32)
  area, total = height * width, height + width

  def root(a, b, c):
    # (b + sqrt(d)) / 2, for b < 0 in the form without cancellation
    # (-2ac / (sqrt(d) - b), equal in exact arithmetic): float32 would lose
    # the digits that decide the radius's integer part.
    sqrt_d = jnp.sqrt(jnp.maximum(b * b - 4 * a * c, 0.0))
    return jnp.where(b >= 0, (b + sqrt_d) / 2, -2 * a * c / (sqrt_d - b))

  r1 = root(1.0, total, area * (1 - min_overlap) / (1 + min_overlap))
  r2 = root(4.0, 2 * total, (1 - min_overlap) * area)
  r3 = root(4 * min_overlap, -2 * min_overlap * total, (min_overlap - 1) * area)
  return jnp.minimum(jnp.minimum(r1, r2), r3)


def render_targets(
    boxes: jax.Array, labels: jax.Array, valid: jax.Array, map_size: tuple[int, int], classes: int
) -> Targets:
  """The targets of a batch of objects on maps of `map_size`.

  Args:
    boxes: (B, M, 4) normalized (ymin, xmin, ymax, xmax).
    labels: (B, M) int classes.
    valid: (B, M) bool.
    map_size: (h, w) of the output map.
    classes: C.

  Returns:
    The `Targets`.
  """
  scale = jnp.asarray([*map_size, *map_size], jnp.float32)
  pixels = boxes.astype(jnp.float32) * scale
  centre = (pixels[..., :2] + pixels[..., 2:]) / 2
  limit = jnp.asarray(map_size, jnp.float32) - 1
  centre_pixel = jnp.clip(jnp.floor(centre), 0, limit)
  size = pixels[..., 2:] - pixels[..., :2]
  valid = valid & jnp.all(size > 0, axis=-1)  # the reference skips empty boxes
  radius = jnp.maximum(
      jnp.floor(gaussian_radius(jnp.ceil(size[..., 0]), jnp.ceil(size[..., 1]))), 0
  )
  sigma = (2 * radius + 1) / 6
  rows = jnp.arange(map_size[0], dtype=jnp.float32)[:, None]
  cols = jnp.arange(map_size[1], dtype=jnp.float32)[None, :]
  dy = rows - centre_pixel[..., 0, None, None]  # (B, M, h, 1)
  dx = cols - centre_pixel[..., 1, None, None]  # (B, M, 1, w)
  window = (jnp.abs(dy) <= radius[..., None, None]) & (jnp.abs(dx) <= radius[..., None, None])
  gaussian = jnp.exp(-(dy * dy + dx * dx) / (2 * sigma[..., None, None] ** 2))
  gaussian = jnp.where(window & valid[..., None, None], gaussian, 0.0)
  batch = jnp.broadcast_to(jnp.arange(boxes.shape[0])[:, None], labels.shape)
  heatmap = jnp.zeros((boxes.shape[0], *map_size, classes), jnp.float32)
  # Advanced indices around the slices: the updates are (B, M, h, w).
  heatmap = heatmap.at[batch, :, :, labels].max(gaussian)
  flat = (centre_pixel[..., 0] * map_size[1] + centre_pixel[..., 1]).astype(jnp.int32)
  return Targets(heatmap, flat, size, centre - centre_pixel, valid)


def _focal_terms(logits: jax.Array, heatmap: jax.Array) -> jax.Array:
  """Eq. 1's summand at every pixel and class (before the sign and the division)."""
  logits = logits.astype(jnp.float32)
  p = jax.nn.sigmoid(logits)
  positive = (1 - p) ** FOCAL_ALPHA * jax.nn.log_sigmoid(logits)
  negative = (1 - heatmap) ** FOCAL_BETA * p**FOCAL_ALPHA * jax.nn.log_sigmoid(-logits)
  return jnp.where(heatmap == 1, positive, negative)


def focal_loss(logits: jax.Array, heatmap: jax.Array) -> jax.Array:
  """The penalty-reduced focal loss (Eq. 1), summed, divided by the centres (at least 1).

  Args:
    logits: (B, h, w, C) heatmap logits.
    heatmap: (B, h, w, C) targets, 1 exactly at the centres.

  Returns:
    The loss, a float32 scalar.
  """
  return -jnp.sum(_focal_terms(logits, heatmap)) / jnp.maximum(jnp.sum(heatmap == 1), 1)


def _at_centres(maps: jax.Array, centre: jax.Array) -> jax.Array:
  """(B, M, K) values of (B, h, w, K) maps at flat centre indices (B, M)."""
  flat = maps.reshape(maps.shape[0], -1, maps.shape[-1])
  return jnp.take_along_axis(flat, centre[..., None], axis=1)


def loss_sums(
    outputs: jax.Array, targets: Targets, image_weights: jax.Array | None = None
) -> dict[str, jax.Array]:
  """The sums Eq. 3's terms divide, so that they can be summed over batches first.

  Args:
    outputs: (B, h, w, C + 4) the network's outputs.
    targets: the batch's rendered targets.
    image_weights: (B,) 1 for the images to count, 0 for padding (None: all).

  Returns:
    {"heatmap": minus Eq. 1's sum, "centres": the heatmap's 1s, "size" and
    "offset": the L1 distances summed over the objects' coordinates,
    "objects": the real objects}, float32 scalars.
  """
  weights = jnp.ones(outputs.shape[0]) if image_weights is None else image_weights
  weights = weights.astype(jnp.float32)
  classes = outputs.shape[-1] - BOX_CHANNELS
  per_image = jnp.sum(_focal_terms(outputs[..., :classes], targets.heatmap), axis=(1, 2, 3))
  centres = jnp.sum(targets.heatmap == 1, axis=(1, 2, 3))
  objects = targets.valid.astype(jnp.float32) * weights[:, None]
  boxes = _at_centres(outputs[..., classes:].astype(jnp.float32), targets.centre)
  distance = lambda predicted, target: jnp.sum(jnp.abs(predicted - target), -1)
  return {
      "heatmap": -jnp.sum(per_image * weights),
      "centres": jnp.sum(centres * weights),
      "size": jnp.sum(distance(boxes[..., :2], targets.size) * objects),
      "offset": jnp.sum(distance(boxes[..., 2:], targets.offset) * objects),
      "objects": jnp.sum(objects),
  }


def losses(sums: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """{"heatmap", "size", "offset"}: Eq. 3's terms, unweighted, from `loss_sums`.

  The focal loss is divided by the heatmap's centres (at least 1), the L1
  losses by the objects' coordinates (+ 1e-4), as the reference code does.
  """
  coordinates = 2 * sums["objects"] + 1e-4
  return {
      "heatmap": sums["heatmap"] / jnp.maximum(sums["centres"], 1),
      "size": sums["size"] / coordinates,
      "offset": sums["offset"] / coordinates,
  }


def total_loss(parts: dict[str, jax.Array]) -> jax.Array:
  """Eq. 3: L_k + lambda_size L_size + lambda_off L_off."""
  return parts["heatmap"] + SIZE_WEIGHT * parts["size"] + OFFSET_WEIGHT * parts["offset"]


class Detections(NamedTuple):
  """The top-k detections of a batch.

  Attributes:
    boxes: (B, K, 4) normalized (ymin, xmin, ymax, xmax).
    scores: (B, K) heatmap peak values, highest first; 0 past the last peak.
    labels: (B, K) int32 classes.
  """

  boxes: jax.Array
  scores: jax.Array
  labels: jax.Array


def decode(outputs: jax.Array, k: int = TOP_K) -> Detections:
  """The k highest heatmap peaks of each image as boxes (Section 4: no NMS).

  Args:
    outputs: (B, h, w, C + 4) the network's outputs.
    k: detections per image.

  Returns:
    The `Detections`.
  """
  batch, height, width, channels = outputs.shape
  classes = channels - BOX_CHANNELS
  heat = jax.nn.sigmoid(outputs[..., :classes].astype(jnp.float32))
  pooled = jax.lax.reduce_window(heat, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 1, 1, 1), "SAME")
  peaks = jnp.where(heat == pooled, heat, 0.0).reshape(batch, -1)
  # A map with fewer than k entries: all of them, then rows of score 0.
  peaks = jnp.pad(peaks, ((0, 0), (0, max(k - peaks.shape[1], 0))))
  scores, index = jax.lax.top_k(peaks, k)
  index = jnp.minimum(index, height * width * classes - 1)
  position, labels = index // classes, index % classes
  values = jnp.take_along_axis(
      outputs[..., classes:].astype(jnp.float32).reshape(batch, -1, BOX_CHANNELS),
      position[..., None],
      axis=1,
  )
  pixel = jnp.stack([position // width, position % width], -1).astype(jnp.float32)
  # A negative size is no box: it is taken as 0.
  centre, half = pixel + values[..., 2:], jnp.maximum(values[..., :2], 0.0) / 2
  scale = jnp.asarray([height, width, height, width], jnp.float32)
  boxes = jnp.concatenate([centre - half, centre + half], -1) / scale
  return Detections(boxes, scores, labels.astype(jnp.int32))
