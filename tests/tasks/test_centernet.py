"""CenterNet's targets, loss and decoding against NumPy transcriptions of the reference code.

The reference is CenterNet's src/lib/utils/image.py (gaussian_radius,
gaussian2D, draw_umich_gaussian), datasets/sample/ctdet.py (the targets) and
models/losses.py (_neg_loss), transcribed below for one object at a time.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.tasks import centernet


def reference_radius(height, width, min_overlap=0.7):
  a1, b1 = 1, height + width
  c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
  r1 = (b1 + np.sqrt(b1**2 - 4 * a1 * c1)) / 2
  a2, b2 = 4, 2 * (height + width)
  c2 = (1 - min_overlap) * width * height
  r2 = (b2 + np.sqrt(b2**2 - 4 * a2 * c2)) / 2
  a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
  c3 = (min_overlap - 1) * width * height
  r3 = (b3 + np.sqrt(b3**2 - 4 * a3 * c3)) / 2
  return min(r1, r2, r3)


def reference_heatmap_and_regression(boxes, labels, map_size, classes):
  """ctdet.py's loop: boxes in map pixels (ymin, xmin, ymax, xmax)."""
  height, width = map_size
  heatmap = np.zeros((classes, height, width), np.float32)
  size, offset, index, valid = [], [], [], []
  for (y0, x0, y1, x1), label in zip(boxes, labels):
    h, w = y1 - y0, x1 - x0
    valid.append(h > 0 and w > 0)
    if not valid[-1]:
      size.append((0, 0)), offset.append((0, 0)), index.append(0)
      continue
    radius = max(0, int(reference_radius(math.ceil(h), math.ceil(w))))
    centre = np.array([(y0 + y1) / 2, (x0 + x1) / 2], np.float32)
    cy, cx = centre.astype(np.int32)
    diameter = 2 * radius + 1
    m = (diameter - 1) / 2
    y, x = np.ogrid[-m : m + 1, -m : m + 1]
    gaussian = np.exp(-(x * x + y * y) / (2 * (diameter / 6) ** 2))
    gaussian[gaussian < np.finfo(gaussian.dtype).eps * gaussian.max()] = 0
    left, right = min(cx, radius), min(width - cx, radius + 1)
    top, bottom = min(cy, radius), min(height - cy, radius + 1)
    region = heatmap[label, cy - top : cy + bottom, cx - left : cx + right]
    patch = gaussian[radius - top : radius + bottom, radius - left : radius + right]
    np.maximum(region, patch, out=region)
    size.append((h, w)), offset.append(centre - (cy, cx)), index.append(cy * width + cx)
  return heatmap.transpose(1, 2, 0), np.array(size), np.array(offset), index, np.array(valid)


def test_radius_equals_the_reference():
  sizes = np.arange(1, 40, dtype=np.float32)
  heights, widths = np.meshgrid(sizes, sizes)
  ours = np.asarray(centernet.gaussian_radius(heights, widths))
  expected = np.vectorize(reference_radius)(heights.astype(np.float64), widths.astype(np.float64))
  np.testing.assert_allclose(ours, expected, rtol=1e-6)
  # What the targets use: the integer part.
  assert np.array_equal(np.floor(ours), np.floor(expected))


def test_targets_equal_the_reference_code():
  rng = np.random.default_rng(0)
  map_size, classes, objects = (16, 20), 3, 9
  corners = rng.uniform(0, 1, (objects, 2, 2))
  boxes = np.concatenate([corners.min(1), corners.max(1)], -1).astype(np.float32)
  boxes[0] = [0.0, 0.0, 0.3, 0.2]  # at the border: the window is cut
  boxes[1] = [0.5, 0.5, 0.5, 0.7]  # empty: skipped
  boxes[2] = boxes[3] + 0.01  # two objects of one class overlapping: their maximum
  labels = rng.integers(0, classes, objects)
  labels[2] = labels[3]
  valid = np.ones(objects, bool)
  valid[-1] = False  # padding
  targets = centernet.render_targets(
      jnp.asarray(boxes[None]),
      jnp.asarray(labels[None]),
      jnp.asarray(valid[None]),
      map_size,
      classes,
  )
  in_pixels = boxes[:-1] * np.array([*map_size, *map_size], np.float32)
  heatmap, size, offset, index, real = reference_heatmap_and_regression(
      in_pixels, labels[:-1], map_size, classes
  )
  np.testing.assert_allclose(targets.heatmap[0], heatmap, atol=1e-6)
  assert targets.valid[0].tolist() == [*real.tolist(), False] and not real[1]
  assert np.array_equal(np.asarray(targets.centre[0, :-1])[real], np.array(index)[real])
  np.testing.assert_allclose(targets.size[0, :-1][real], size[real], atol=1e-6)
  np.testing.assert_allclose(targets.offset[0, :-1][real], offset[real], atol=1e-6)
  # A 1 at each object's centre (objects of a class on one pixel share it).
  centres = {(i, c) for i, c, r in zip(index, labels, real) if r}
  assert np.sum(np.asarray(targets.heatmap) == 1) == len(centres)


