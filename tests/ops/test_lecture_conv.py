"""Tests for the lecture convolution with its hand-derived backward pass, and
for the im2col + GEMM convolution: both stand in for XLA's convolution."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnn_jax.ops import lecture_conv2d, lecture_conv_general_dilated
from cnn_jax.ops.gemm_conv import gemm_conv2d, gemm_conv_general_dilated

CONV2D = {"lecture": lecture_conv2d, "gemm": gemm_conv2d}
GENERAL = {"lecture": lecture_conv_general_dilated, "gemm": gemm_conv_general_dilated}
IMPLS = pytest.mark.parametrize("impl", list(CONV2D))

# float32 default (no x64), as in training.
jax.config.update("jax_enable_x64", False)

_DN = ("NHWC", "HWIO", "NHWC")

# (x shape NHWC, w shape HWIO, stride, padding as passed to lecture_conv2d)
CASES = [
    pytest.param((2, 5, 5, 3), (3, 3, 3, 4), 1, 0, id="basic"),
    pytest.param((2, 6, 6, 2), (3, 3, 2, 3), 2, 1, id="stride2-pad1"),
    pytest.param((1, 7, 5, 2), (3, 2, 2, 3), 1, 0, id="nonsquare"),
    pytest.param((2, 6, 9, 3), (2, 3, 3, 2), (2, 3), ((1, 0), (2, 1)), id="asym-pad-stride"),
    # (8 - 3 + 0) % 2 == 1 and (7 - 2 + 2) % 3 == 1: trailing rows/cols untouched.
    pytest.param((2, 8, 7, 2), (3, 2, 2, 2), (2, 3), (0, 1), id="untouched"),
    pytest.param((1, 4, 4, 1), (4, 4, 1, 2), 1, 2, id="kernel-eq-input"),
]


def _explicit_pads(padding):
  """Same normalisation as lecture_conv2d, for the lax reference call."""
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  if all(isinstance(p, int) for p in padding):
    return tuple((p, p) for p in padding)
  return tuple(tuple(p) for p in padding)


def _strides(stride):
  return (stride, stride) if isinstance(stride, int) else tuple(stride)


def _reference(x, w, stride, padding):
  return lax.conv_general_dilated(
      x,
      w,
      _strides(stride),
      _explicit_pads(padding),
      dimension_numbers=_DN,
      precision=lax.Precision.HIGHEST,
  )


def _rel_err(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)


def _random(seed, *shapes):
  # NumPy RNG: jax.random would compile a threefry kernel per shape (slow on CPU).
  rng = np.random.default_rng(seed)
  return [jnp.asarray(rng.standard_normal(s), jnp.float32) for s in shapes]


@IMPLS
@pytest.mark.parametrize("xs,ws,stride,padding", CASES)
def test_forward_matches_lax(impl, xs, ws, stride, padding):
  x, w = _random(0, xs, ws)
  out = CONV2D[impl](x, w, stride, padding)
  ref = _reference(x, w, stride, padding)
  assert out.shape == ref.shape
  assert _rel_err(out, ref) < 1e-5


@IMPLS
@pytest.mark.parametrize("xs,ws,stride,padding", CASES)
def test_gradients_match_autodiff(impl, xs, ws, stride, padding):
  x, w = _random(1, xs, ws)
  r = _random(2, _reference(x, w, stride, padding).shape)[0]

  def loss_lecture(x, w):
    return jnp.sum(CONV2D[impl](x, w, stride, padding) * r)

  def loss_ref(x, w):
    return jnp.sum(_reference(x, w, stride, padding) * r)

  # jit: one compilation instead of one per eager primitive (faster tests).
  dx, dw = jax.jit(jax.grad(loss_lecture, argnums=(0, 1)))(x, w)
  rdx, rdw = jax.jit(jax.grad(loss_ref, argnums=(0, 1)))(x, w)
  assert dx.shape == x.shape and dw.shape == w.shape
  assert _rel_err(dx, rdx) < 1e-5
  assert _rel_err(dw, rdw) < 1e-5


def test_untouched_rows_get_zero_gradient():
  # 6x6 input, 3x3 filter, stride 2, no padding: (6 - 3) % 2 == 1, so the last
  # row and column are never covered by a window.
  x, w = _random(3, (1, 6, 6, 1), (3, 3, 1, 1))
  dx = jax.grad(lambda x: jnp.sum(lecture_conv2d(x, w, 2, 0)))(x)
  np.testing.assert_array_equal(dx[0, -1, :, 0], 0.0)
  np.testing.assert_array_equal(dx[0, :, -1, 0], 0.0)
  assert np.all(np.asarray(dx[0, :-1, :-1, 0]) != 0.0)


def test_lecture_hand_example():
  # 3x3 input X, 2x2 filter F, stride 1, no padding -> 2x2 output O.
  X = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.float32)
  F = np.array([[1, 2], [3, 4]], np.float32)
  dO = np.array([[1, 2], [3, -1]], np.float32)  # dE/dO, given from upstream

  # Forward: O11 = X11 F11 + X12 F12 + X21 F21 + X22 F22, etc.
  expected_O = np.array(
      [
          [1 * 1 + 2 * 2 + 4 * 3 + 5 * 4, 2 * 1 + 3 * 2 + 5 * 3 + 6 * 4],
          [4 * 1 + 5 * 2 + 7 * 3 + 8 * 4, 5 * 1 + 6 * 2 + 8 * 3 + 9 * 4],
      ],
      np.float32,
  )
  np.testing.assert_array_equal(expected_O, [[37, 47], [67, 77]])

  # dE/dF = X ⋆ dE/dO: dF_ij = sum_pq X_(p+i)(q+j) dO_pq
  #   dF11 = X11 dO11 + X12 dO12 + X21 dO21 + X22 dO22 = 1*1 + 2*2 + 4*3 + 5*(-1)
  #   dF12 = X12 dO11 + X13 dO12 + X22 dO21 + X23 dO22 = 2*1 + 3*2 + 5*3 + 6*(-1)
  #   dF21 = X21 dO11 + X22 dO12 + X31 dO21 + X32 dO22 = 4*1 + 5*2 + 7*3 + 8*(-1)
  #   dF22 = X22 dO11 + X23 dO12 + X32 dO21 + X33 dO22 = 5*1 + 6*2 + 8*3 + 9*(-1)
  expected_dF = np.array([[12, 17], [27, 32]], np.float32)

  # dE/dX = full convolution of dE/dO with rot180(F) = [[4, 3], [2, 1]]:
  #   dX11 = dO11 F11                                 = 1*1
  #   dX12 = dO11 F12 + dO12 F11                      = 1*2 + 2*1
  #   dX13 = dO12 F12                                 = 2*2
  #   dX21 = dO11 F21 + dO21 F11                      = 1*3 + 3*1
  #   dX22 = dO11 F22 + dO12 F21 + dO21 F12 + dO22 F11 = 1*4 + 2*3 + 3*2 + (-1)*1
  #   dX23 = dO12 F22 + dO22 F12                      = 2*4 + (-1)*2
  #   dX31 = dO21 F21                                 = 3*3
  #   dX32 = dO21 F22 + dO22 F21                      = 3*4 + (-1)*3
  #   dX33 = dO22 F22                                 = (-1)*4
  expected_dX = np.array([[1, 4, 4], [6, 15, 6], [9, 9, -4]], np.float32)

  x = jnp.asarray(X)[None, :, :, None]
  f = jnp.asarray(F)[:, :, None, None]
  out, vjp = jax.vjp(lambda x, f: lecture_conv2d(x, f, 1, 0), x, f)
  np.testing.assert_array_equal(out[0, :, :, 0], expected_O)
  dx, df = vjp(jnp.asarray(dO)[None, :, :, None])
  np.testing.assert_array_equal(df[:, :, 0, 0], expected_dF)
  np.testing.assert_array_equal(dx[0, :, :, 0], expected_dX)


@pytest.mark.parametrize(
    "kwargs,in_ch",
    [
        pytest.param(dict(features=4, kernel_size=(3, 3)), 3, id="plain"),
        pytest.param(
            dict(features=6, kernel_size=(3, 2), strides=2, padding="SAME", feature_group_count=2),
            4,
            id="groups2-stride2-same",
        ),
        pytest.param(dict(features=3, kernel_size=(2, 2), padding="VALID"), 2, id="valid"),
    ],
)
@IMPLS
def test_flax_drop_in(impl, kwargs, in_ch):
  x = _random(4, (2, 7, 6, in_ch))[0]
  ref_conv = nn.Conv(**kwargs)
  lec_conv = nn.Conv(**kwargs, conv_general_dilated=GENERAL[impl])
  # Parameter shapes via eval_shape (no initializer compilation), filled with
  # random values; the same params then drive both modules.
  shapes = jax.eval_shape(ref_conv.init, jax.random.PRNGKey(5), x)
  assert jax.eval_shape(lec_conv.init, jax.random.PRNGKey(5), x) == shapes
  leaves, treedef = jax.tree.flatten(shapes)
  params = jax.tree.unflatten(treedef, _random(5, *[leaf.shape for leaf in leaves]))

  y_ref = ref_conv.apply(params, x)
  y_lec = lec_conv.apply(params, x)
  assert y_lec.shape == y_ref.shape
  assert _rel_err(y_lec, y_ref) < 1e-5

  r = _random(6, y_ref.shape)[0]

  def grads(module):
    loss = lambda p, x: jnp.sum(module.apply(p, x) * r)
    return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)

  (gp_ref, gx_ref), (gp_lec, gx_lec) = grads(ref_conv), grads(lec_conv)
  for a, b in zip(jax.tree.leaves(gp_lec), jax.tree.leaves(gp_ref)):
    assert _rel_err(a, b) < 1e-5
  assert _rel_err(gx_lec, gx_ref) < 1e-5


@IMPLS
def test_general_dilated_matches_lax_with_string_padding_and_groups(impl):
  x, w = _random(7, (2, 9, 8, 6), (3, 3, 2, 6))
  for padding in ("SAME", "VALID", [(2, 0), (1, 1)]):
    args = (x, w, (2, 2), padding)
    kw = dict(
        dimension_numbers=lax.conv_dimension_numbers(x.shape, w.shape, _DN), feature_group_count=3
    )
    np.testing.assert_allclose(
        GENERAL[impl](*args, **kw), lax.conv_general_dilated(*args, **kw), rtol=1e-5, atol=1e-5
    )
  # Layout strings are accepted as well.
  out = GENERAL[impl](
      x, w[:, :, :, :], (1, 1), "SAME", dimension_numbers=_DN, feature_group_count=3
  )
  assert out.shape == (2, 9, 8, 6)


@pytest.mark.parametrize(
    "kwargs,word",
    [
        (dict(rhs_dilation=(2, 2)), "dilation"),
        (dict(lhs_dilation=(1, 2)), "dilation"),
        (dict(batch_group_count=2), "batch_group_count"),
        (dict(dimension_numbers=("NCHW", "OIHW", "NCHW")), "dimension_numbers"),
        (dict(dimension_numbers=None), "dimension_numbers"),
        (dict(dimension_numbers=_DN, feature_group_count=4), "feature_group_count"),
    ],
)
@IMPLS
def test_unsupported_arguments_raise(impl, kwargs, word):
  x, w = jnp.ones((2, 5, 5, 2)), jnp.ones((3, 3, 2, 2))
  kwargs = {"dimension_numbers": _DN, **kwargs}
  with pytest.raises(ValueError, match=word):
    GENERAL[impl](x, w, (1, 1), "SAME", **kwargs)


def test_lecture_conv2d_argument_errors():
  x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 1))
  with pytest.raises(ValueError, match="padding"):
    lecture_conv2d(x, w, 1, -1)
  with pytest.raises(ValueError, match="stride"):
    lecture_conv2d(x, w, 0, 0)
  with pytest.raises(ValueError, match="channels"):
    lecture_conv2d(x, jnp.ones((3, 3, 3, 1)))
  with pytest.raises(ValueError, match="filter size"):
    lecture_conv2d(x, jnp.ones((5, 5, 2, 1)))


def test_jit():
  x, w = _random(8, (2, 7, 6, 3), (3, 2, 3, 4))

  @jax.jit
  def f(x, w):
    y = lecture_conv2d(x, w, (2, 1), ((1, 0), (0, 1)))
    return jnp.sum(jnp.sin(y))

  @jax.jit
  def f_ref(x, w):
    return jnp.sum(jnp.sin(_reference(x, w, (2, 1), ((1, 0), (0, 1)))))

  g = jax.jit(jax.grad(f, argnums=(0, 1)))(x, w)
  g_ref = jax.grad(f_ref, argnums=(0, 1))(x, w)
  assert _rel_err(f(x, w), f_ref(x, w)) < 1e-5
  for a, b in zip(g, g_ref):
    assert _rel_err(a, b) < 1e-5


def test_bfloat16():
  x32, w32 = _random(9, (2, 6, 6, 4), (3, 3, 2, 4))
  x, w = x32.astype(jnp.bfloat16), w32.astype(jnp.bfloat16)

  def loss(x, w):
    y = lecture_conv_general_dilated(
        x, w, (2, 2), "SAME", dimension_numbers=_DN, feature_group_count=2
    )
    return jnp.sum(y.astype(jnp.float32)), y

  (_, y), (dx, dw) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(x, w)
  assert y.dtype == jnp.bfloat16
  assert dx.dtype == jnp.bfloat16 and dw.dtype == jnp.bfloat16

  def loss_ref(x, w):
    y = lax.conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=_DN, feature_group_count=2)
    return jnp.sum(y)

  y_ref = lax.conv_general_dilated(
      x32, w32, (2, 2), "SAME", dimension_numbers=_DN, feature_group_count=2
  )
  rdx, rdw = jax.grad(loss_ref, argnums=(0, 1))(x32, w32)
  # bfloat16 has an 8-bit mantissa: compare loosely against float32.
  assert _rel_err(y.astype(jnp.float32), y_ref) < 3e-2
  assert _rel_err(dx.astype(jnp.float32), rdx) < 3e-2
  assert _rel_err(dw.astype(jnp.float32), rdw) < 3e-2


def test_mixed_preferred_element_type():
  # bf16 operands with float32 accumulation: output float32, grads bf16.
  x, w = [a.astype(jnp.bfloat16) for a in _random(10, (1, 5, 5, 2), (3, 3, 2, 3))]
  f = lambda x, w: jnp.sum(
      lecture_conv_general_dilated(
          x, w, (1, 1), "VALID", dimension_numbers=_DN, preferred_element_type=jnp.float32
      )
  )
  y = lecture_conv_general_dilated(
      x, w, (1, 1), "VALID", dimension_numbers=_DN, preferred_element_type=jnp.float32
  )
  assert y.dtype == jnp.float32
  dx, dw = jax.grad(f, argnums=(0, 1))(x, w)
  assert dx.dtype == jnp.bfloat16 and dw.dtype == jnp.bfloat16


def test_gradients_come_from_the_custom_vjp():
  # Without defvjp the gradient tests above would pass through XLA's autodiff.
  x = jnp.ones((1, 5, 5, 2))
  w = jnp.ones((3, 3, 2, 4))
  jaxpr = str(jax.make_jaxpr(jax.grad(lambda w: lecture_conv2d(x, w, 2, 1).sum()))(w))
  assert "custom_vjp_call" in jaxpr
