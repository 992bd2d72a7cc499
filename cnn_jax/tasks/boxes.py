"""Box conventions in one place: TFDS's normalized boxes, pixel boxes and COCO's.

- normalized: (ymin, xmin, ymax, xmax) in [0, 1], TFDS's `BBoxFeature` (a
  dataset's `objects/bbox`);
- pixels: (ymin, xmin, ymax, xmax) in pixels, the convention of the metrics;
- COCO: (x, y, width, height) in pixels, as COCO's annotation files and
  pycocotools.

Every function takes float arrays with the coordinates on the last axis and
any leading axes; an integer array is computed in float64, a float array
keeps its dtype. Boxes are assumed well formed (min <= max); a malformed
box's area is negative, as COCO's w * h would be.
"""

from __future__ import annotations

import numpy as np


def _as_float(boxes: np.ndarray) -> np.ndarray:
  boxes = np.asarray(boxes)
  if not np.issubdtype(boxes.dtype, np.floating):
    boxes = boxes.astype(np.float64)
  if boxes.shape[-1:] != (4,):
    raise ValueError(f"boxes must have 4 coordinates on the last axis; got shape {boxes.shape}")
  return boxes


def _coordinates(boxes: np.ndarray) -> tuple[np.ndarray, ...]:
  """The four coordinates of (..., 4) boxes, each (...)."""
  boxes = _as_float(boxes)
  return tuple(boxes[..., i] for i in range(4))


def _scale(boxes: np.ndarray, height: float, width: float) -> np.ndarray:
  return np.asarray([height, width, height, width], boxes.dtype)


def normalized_to_pixels(boxes: np.ndarray, height: float, width: float) -> np.ndarray:
  """TFDS's normalized boxes as pixel boxes of an image of `height` x `width`.

  Args:
    boxes: (..., 4) normalized (ymin, xmin, ymax, xmax).
    height: the image's height in pixels.
    width: the image's width in pixels.

  Returns:
    (..., 4) pixel (ymin, xmin, ymax, xmax).
  """
  boxes = _as_float(boxes)
  return boxes * _scale(boxes, height, width)


def pixels_to_normalized(boxes: np.ndarray, height: float, width: float) -> np.ndarray:
  """Pixel boxes of an image of `height` x `width` as TFDS's normalized boxes.

  Args:
    boxes: (..., 4) pixel (ymin, xmin, ymax, xmax).
    height: the image's height in pixels.
    width: the image's width in pixels.

  Returns:
    (..., 4) normalized (ymin, xmin, ymax, xmax).
  """
  boxes = _as_float(boxes)
  return boxes / _scale(boxes, height, width)


def pixels_to_coco(boxes: np.ndarray) -> np.ndarray:
  """Pixel boxes as COCO's (x, y, width, height).

  Args:
    boxes: (..., 4) pixel (ymin, xmin, ymax, xmax).

  Returns:
    (..., 4) COCO (x, y, width, height) in pixels.
  """
  ymin, xmin, ymax, xmax = _coordinates(boxes)
  return np.stack([xmin, ymin, xmax - xmin, ymax - ymin], axis=-1)


def coco_to_pixels(boxes: np.ndarray) -> np.ndarray:
  """COCO's (x, y, width, height) boxes as pixel boxes.

  Args:
    boxes: (..., 4) COCO (x, y, width, height) in pixels.

  Returns:
    (..., 4) pixel (ymin, xmin, ymax, xmax); the far corner is x + width and
    y + height, as pycocotools computes it.
  """
  x, y, width, height = _coordinates(boxes)
  return np.stack([y, x, y + height, x + width], axis=-1)


def area(boxes: np.ndarray) -> np.ndarray:
  """The area of pixel boxes.

  Args:
    boxes: (..., 4) pixel (ymin, xmin, ymax, xmax).

  Returns:
    (...) (ymax - ymin) * (xmax - xmin): the same number as COCO's
    width * height of `pixels_to_coco(boxes)`, rounding included.
  """
  ymin, xmin, ymax, xmax = _coordinates(boxes)
  return (ymax - ymin) * (xmax - xmin)


def pairwise_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """The area that each box of `a` shares with each box of `b`.

  Args:
    a: (N, 4) pixel (ymin, xmin, ymax, xmax).
    b: (M, 4) pixel (ymin, xmin, ymax, xmax).

  Returns:
    (N, M) intersection areas, 0 for boxes that do not overlap or only touch.
  """
  a, b = _as_float(a)[:, None, :], _as_float(b)[None, :, :]
  heights = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
  widths = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
  return np.maximum(heights, 0) * np.maximum(widths, 0)


def pairwise_iou(
    a: np.ndarray,
    b: np.ndarray,
    area_a: np.ndarray | None = None,
    area_b: np.ndarray | None = None,
) -> np.ndarray:
  """Intersection over union of each box of `a` with each box of `b`.

  Continuous coordinates, no "+1" (as pycocotools; unlike PASCAL VOC's
  devkit, which counts pixels inclusively).

  Args:
    a: (N, 4) pixel (ymin, xmin, ymax, xmax).
    b: (M, 4) pixel (ymin, xmin, ymax, xmax).
    area_a: optional (N,) areas of `a` to use in the union (default `area(a)`).
    area_b: optional (M,) areas of `b` (default `area(b)`).

  Returns:
    (N, M) float IoU in [0, 1]; 0 where boxes do not overlap (degenerate,
    zero-area boxes included).
  """
  intersection = pairwise_intersection(a, b)
  area_a = area(a) if area_a is None else np.asarray(area_a)
  area_b = area(b) if area_b is None else np.asarray(area_b)
  union = area_a[:, None] + area_b[None, :] - intersection
  return np.divide(intersection, union, out=np.zeros_like(intersection), where=intersection > 0)
