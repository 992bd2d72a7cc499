"""Augmentation with targets: the mask and the boxes move as the image does.

Known geometry (flips, whole-pixel shifts, a quarter turn, a 2x zoom) is
checked exactly. For every geometric op, an image whose channels are its own
row and column numbers tells where each output pixel was read (bilinear
sampling reproduces a linear ramp exactly); the mask must show the class
nearest that position, and the boxes must move by that same map.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.data import augment

KEY = jax.random.key(0)
SIZE = 16
# An exact op, a warp, the resized crop and both photometric ops; tests/data/
# test_augment.py checks that from_spec applies each op as the op does.
SPEC = (
    "flip_lr|crop(pad=2)|affine(10, 0.1, 10, 1, 0.1)|random_resized_crop"
    "|color_jitter(0.2,0.2,0.2)|noise(std=0.05)"
)


def with_targets(spec, batch, key=KEY, **kwargs):
  return augment.from_spec_with_targets(spec, **kwargs)(key, batch)


def targets_batch(image, mask, boxes):
  """A batch of one or more examples; every box valid."""
  boxes = jnp.asarray(boxes, jnp.float32)
  return {
      "image": jnp.asarray(image, jnp.float32),
      "segmentation_mask": jnp.asarray(mask, jnp.uint8),
      "boxes": boxes,
      "box_valid": jnp.ones(boxes.shape[:2], bool),
  }


def coordinate_batch(count=4, boxes_per_image=4, seed=0):
  """Images whose channels are (row, col, 1); random classes and boxes."""
  rng = np.random.default_rng(seed)
  rows, cols = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
  image = np.stack([rows, cols, np.ones_like(rows)], -1).astype(np.float32)
  # Class 0 only where the image is left (fill), so a misplaced pixel shows.
  mask = rng.integers(1, 256, (count, SIZE, SIZE))
  corners = np.sort(rng.uniform(0, 1, (count, boxes_per_image, 2, 2)), axis=2)
  boxes = corners.reshape(count, boxes_per_image, 4)  # (ymin, xmin, ymax, xmax)
  return targets_batch(np.broadcast_to(image, (count, *image.shape)), mask, boxes)


def shifted(x, dy, dx):
  """x moved down by dy and right by dx, zero-filled."""
  h, w = x.shape[:2]
  out = np.zeros_like(x)
  out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
      max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
  ]
  return out


def expected_boxes(boxes, matrix, offset, size, min_visibility=0.25):
  """Reference: boxes moved by the sampling map out -> matrix @ out + offset (pixel centres)."""
  ys, xs = boxes[:, 0::2], boxes[:, 1::2]
  corners = np.stack(np.broadcast_arrays(ys[:, :, None], xs[:, None, :]), -1).reshape(-1, 4, 2)
  moved = ((corners * size - 0.5 - offset) @ np.linalg.inv(matrix).T + 0.5) / size
  low, high = moved.min(1), moved.max(1)
  area = np.prod(high - low, -1)
  low, high = np.clip(low, 0, 1), np.clip(high, 0, 1)
  visible = np.prod(high - low, -1) / area
  valid = (visible > 0) & (visible >= min_visibility)
  return np.where(valid[:, None], np.concatenate([low, high], -1), 0), valid


# ----------------------------------------------------------------------------
# Known geometry.


def test_every_op_is_geometric_or_photometric():
  assert set(augment.TRANSFORMS) | augment.PHOTOMETRIC == set(augment.OPS)
  assert not set(augment.TRANSFORMS) & augment.PHOTOMETRIC


def test_flips_mirror_the_mask_and_the_boxes():
  image = np.random.default_rng(0).uniform(size=(1, 8, 8, 2))
  mask = np.zeros((1, 8, 8))
  mask[0, 2, 1] = 3
  batch = targets_batch(image, mask, [[[0.25, 0.125, 0.5, 0.375]]])
  out = with_targets("flip_lr(p=1)", batch)
  np.testing.assert_array_equal(out["image"], batch["image"][:, :, ::-1])
  assert np.argwhere(np.asarray(out["segmentation_mask"][0])).tolist() == [[2, 6]]
  np.testing.assert_allclose(out["boxes"], [[[0.25, 0.625, 0.5, 0.875]]], atol=1e-6)
  out = with_targets("flip_ud(p=1)", batch)
  assert np.argwhere(np.asarray(out["segmentation_mask"][0])).tolist() == [[5, 1]]
  np.testing.assert_allclose(out["boxes"], [[[0.5, 0.125, 0.75, 0.375]]], atol=1e-6)
  out = with_targets("flip_lr(p=0)|flip_ud(p=0)", batch)
  np.testing.assert_array_equal(out["segmentation_mask"], batch["segmentation_mask"])
  np.testing.assert_array_equal(out["boxes"], batch["boxes"])


def test_whole_pixel_shifts_move_mask_and_boxes_and_drop_what_leaves():
  count = 16
  image = np.arange(1, 65, dtype=np.float32).reshape(8, 8, 1)  # every pixel its own value
  mask = np.random.default_rng(1).integers(1, 256, (count, 8, 8))
  # A: rows 2-5, cols 4-7; B: rows 0-1, cols 6-7. Both touch the right edge.
  boxes = np.broadcast_to([[0.25, 0.5, 0.75, 1.0], [0.0, 0.75, 0.25, 1.0]], (count, 2, 4))
  batch = targets_batch(np.broadcast_to(image, (count, 8, 8, 1)), mask, boxes)
  valid_at = {}
  for min_visibility in (0.0, 0.5):
    out = jax.tree.map(
        np.asarray, with_targets("translate(3)", batch, min_visibility=min_visibility)
    )
    for i in range(count):
      (shift,) = [
          (dy, dx)
          for dy in range(-3, 4)
          for dx in range(-3, 4)
          if np.array_equal(out["image"][i], shifted(image, dy, dx))
      ]
      np.testing.assert_array_equal(out["segmentation_mask"][i], shifted(mask[i], *shift))
      want, valid = expected_boxes(boxes[i], np.eye(2), -np.array(shift, float), 8, min_visibility)
      np.testing.assert_array_equal(out["box_valid"][i], valid)
      np.testing.assert_allclose(out["boxes"][i], want, atol=1e-6)
    valid_at[min_visibility] = out["box_valid"]
  # Not vacuous: some boxes left the image, others kept only a part of them
  # (fine at 0, dropped at 0.5), others stayed whole.
  assert not valid_at[0.0].all() and valid_at[0.0].any()
  assert (valid_at[0.0] & ~valid_at[0.5]).any()
  assert (valid_at[0.5] <= valid_at[0.0]).all()


def test_a_quarter_turn_turns_image_mask_and_boxes():
  transform = augment.warp_transform((8, 8, 1), angle=90)
  rng = np.random.default_rng(2)
  image, mask = rng.uniform(size=(8, 8, 1)).astype(np.float32), rng.integers(0, 256, (8, 8))
  inner = (slice(1, -1), slice(1, -1))
  np.testing.assert_allclose(transform.image(image)[inner], np.rot90(image)[inner], atol=1e-5)
  np.testing.assert_array_equal(transform.mask(jnp.asarray(mask, jnp.uint8)), np.rot90(mask))
  boxes = np.sort(rng.uniform(size=(5, 2, 2)), axis=1).reshape(5, 4)
  moved, visible = transform.boxes(jnp.asarray(boxes, jnp.float32))
  ymin, xmin, ymax, xmax = boxes.T
  np.testing.assert_allclose(moved, np.stack([1 - xmax, ymin, 1 - xmin, ymax], 1), atol=1e-5)
  np.testing.assert_allclose(visible, 1.0, atol=1e-5)


def test_a_2x_zoom_magnifies_mask_and_boxes_about_the_centre():
  mask = np.random.default_rng(3).integers(1, 256, (1, 8, 8))
  boxes = [[[0.25, 0.25, 0.75, 0.75], [0.5, 0.375, 0.625, 0.5], [0.0, 0.0, 0.2, 0.2]]]
  out = with_targets("scale(2, 2)", targets_batch(np.zeros((1, 8, 8, 1)), mask, boxes))
  # Output pixel p reads 3.5 + (p - 3.5) / 2: input pixels 2..5, each twice.
  want = mask[0, 2:6, 2:6].repeat(2, 0).repeat(2, 1)
  np.testing.assert_array_equal(out["segmentation_mask"][0], want)
  np.testing.assert_allclose(
      out["boxes"][0], [[0, 0, 1, 1], [0.5, 0.25, 0.75, 0.5], [0, 0, 0, 0]], atol=1e-6
  )
  np.testing.assert_array_equal(out["box_valid"][0], [True, True, False])


# ----------------------------------------------------------------------------
# Every geometric op: targets follow the image's own sampling.


@pytest.mark.parametrize(
    "spec",
    [
        "flip_lr",
        "flip_ud",
        "rotate(30)",
        "scale(0.6, 1.4)",
        "translate(3)",
        "translate(2.5, integer=0)",
        "affine(20, 0.2, 15, 1.5, 0.2)",
        "crop(pad=3)",
        "random_resized_crop(scale=(0.2, 1.0))",
    ],
)
def test_mask_and_boxes_follow_the_image(spec):
  batch = coordinate_batch()
  out = jax.tree.map(np.asarray, with_targets(spec, batch))
  for i in range(len(out["image"])):
    src_rows, src_cols, ones = np.moveaxis(out["image"][i], -1, 0)
    # Every bilinear neighbour inside the image: the ramps are the read position.
    inside = ones > 1 - 1e-5
    nearest = [
        np.clip(np.floor(src + 0.5), 0, SIZE - 1).astype(int) for src in (src_rows, src_cols)
    ]
    untied = (np.abs(src_rows % 1 - 0.5) > 1e-3) & (np.abs(src_cols % 1 - 0.5) > 1e-3)
    check = inside & untied
    assert check.sum() >= 2 * SIZE
    mask = np.asarray(batch["segmentation_mask"][i])
    np.testing.assert_array_equal(out["segmentation_mask"][i][check], mask[tuple(nearest)][check])
    assert (out["segmentation_mask"][i][ones == 0] == 0).all()  # from outside: background
    # The map itself, fitted where no edge was repeated: (row, col, 1) -> source.
    fit = (
        inside
        & (np.minimum(src_rows, src_cols) > 1e-3)
        & (np.maximum(src_rows, src_cols) < SIZE - 1 - 1e-3)
    )
    rows, cols = np.nonzero(fit)
    design = np.stack([rows, cols, np.ones_like(rows)], 1).astype(float)
    coef = np.linalg.lstsq(design, np.stack([src_rows[fit], src_cols[fit]], 1), rcond=None)[0]
    want, valid = expected_boxes(np.asarray(batch["boxes"][i], float), coef[:2].T, coef[2], SIZE)
    np.testing.assert_array_equal(out["box_valid"][i], valid)
    np.testing.assert_allclose(out["boxes"][i], want, atol=1e-4)


def test_photometric_ops_leave_mask_and_boxes_alone():
  batch = coordinate_batch()
  out = with_targets("color_jitter(0.4, 0.4, 0.4)|noise(std=0.1)", batch)
  assert not np.allclose(out["image"], batch["image"])
  for name in ("segmentation_mask", "boxes", "box_valid"):
    np.testing.assert_array_equal(out[name], batch[name])
  # Between two flips that cancel, they move nothing either.
  out = with_targets("flip_lr(p=1)|noise(std=0.1)|color_jitter(0.3)|flip_lr(p=1)", batch)
  np.testing.assert_array_equal(out["segmentation_mask"], batch["segmentation_mask"])
  np.testing.assert_allclose(out["boxes"], batch["boxes"], atol=1e-6)
  np.testing.assert_array_equal(out["box_valid"], batch["box_valid"])


# ----------------------------------------------------------------------------
# Same images as from_spec, under jit too; checks of the batch.


def test_images_are_from_specs_also_under_jit():
  batch = {**coordinate_batch(), "label": jnp.arange(4)}
  eager = with_targets(SPEC, batch)
  np.testing.assert_array_equal(eager["image"], augment.from_spec(SPEC)(KEY, batch["image"]))
  jitted = jax.jit(augment.from_spec_with_targets(SPEC))(KEY, batch)
  # Bit-identical under XLA's default flags too; the suite compiles at LLVM
  # level 0 with the legacy emitters (conftest), whose float code depends on
  # the rest of the program, so a jitted image may differ in its last bits.
  np.testing.assert_allclose(
      jitted["image"], jax.jit(augment.from_spec(SPEC))(KEY, batch["image"]), atol=1e-4
  )
  np.testing.assert_array_equal(jitted["segmentation_mask"], eager["segmentation_mask"])
  np.testing.assert_array_equal(jitted["box_valid"], eager["box_valid"])
  np.testing.assert_allclose(jitted["boxes"], eager["boxes"], atol=1e-6)
  np.testing.assert_array_equal(jitted["label"], batch["label"])
  assert jitted["segmentation_mask"].dtype == jnp.uint8 and jitted["boxes"].dtype == jnp.float32
  # Not the identity: the targets did move.
  assert not np.array_equal(eager["segmentation_mask"], batch["segmentation_mask"])
  # A legacy uint32 key draws the same transforms for the targets as for the image.
  legacy = with_targets("flip_lr", batch, key=jax.random.PRNGKey(3))
  flipped = np.asarray(legacy["image"][..., 1] != batch["image"][..., 1]).any(axis=(1, 2))
  want = np.where(
      flipped[:, None, None], batch["segmentation_mask"][:, :, ::-1], batch["segmentation_mask"]
  )
  np.testing.assert_array_equal(legacy["segmentation_mask"], want)
  assert 0 < flipped.sum() < len(flipped)


def test_bad_batches_and_settings_are_one_line_errors():
  augment_fn = augment.from_spec_with_targets("flip_lr")
  batch = coordinate_batch()
  wrong = {**batch, "segmentation_mask": batch["segmentation_mask"][:, :8]}
  with pytest.raises(ValueError, match="'segmentation_mask' must be integer classes of shape"):
    augment_fn(KEY, wrong)
  with pytest.raises(ValueError, match="'boxes' and 'box_valid' come together"):
    augment_fn(KEY, {name: value for name, value in batch.items() if name != "box_valid"})
  with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
    augment_fn(KEY, {"image": batch["image"][0]})
  with pytest.raises(ValueError, match="min_visibility must lie in"):
    augment.from_spec_with_targets("flip_lr", min_visibility=1.5)
