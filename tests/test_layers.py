"""Building blocks against independent NumPy computations."""

import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import layers


def _apply(module, x):
  return np.asarray(module.apply({}, jnp.asarray(x)))


def test_activations_by_name():
  x = jnp.array([-2.0, -1.0, 0.0, 3.0])
  np.testing.assert_allclose(_apply(layers.Activation("relu"), x), [0, 0, 0, 3])
  np.testing.assert_allclose(_apply(layers.Activation("leaky_relu"), x), [-0.2, -0.1, 0, 3])
  np.testing.assert_allclose(
      _apply(layers.Activation("leaky_relu", negative_slope=0.01), x), [-0.02, -0.01, 0, 3]
  )
  np.testing.assert_allclose(
      _apply(layers.Activation("elu", alpha=2.0), x),
      [2 * (np.exp(-2) - 1), 2 * (np.exp(-1) - 1), 0, 3],
      rtol=1e-6,
  )
  # LeCun's scaled tanh maps +-1 to about +-1.
  np.testing.assert_allclose(layers.scaled_tanh(jnp.array([1.0, -1.0])), [1, -1], atol=2e-4)
  with pytest.raises(ValueError, match="unknown activation 'gelu'"):
    layers.activation_fn("gelu")


def _numpy_max_pool(x, window, stride, out):
  n, h, w, c = x.shape
  result = np.full((n, out, out, c), -np.inf)
  for i in range(out):
    for j in range(out):
      patch = x[
          :, i * stride : min(i * stride + window, h), j * stride : min(j * stride + window, w)
      ]
      result[:, i, j] = patch.max(axis=(1, 2))
  return result


def test_max_pool_and_ceil_mode():
  x = np.random.default_rng(0).standard_normal((2, 9, 9, 3)).astype(np.float32)
  np.testing.assert_allclose(_apply(layers.MaxPool(3, 2), x), _numpy_max_pool(x, 3, 2, 4))
  # ceil_mode keeps the last partial window: 112 -> 56 as in GoogLeNet's Table 1.
  assert _apply(layers.MaxPool(3, 2, ceil_mode=True), np.zeros((1, 112, 112, 1))).shape[1] == 56
  x = np.random.default_rng(1).standard_normal((1, 8, 8, 2)).astype(np.float32)
  np.testing.assert_allclose(
      _apply(layers.MaxPool(3, 2, ceil_mode=True), x), _numpy_max_pool(x, 3, 2, 4)
  )


def test_average_pool():
  x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
  np.testing.assert_allclose(_apply(layers.AvgPool(2), x)[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])


def test_adaptive_average_pool_uses_pytorch_bins():
  x = np.random.default_rng(0).standard_normal((2, 10, 5, 3)).astype(np.float32)
  out = _apply(layers.AdaptiveAvgPool((7, 3)), x)
  expected = np.zeros((2, 7, 3, 3))
  for i in range(7):
    for j in range(3):
      r0, r1 = i * 10 // 7, -(-(i + 1) * 10 // 7)
      c0, c1 = j * 5 // 3, -(-(j + 1) * 5 // 3)
      expected[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
  np.testing.assert_allclose(out, expected, rtol=1e-5)
  # Divisible sizes and the identity case.
  y = np.random.default_rng(1).standard_normal((1, 14, 14, 2)).astype(np.float32)
  np.testing.assert_allclose(
      _apply(layers.AdaptiveAvgPool(7), y), y.reshape(1, 7, 2, 7, 2, 2).mean(axis=(2, 4)), rtol=1e-5
  )
  np.testing.assert_array_equal(_apply(layers.AdaptiveAvgPool(14), y), y)


def test_local_response_norm_is_the_paper_formula():
  x = np.random.default_rng(0).standard_normal((1, 2, 2, 7)).astype(np.float32) * 10
  out = _apply(layers.LocalResponseNorm(size=5, k=2.0, alpha=1e-3, beta=0.75), x)
  expected = np.empty_like(x)
  for c in range(7):
    lo, hi = max(0, c - 2), min(7, c + 3)
    expected[..., c] = x[..., c] / (2.0 + 1e-3 * (x[..., lo:hi] ** 2).sum(-1)) ** 0.75
  np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_local_response_norm_groups_stay_inside_each_tower():
  x = np.random.default_rng(1).standard_normal((1, 2, 2, 8)).astype(np.float32) * 10
  grouped = _apply(layers.LocalResponseNorm(size=5, k=2.0, alpha=1e-3, groups=2), x)
  single = layers.LocalResponseNorm(size=5, k=2.0, alpha=1e-3)
  expected = np.concatenate([_apply(single, x[..., :4]), _apply(single, x[..., 4:])], -1)
  np.testing.assert_allclose(grouped, expected, rtol=1e-6)
  assert not np.allclose(grouped, _apply(single, x))


def test_flatten_keeps_nhwc_order():
  x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
  np.testing.assert_array_equal(_apply(layers.Flatten(), x), x.reshape(1, 24))


def test_padding_pairs():
  assert layers.padding_pairs(2) == [(2, 2), (2, 2)]
  assert layers.padding_pairs((1, 3)) == [(1, 1), (3, 3)]
  assert layers.padding_pairs(((0, 1), (2, 3))) == [(0, 1), (2, 3)]
