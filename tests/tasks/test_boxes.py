"""Box conventions: known values, round trips, and IoU against pycocotools' maskApi."""

import numpy as np
import pytest
from pycocotools import mask as mask_api

from cnn_jax.tasks import boxes


def _random_pixel_boxes(rng, count, size=200.0):
  corners = rng.uniform(0.0, size, (count, 2, 2))  # two (y, x) corners each
  return np.concatenate([corners.min(1), corners.max(1)], axis=-1)


def test_known_values_in_each_convention():
  # TFDS: (ymin, xmin, ymax, xmax) in [0, 1]; an image 100 high and 200 wide.
  normalized = np.array([[0.1, 0.2, 0.5, 0.6]])
  pixels = boxes.normalized_to_pixels(normalized, height=100, width=200)
  np.testing.assert_allclose(pixels, [[10.0, 40.0, 50.0, 120.0]])
  np.testing.assert_allclose(boxes.pixels_to_coco(pixels), [[40.0, 10.0, 80.0, 40.0]])
  np.testing.assert_allclose(boxes.coco_to_pixels([[40.0, 10.0, 80.0, 40.0]]), pixels)
  np.testing.assert_allclose(boxes.pixels_to_normalized(pixels, 100, 200), normalized)
  np.testing.assert_allclose(boxes.area(pixels), [3200.0])


def test_round_trips_keep_leading_axes_and_float_dtypes():
  rng = np.random.default_rng(0)
  pixels = _random_pixel_boxes(rng, 12).reshape(3, 4, 4)
  normalized = boxes.pixels_to_normalized(pixels, 240, 320)
  assert normalized.shape == (3, 4, 4) and normalized.min() >= 0 and normalized.max() <= 1
  np.testing.assert_allclose(boxes.normalized_to_pixels(normalized, 240, 320), pixels, rtol=1e-12)
  np.testing.assert_allclose(boxes.coco_to_pixels(boxes.pixels_to_coco(pixels)), pixels, rtol=1e-12)
  coco = boxes.pixels_to_coco(pixels)
  np.testing.assert_allclose(boxes.pixels_to_coco(boxes.coco_to_pixels(coco)), coco, atol=1e-12)
  np.testing.assert_array_equal(boxes.area(pixels), coco[..., 2] * coco[..., 3])
  assert boxes.pixels_to_coco(pixels.astype(np.float32)).dtype == np.float32
  assert boxes.normalized_to_pixels(np.zeros((0, 4), np.float32), 8, 8).shape == (0, 4)
  assert boxes.area(np.array([[1, 2, 4, 7]])).dtype == np.float64  # ints computed in float
  with pytest.raises(ValueError, match="4 coordinates"):
    boxes.area(np.zeros((2, 5)))


def test_pairwise_iou_known_values():
  a = np.array([[0.0, 0.0, 10.0, 10.0]])
  b = np.array(
      [
          [0.0, 0.0, 10.0, 10.0],  # the same box
          [0.0, 5.0, 10.0, 15.0],  # half of each: 50 / 150
          [0.0, 10.0, 10.0, 20.0],  # touching: no overlap
          [20.0, 20.0, 30.0, 30.0],  # apart
          [2.0, 2.0, 4.0, 4.0],  # inside: 4 / 100
          [5.0, 5.0, 5.0, 9.0],  # zero area
      ]
  )
  np.testing.assert_allclose(boxes.pairwise_iou(a, b), [[1.0, 1 / 3, 0.0, 0.0, 0.04, 0.0]])
  np.testing.assert_allclose(boxes.pairwise_intersection(a, b), [[100.0, 50, 0, 0, 4, 0]])
  assert boxes.pairwise_iou(a, np.zeros((0, 4))).shape == (1, 0)
  assert boxes.pairwise_iou(np.zeros((0, 4)), b).shape == (0, 6)


def test_pairwise_iou_is_pycocotools_through_the_coco_conversion():
  rng = np.random.default_rng(1)
  a, b = _random_pixel_boxes(rng, 30), _random_pixel_boxes(rng, 20)
  # Many overlapping pairs, not only the few of uniform random boxes.
  b[:10] = a[:10] + rng.normal(0.0, 5.0, (10, 4))
  b[:10, 2:] = np.maximum(b[:10, 2:], b[:10, :2])
  expected = mask_api.iou(boxes.pixels_to_coco(a), boxes.pixels_to_coco(b), [0] * len(b))
  assert (expected > 0.5).sum() >= 5
  np.testing.assert_allclose(boxes.pairwise_iou(a, b), expected, rtol=1e-12, atol=1e-15)
