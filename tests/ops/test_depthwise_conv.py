"""Depthwise convolution as shifted sums equals XLA's grouped convolution."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnn_jax.models import registry
from cnn_jax.ops import depthwise_conv_general_dilated

_NHWC = ("NHWC", "HWIO", "NHWC")


def _lax(x, w, stride, padding):
  return lax.conv_general_dilated(
      x, w, stride, padding, dimension_numbers=_NHWC, feature_group_count=x.shape[-1]
  )


def _ours(x, w, stride, padding):
  return depthwise_conv_general_dilated(
      x, w, stride, padding, dimension_numbers=_NHWC, feature_group_count=x.shape[-1]
  )


# EfficientNet's kernels and strides, odd and even sizes (TensorFlow's SAME
# pads the extra pixel bottom-right), and explicit asymmetric padding.
@pytest.mark.parametrize(
    "size, kernel, stride, padding",
    [
        (9, 3, 1, "SAME"),
        (9, 3, 2, "SAME"),
        (8, 3, 2, "SAME"),
        (11, 5, 2, "SAME"),
        (7, 5, 1, "SAME"),
        (8, 3, 1, "VALID"),
        (7, 3, 2, ((1, 2), (0, 1))),
    ],
)
def test_values_and_gradients_equal_lax_in_float64(size, kernel, stride, padding):
  with jax.enable_x64(True):
    keys = jax.random.split(jax.random.PRNGKey(size * kernel + stride), 3)
    x = jax.random.normal(keys[0], (2, size, size + 1, 6), jnp.float64)
    w = jax.random.normal(keys[1], (kernel, kernel, 1, 6), jnp.float64)
    expected = _lax(x, w, (stride, stride), padding)
    ours = _ours(x, w, (stride, stride), padding)
    assert ours.shape == expected.shape and ours.dtype == jnp.float64
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
    # A random cotangent, so that every output pixel weighs differently.
    cotangent = jax.random.normal(keys[2], expected.shape, jnp.float64)
    grads = [
        jax.grad(
            lambda x, w, f=f: jnp.sum(f(x, w, (stride, stride), padding) * cotangent),
            argnums=(0, 1),
        )(x, w)
        for f in (_lax, _ours)
    ]
    for theirs, mine in zip(*grads):
      np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-12)


def test_bfloat16_keeps_its_dtype_and_accumulates_in_float32():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 8)).astype(jnp.bfloat16)
  w = jax.random.normal(jax.random.PRNGKey(1), (5, 5, 1, 8)).astype(jnp.bfloat16)
  ours = _ours(x, w, (1, 1), "SAME")
  exact = _lax(x.astype(jnp.float32), w.astype(jnp.float32), (1, 1), "SAME")
  assert ours.dtype == jnp.bfloat16
  # One bfloat16 rounding of the float32 sum: 2^-8 relative.
  np.testing.assert_allclose(np.asarray(ours, np.float32), exact, rtol=2**-8, atol=2**-8)


def test_not_a_depthwise_convolution_is_refused():
  x = jnp.zeros((1, 8, 8, 4))
  with pytest.raises(ValueError, match="depthwise convolutions only"):
    depthwise_conv_general_dilated(
        x, jnp.zeros((3, 3, 2, 4)), (1, 1), "SAME", dimension_numbers=_NHWC, feature_group_count=2
    )


def test_flax_conv_and_efficientnet_use_it_with_unchanged_parameters():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 10, 10, 4))
  plain = nn.Conv(4, (3, 3), (2, 2), feature_group_count=4, padding="SAME")
  ours = nn.Conv(
      4,
      (3, 3),
      (2, 2),
      feature_group_count=4,
      padding="SAME",
      conv_general_dilated=depthwise_conv_general_dilated,
  )
  variables = plain.init(jax.random.PRNGKey(1), x)
  np.testing.assert_allclose(
      ours.apply(variables, x), plain.apply(variables, x), rtol=1e-5, atol=1e-5
  )
  # conv_impl="xla": the default's dense convolutions run oneDNN's custom
  # calls where the extension is here.
  model = registry.create("efficientnet_lite0", num_classes=10, conv_impl="xla")
  jaxpr = str(
      jax.make_jaxpr(lambda x: model.init(jax.random.PRNGKey(0), x))(jnp.zeros((1, 32, 32, 3)))
  )
  # Only the dense convs (stem, expand, project, head) remain XLA convolutions:
  # 1 + 15 + 16 + 1 = 33 of Lite0's 49.
  assert jaxpr.count("conv_general_dilated[") == 33


def test_efficientnet_depthwise_filters_start_at_he_scale_of_their_own_fan():
  # TensorFlow's EfficientNet: std sqrt(2 / (k*k)) for a depthwise kernel (its
  # fan-out is k*k, one output channel per filter), not sqrt(2 / (k*k*C)).
  model = registry.create("efficientnet_lite0", num_classes=10)
  # Jitted: an eager init of Lite0 compiles each op's shapes on its own (3x slower).
  params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))["params"]
  kernel = params["blocks_15"]["depthwise_conv"]["kernel"]  # (3, 3, 1, 1152)
  assert kernel.shape == (3, 3, 1, 1152)
  # 10,368 draws: the sample std is within 3% of the truth with ~99.7% probability.
  np.testing.assert_allclose(float(jnp.std(kernel)), np.sqrt(2 / 9), rtol=0.03)
