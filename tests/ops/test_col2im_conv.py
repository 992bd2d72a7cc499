"""conv_impl="auto": XLA's convolution with the input gradient as matrix product + col2im."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnn_jax import layers
from cnn_jax.ops import col2im_conv_general_dilated, col2im, im2col
from cnn_jax.ops.col2im_conv import uses_col2im

NHWC_HWIO = ("NHWC", "HWIO", "NHWC")

# (input, filter, stride, padding): the zoo's layers that take the col2im
# path, in miniature where the batch does not matter.
ZOO_LAYERS = {
    "lenet5 C3": ((3, 14, 14, 6), (5, 5, 6, 16), (1, 1), "VALID"),
    "lenet5 C5": ((3, 5, 5, 16), (5, 5, 16, 120), (1, 1), "VALID"),
    "resnet stride-2 3x3": ((2, 16, 16, 8), (3, 3, 8, 16), (2, 2), ((1, 1), (1, 1))),
    "resnet 1x1 projection": ((2, 16, 16, 8), (1, 1, 8, 16), (2, 2), "VALID"),
    "efficientnet stem, odd size": ((2, 15, 15, 3), (3, 3, 3, 8), (2, 2), "SAME"),
    "alexnet conv1": ((1, 35, 35, 3), (11, 11, 3, 4), (4, 4), "VALID"),
    "5x5 same": ((2, 9, 9, 3), (5, 5, 3, 4), (1, 1), "SAME"),
    "uneven strides and padding": ((1, 12, 13, 2), (4, 4, 2, 3), (3, 2), ((2, 0), (1, 2))),
}


def xla_conv(x, w, stride, padding):
  return lax.conv_general_dilated(x, w, stride, padding, dimension_numbers=NHWC_HWIO)


def auto_conv(x, w, stride, padding):
  return col2im_conv_general_dilated(x, w, stride, padding, dimension_numbers=NHWC_HWIO)


@pytest.mark.parametrize("layer", list(ZOO_LAYERS))
def test_values_and_gradients_equal_xla_in_float64(layer):
  x_shape, w_shape, stride, padding = ZOO_LAYERS[layer]
  assert uses_col2im(w_shape[:2], stride)
  with jax.enable_x64(True):
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], x_shape, jnp.float64)
    w = jax.random.normal(keys[1], w_shape, jnp.float64)
    expected, xla_vjp = jax.vjp(lambda x, w: xla_conv(x, w, stride, padding), x, w)
    g = jax.random.normal(keys[2], expected.shape, jnp.float64)

    @jax.jit
    def forward_and_gradients(x, w, g):
      out, vjp = jax.vjp(lambda x, w: auto_conv(x, w, stride, padding), x, w)
      return out, vjp(g)

    out, (dx, dw) = forward_and_gradients(x, w, g)
    expected_dx, expected_dw = xla_vjp(g)
    np.testing.assert_array_equal(out, expected)  # the forward pass is XLA's own
    np.testing.assert_array_equal(dw, expected_dw)  # and so is the filter gradient
    # The input gradient adds the same products in another order: 1e-13 in float64.
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-12, atol=1e-12)
    assert dx.dtype == dw.dtype == jnp.float64


def test_col2im_is_the_transpose_of_im2col():
  # <im2col(x), c> = <x, col2im(c)> for every x and c: the adjoint identity.
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.key(0), (2, 7, 8, 3), jnp.float64)
    patches = im2col(x, (3, 2), (2, 3), ((1, 0), (2, 1)))
    c = jax.random.normal(jax.random.key(1), patches.shape, jnp.float64)
    back = col2im(c, x.shape, (3, 2), (2, 3), ((1, 0), (2, 1)))
    assert back.shape == x.shape
    np.testing.assert_allclose(jnp.vdot(patches, c), jnp.vdot(x, back), rtol=1e-12)


def test_the_rule_keeps_xla_where_col2im_measured_slower():
  assert not uses_col2im((3, 3), (1, 1))  # resnet's stride-1 3x3: 4.0 vs 10.2 ms
  assert not uses_col2im((1, 1), (1, 1))
  assert not uses_col2im((5, 5), (2, 2), groups=2)  # grouped: XLA's
  assert not uses_col2im((5, 5), (1, 1), dilated=True)
  assert uses_col2im((3, 3), (2, 2)) and uses_col2im((5, 5), (1, 1))


def count_in_compiled(function, *args):
  text = jax.jit(function).lower(*args).compile().as_text()
  return text.count("convolution("), text.count(" dot(")


def test_on_the_cpu_the_input_gradient_has_no_convolution_where_the_rule_says():
  x, w = jnp.ones((2, 9, 9, 3)), jnp.ones((3, 3, 3, 4))

  def input_gradient(stride):
    return jax.grad(lambda x: auto_conv(x, w, stride, "SAME").sum())

  assert count_in_compiled(input_gradient((2, 2)), x) == (0, 1)  # g @ W^T + col2im
  assert count_in_compiled(input_gradient((1, 1)), x) == (1, 0)  # XLA's own


@pytest.mark.parametrize(
    "call", [dict(rhs_dilation=(2, 2)), dict(feature_group_count=3), dict(lhs_dilation=(2, 2))]
)
def test_everything_else_goes_to_xla_unchanged(call):
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 3))
  groups = call.get("feature_group_count", 1)
  w = jax.random.normal(jax.random.key(1), (5, 5, 3 // groups, 6))
  pads = ((2, 2), (2, 2))
  auto = col2im_conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=NHWC_HWIO, **call)
  xla = lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=NHWC_HWIO, **call)
  np.testing.assert_array_equal(auto, xla)
  # NCHW input also goes to XLA: no error, same numbers.
  nchw = ("NCHW", "OIHW", "NCHW")
  xt, wt = x.transpose(0, 3, 1, 2), jnp.ones((4, 3, 5, 5))
  np.testing.assert_array_equal(
      col2im_conv_general_dilated(xt, wt, (2, 2), "SAME", dimension_numbers=nchw),
      lax.conv_general_dilated(xt, wt, (2, 2), "SAME", dimension_numbers=nchw),
  )


def test_vmap_and_second_order_gradients():
  x, w = jax.random.normal(jax.random.key(0), (3, 2, 9, 9, 3)), jnp.ones((3, 3, 3, 4))
  per_example = jax.vmap(jax.grad(lambda x: auto_conv(x, w, (2, 2), "SAME").sum() ** 2))(x)
  expected = jax.vmap(jax.grad(lambda x: xla_conv(x, w, (2, 2), "SAME").sum() ** 2))(x)
  np.testing.assert_allclose(per_example, expected, rtol=1e-5)

  # The backward pass is itself differentiable (gradient of a gradient norm).
  def gradient_norm(conv, w):
    return jnp.sum(jax.grad(lambda x: jnp.sum(conv(x, w, (2, 2), "SAME") ** 2))(x[0]) ** 2)

  np.testing.assert_allclose(
      jax.grad(lambda w: gradient_norm(auto_conv, w))(w),
      jax.grad(lambda w: gradient_norm(xla_conv, w))(w),
      rtol=1e-4,
  )


def test_col2im_is_its_own_conv_impl():
  assert layers.conv_general_dilated_fn("col2im") is col2im_conv_general_dilated