def reference_focal_loss(logits, heatmap):
  """losses.py's _neg_loss on the reference's clamped sigmoid."""
  pred = np.clip(1 / (1 + np.exp(-logits.astype(np.float64))), 1e-4, 1 - 1e-4)
  pos, neg = heatmap == 1, heatmap < 1
  pos_loss = np.sum(np.log(pred) * (1 - pred) ** 2 * pos)
  neg_loss = np.sum(np.log(1 - pred) * pred**2 * (1 - heatmap) ** 4 * neg)
  return -neg_loss if pos.sum() == 0 else -(pos_loss + neg_loss) / pos.sum()


@pytest.mark.parametrize("with_objects", [True, False])
def test_focal_loss_equals_the_reference(with_objects):
  rng = np.random.default_rng(1)
  heatmap = rng.uniform(0, 1, (2, 8, 8, 3)).astype(np.float32) ** 4
  if with_objects:
    heatmap[0, 2, 3, 1] = heatmap[1, 5, 5, 0] = heatmap[1, 0, 7, 2] = 1
  logits = rng.normal(0, 3, heatmap.shape).astype(np.float32)  # inside the clamp
  ours = float(centernet.focal_loss(jnp.asarray(logits), jnp.asarray(heatmap)))
  assert ours == pytest.approx(reference_focal_loss(logits, heatmap), rel=1e-5)


def test_decoding_perfect_outputs_gives_back_the_boxes():
  map_size, classes = (16, 16), 4
  boxes = np.array([[[0.1, 0.1, 0.45, 0.3], [0.5, 0.55, 0.9, 0.8], [0.2, 0.6, 0.5, 0.95]]])
  labels, valid = np.array([[2, 0, 2]]), np.ones((1, 3), bool)
  targets = centernet.render_targets(
      jnp.asarray(boxes, jnp.float32), jnp.asarray(labels), jnp.asarray(valid), map_size, classes
  )
  # Logits of the target heatmap (peaks at 1 -> large), size and offset at the centres.
  heat = jnp.clip(targets.heatmap, 1e-6, 1 - 1e-6)
  box_maps = jnp.zeros((1, *map_size, 4)).reshape(1, -1, 4)
  box_maps = box_maps.at[0, targets.centre[0]].set(
      jnp.concatenate([targets.size[0], targets.offset[0]], -1)
  )
  outputs = jnp.concatenate([jnp.log(heat / (1 - heat)), box_maps.reshape(1, *map_size, 4)], -1)
  found = centernet.decode(outputs, k=5)
  assert found.boxes.shape == (1, 5, 4) and found.scores.shape == found.labels.shape == (1, 5)
  top = np.argsort(-np.asarray(found.scores[0]))[:3]
  assert np.all(np.asarray(found.scores[0])[top] > 0.999)
  got = sorted(
      zip(np.asarray(found.labels[0])[top].tolist(), np.asarray(found.boxes[0])[top].tolist())
  )
  expected = sorted(zip(labels[0].tolist(), boxes[0].tolist()))
  for (label, box), (label_expected, box_expected) in zip(got, expected):
    assert label == label_expected
    np.testing.assert_allclose(box, box_expected, atol=1e-6)
  # Every other detection is a lower point of the Gaussians, not a second peak.
  assert np.all(np.sort(np.asarray(found.scores[0]))[:2] < 0.999)


def test_losses_are_zero_only_for_the_targets_themselves():
  map_size, classes = (8, 8), 2
  boxes = jnp.asarray([[[0.1, 0.2, 0.6, 0.7]]], jnp.float32)
  targets = centernet.render_targets(
      boxes, jnp.asarray([[1]]), jnp.ones((1, 1), bool), map_size, classes
  )
  box_maps = (
      jnp.zeros((1, 64, 4))
      .at[0, targets.centre[0]]
      .set(jnp.concatenate([targets.size[0], targets.offset[0]], -1))
  )
  outputs = jnp.concatenate([jnp.zeros((1, 8, 8, 2)), box_maps.reshape(1, 8, 8, 4)], -1)
  parts = centernet.losses(centernet.loss_sums(outputs, targets))
  assert float(parts["size"]) == 0 and float(parts["offset"]) == 0 and float(parts["heatmap"]) > 0
  shifted = centernet.losses(centernet.loss_sums(outputs.at[..., 2].add(1.0), targets))
  # L1 of 1 on one of the two size coordinates of the one object: 0.5.
  assert float(shifted["size"]) == pytest.approx(0.5, abs=1e-4)
  assert float(centernet.total_loss(shifted)) == pytest.approx(
      float(shifted["heatmap"]) + 0.1 * 0.5, rel=1e-5
  )
