"""On-device augmentation: shapes, exact values, determinism and spec parsing.

Images are tiny and most checks run eagerly on single images; the composed
pipeline is jitted once per channel count, since compiles dominate the time.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.data import augment

KEY = jax.random.key(0)
SPEC = "flip_lr|crop(pad=4)|color_jitter(0.4,0.4)|rotate(15)|noise(std=0.05)"
EVERY_OP = (
    "flip_lr|flip_ud|rotate(15)|scale(0.8,1.2)|translate(2)|crop(pad=2)"
    "|affine(10, 0.1, 10, 1)"
    "|random_resized_crop|color_jitter(0.2,0.2,0.2)|noise(std=0.05)"
)


def images(shape=(2, 8, 8, 3), seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=shape).astype(np.float32))


def assert_identity(out, x, atol=1e-5):
  assert out.shape == x.shape and out.dtype == x.dtype
  np.testing.assert_allclose(out, x, atol=atol, rtol=0)


def shifted(x, dy, dx):
  """x moved down by dy and right by dx, zero-filled (the expected translate)."""
  h, w = x.shape[:2]
  out = np.zeros_like(x)
  out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
      max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
  ]
  return out


# ----------------------------------------------------------------------------
# Shapes and dtypes.


@pytest.fixture(scope="module")
def jitted_every_op():
  return jax.jit(augment.from_spec(EVERY_OP))


def test_every_op_is_in_the_shape_spec():
  assert {name for name, _ in augment.parse(EVERY_OP)} == set(augment.OPS)


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (4, 12, 12, 1)])
def test_composed_ops_keep_shape_and_dtype_under_jit(jitted_every_op, shape):
  x = images(shape)
  out = jitted_every_op(KEY, x)
  assert out.shape == shape and out.dtype == jnp.float32
  assert np.isfinite(out).all()
  # Same key, same output: nothing in the pipeline depends on hidden state.
  np.testing.assert_array_equal(jitted_every_op(KEY, x), out)
  assert not np.allclose(jitted_every_op(jax.random.key(1), x), out)


@pytest.mark.parametrize("name", sorted(augment.OPS))
def test_each_op_keeps_shape_and_dtype_through_from_spec_and_vmap(name):
  x = images()
  out = augment.from_spec(name)(KEY, x)
  assert out.shape == x.shape and out.dtype == x.dtype
  # The single-image op vmaps on its own too, and from_spec is exactly that vmap.
  keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(jax.random.split(KEY, 2))
  np.testing.assert_array_equal(jax.vmap(augment.OPS[name])(keys, x), out)


def test_from_spec_and_ops_reject_wrong_ranks():
  with pytest.raises(ValueError, match="N, H, W, C"):
    augment.from_spec("flip_lr")(KEY, images()[0])
  with pytest.raises(ValueError, match="'noise'.*H, W, C"):
    augment.noise(KEY, images())


# ----------------------------------------------------------------------------
# Exact values.


def test_flips():
  x = images()[0]
  flipped = augment.flip_lr(KEY, x, p=1.0)
  np.testing.assert_array_equal(flipped, x[:, ::-1])
  np.testing.assert_array_equal(augment.flip_lr(jax.random.key(3), flipped, p=1.0), x)
  np.testing.assert_array_equal(augment.flip_ud(KEY, x, p=1.0), x[::-1])
  np.testing.assert_array_equal(augment.flip_ud(KEY, augment.flip_ud(KEY, x, p=1.0), p=1.0), x)
  np.testing.assert_array_equal(augment.flip_lr(KEY, x, p=0.0), x)


@pytest.mark.parametrize(
    "op,params",
    [
        ("noise", {"std": 0.0}),
        ("crop", {"pad": 0}),
        ("rotate", {"degrees": 0}),
        ("scale", {"low": 1, "high": 1}),
        ("translate", {"pixels": 0}),
        ("translate", {"pixels": 0, "integer": False}),
        ("affine", {}),
        ("random_resized_crop", {"scale": (1, 1), "ratio": (1, 1)}),
        ("color_jitter", {}),
    ],
)
def test_zero_strength_is_the_identity(op, params):
  x = images()[0]
  assert_identity(augment.OPS[op](KEY, x, **params), x)


def test_warp_rotates_counter_clockwise_about_the_centre():
  x = images((1, 9, 9, 2))[0]
  inner = (slice(1, -1), slice(1, -1))
  np.testing.assert_allclose(augment.warp(x, angle=180)[inner], x[::-1, ::-1][inner], atol=1e-5)
  np.testing.assert_allclose(augment.warp(x, angle=90)[inner], np.rot90(x)[inner], atol=1e-5)


def test_warp_shift_moves_pixels_exactly():
  x = np.asarray(images()[0])
  np.testing.assert_array_equal(augment.warp(x, shift=(1, -2)), shifted(x, 1, -2))


def test_warp_zoom_about_the_centre():
  # Zoom 2 maps output pixel p to input centre + (p - centre) / 2; on an odd
  # size the centre pixel is a fixed point.
  x = images((1, 9, 9, 1))[0]
  out = augment.warp(x, zoom=2.0)
  np.testing.assert_allclose(out[4, 4], x[4, 4], atol=1e-6)
  np.testing.assert_allclose(out[6, 4], x[5, 4], atol=1e-6)
  np.testing.assert_allclose(out[5, 4], (x[4, 4] + x[5, 4]) / 2, atol=1e-6)


def test_warp_shear_moves_each_row_by_its_distance_from_the_centre():
  # 45 degrees: tan = 1, so row r moves r - 4 pixels right (whole pixels: exact).
  x = np.asarray(images((1, 9, 9, 1))[0])
  out = np.asarray(augment.warp(x, shear=45.0))
  for row in range(9):
    np.testing.assert_allclose(out[row], shifted(x, 0, row - 4)[row], atol=1e-5)


def test_warp_squeeze_narrows_and_elongates_about_the_centre():
  # Squeeze 2 maps output pixel (r, c) to input centre + (2 (r - 4), (c - 4) / 2).
  x = images((1, 9, 9, 1))[0]
  out = augment.warp(x, squeeze=2.0)
  np.testing.assert_allclose(out[5, 4], x[6, 4], atol=1e-6)
  np.testing.assert_allclose(out[4, 6], x[4, 5], atol=1e-6)
  np.testing.assert_allclose(out[4, 5], (x[4, 4] + x[4, 5]) / 2, atol=1e-6)
  np.testing.assert_allclose(augment.warp(x, squeeze=1.0), x, atol=1e-6)


def test_affine_stays_within_its_ranges():
  # A bright centre pixel lands within `pixels` of the centre whatever the
  # rotation, zoom and shear (they all keep the centre in place).
  x = np.zeros((15, 15, 1), np.float32)
  x[7, 7] = 1.0
  for seed in range(20):
    out = np.asarray(
        augment.affine(
            jax.random.key(seed), x, degrees=15, scale=0.15, shear=15, pixels=2, squeeze=0.15
        )
    )
    row, col = np.unravel_index(np.argmax(out[..., 0]), out.shape[:2])
    assert abs(row - 7) <= 2 and abs(col - 7) <= 2
  with pytest.raises(ValueError, match="scale must be in"):
    augment.affine(KEY, x, scale=1.0)
  with pytest.raises(ValueError, match="squeeze must be in"):
    augment.affine(KEY, x, squeeze=1.0)


def test_translate_and_crop_draw_whole_pixel_shifts():
  x = np.asarray(images()[0])
  for op, params, reach in [("translate", {"pixels": 2}, 2), ("crop", {"pad": 2}, 2)]:
    out = np.asarray(augment.OPS[op](jax.random.key(7), x, **params))
    matches = [
        (dy, dx)
        for dy in range(-reach, reach + 1)
        for dx in range(-reach, reach + 1)
        if np.array_equal(out, shifted(x, dy, dx))
    ]
    assert len(matches) == 1, (op, matches)


def test_brightness_is_one_shift_within_range():
  x = images()[0]
  out = augment.color_jitter(jax.random.key(5), x, brightness=0.3)
  delta = out - x
  np.testing.assert_allclose(delta, delta[0, 0, 0], atol=1e-6)
  assert 0 < abs(float(delta[0, 0, 0])) <= 0.3
  np.testing.assert_allclose(out.mean() - x.mean(), delta[0, 0, 0], atol=1e-6)


def test_contrast_keeps_the_mean_and_scales_deviations():
  x = images()[0]
  out = augment.color_jitter(jax.random.key(5), x, contrast=0.5)
  np.testing.assert_allclose(out.mean(), x.mean(), atol=1e-6)
  # Deviations are one common multiple of the old ones (least-squares factor).
  before, after = np.asarray(x - x.mean()), np.asarray(out - out.mean())
  factor = float((after * before).sum() / (before * before).sum())
  np.testing.assert_allclose(after, factor * before, atol=1e-6)
  assert 0.5 <= factor <= 1.5 and abs(factor - 1) > 1e-3


def test_saturation_keeps_luma_and_ignores_gray_images():
  x = images()[0]
  out = augment.color_jitter(jax.random.key(5), x, saturation=0.5)
  luma = np.array([0.299, 0.587, 0.114], np.float32)
  np.testing.assert_allclose(out @ luma, x @ luma, atol=1e-6)
  assert not np.allclose(out, x)
  gray = images((1, 8, 8, 1))[0]
  np.testing.assert_array_equal(augment.color_jitter(KEY, gray, saturation=0.5), gray)
  with pytest.raises(ValueError, match="'color_jitter'.*1 or 3 channels"):
    augment.color_jitter(KEY, images((1, 8, 8, 2))[0], saturation=0.5)


def test_random_resized_crop_stays_inside_the_image():
  # Bilinear weights sum to one and the border repeats edge pixels, so a
  # constant image stays constant whatever box is drawn (zero fill would not).
  x = jnp.full((8, 8, 3), 0.7, jnp.float32)
  out = augment.random_resized_crop(KEY, x, scale=(0.1, 0.3))
  np.testing.assert_allclose(out, x, atol=1e-6)


def test_noise_has_the_asked_spread():
  x = jnp.zeros((16, 16, 3), jnp.float32)
  out = augment.noise(KEY, x, std=0.1)
  assert 0.08 < float(out.std()) < 0.12


# ----------------------------------------------------------------------------
# Determinism and independence.


@pytest.mark.parametrize("spec", ["crop(pad=4)", "noise(std=0.1)"])
def test_keys_decide_and_examples_differ(spec):
  fn = augment.from_spec(spec)
  x = jnp.broadcast_to(images((1, 8, 8, 3)), (4, 8, 8, 3))
  out = np.asarray(fn(KEY, x))
  np.testing.assert_array_equal(fn(KEY, x), out)
  assert not np.array_equal(fn(jax.random.key(1), x), out)
  # Identical inputs, one batch: every pair of examples got its own transform.
  assert all(not np.array_equal(out[i], out[j]) for i in range(4) for j in range(i))


# ----------------------------------------------------------------------------
# Parsing.


def test_parse_the_example_spec():
  assert augment.parse(SPEC) == [
      ("flip_lr", {}),
      ("crop", {"pad": 4}),
      ("color_jitter", {"brightness": 0.4, "contrast": 0.4}),
      ("rotate", {"degrees": 15}),
      ("noise", {"std": 0.05}),
  ]
  assert augment.parse(" random_resized_crop(scale=(0.5, 1.0)) | translate(1.5, integer=0)") == [
      ("random_resized_crop", {"scale": (0.5, 1.0)}),
      ("translate", {"pixels": 1.5, "integer": 0}),
  ]


@pytest.mark.parametrize("spec", ["", "none", "  None "])
def test_empty_spec_is_no_augmentation(spec):
  assert augment.parse(spec) == []
  x = images()
  assert augment.from_spec(spec)(KEY, x) is x


def test_from_spec_takes_parsed_lists():
  x = images()
  spec = "flip_lr|noise(std=0.1)"
  np.testing.assert_array_equal(
      augment.from_spec(augment.parse(spec))(KEY, x), augment.from_spec(spec)(KEY, x)
  )


def test_unknown_op_lists_the_known_ones():
  with pytest.raises(ValueError, match=r"'blur'.*known ops: flip_lr, flip_ud, rotate") as err:
    augment.parse("flip_lr|blur(3)")
  assert "\n" not in str(err.value)
  with pytest.raises(ValueError, match="'blur'"):
    augment.from_spec([("blur", {})])


@pytest.mark.parametrize(
    "spec,op",
    [
        ("rotate(1, 2)", "rotate"),
        ("rotate(-5)", "rotate"),
        ("rotate(x)", "rotate"),
        ("noise(sd=0.1)", "noise"),
        ("noise(std=-1)", "noise"),
        ("crop(pad='a')", "crop"),
        ("crop(pad=1.5)", "crop"),
        ("flip_lr(p=2)", "flip_lr"),
        ("scale(1.2, 0.8)", "scale"),
        ("translate(2.5)", "translate"),
        ("random_resized_crop(scale=(0.5,))", "random_resized_crop"),
        ("random_resized_crop(ratio=(2, 1))", "random_resized_crop"),
        ("color_jitter(contrast=2)", "color_jitter"),
        ("rotate(", "rotate"),
    ],
)
def test_bad_arguments_name_the_op(spec, op):
  with pytest.raises(ValueError, match=f"'{op}") as err:
    augment.parse(spec)
  assert "\n" not in str(err.value)
