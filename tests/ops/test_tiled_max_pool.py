"""Max pooling as reshape + max equals reduce_window's, values and gradients (ties included)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import layers, models
from cnn_jax.ops import tiled_max_pool


def _reference(x, window):
  return nn.max_pool(x, (window, window), (window, window), padding="VALID")


@pytest.mark.parametrize(
    "shape, window",
    [
        ((2, 8, 8, 3), 2),  # LeNet's and VGG's 2x2/2
        ((1, 28, 28, 6), 2),  # LeNet-5's S2
        ((3, 7, 9, 2), 2),  # a last row and column that fill no tile
        ((2, 9, 9, 4), 3),
        ((1, 4, 4, 1), 4),  # one window: global max
    ],
)
def test_values_and_gradients_equal_reduce_window_in_float64(shape, window):
  with jax.enable_x64():
    key_x, key_g = jax.random.split(jax.random.key(0))
    # Integers in a small range: most windows hold tied maxima, where the
    # gradient must go to the first one, as reduce_window's does.
    x = jax.random.randint(key_x, shape, -2, 3).astype(jnp.float64)
    g = jax.random.normal(key_g, _reference(x, window).shape, jnp.float64)
    ours, ours_vjp = jax.vjp(lambda v: tiled_max_pool(v, window), x)
    theirs, theirs_vjp = jax.vjp(lambda v: _reference(v, window), x)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ours_vjp(g)[0], theirs_vjp(g)[0])
    # And on continuous values (no ties): the same.
    x = jax.random.normal(key_x, shape, jnp.float64)
    np.testing.assert_array_equal(
        jax.grad(lambda v: jnp.sum(tiled_max_pool(v, window) * g))(x),
        jax.grad(lambda v: jnp.sum(_reference(v, window) * g))(x),
    )


def test_bfloat16_and_jit():
  x = jax.random.normal(jax.random.key(1), (2, 6, 6, 4), jnp.bfloat16)
  ours = jax.jit(tiled_max_pool, static_argnums=1)(x, 2)
  assert ours.dtype == jnp.bfloat16
  np.testing.assert_array_equal(ours, _reference(x, 2))
  grad = jax.grad(lambda v: jnp.sum(tiled_max_pool(v, 2).astype(jnp.float32)))(x)
  assert grad.dtype == jnp.bfloat16 and float(jnp.sum(grad)) == 2 * 3 * 3 * 4


def test_the_pool_layer_uses_it_only_for_tilings():
  jaxpr = str(
      jax.make_jaxpr(jax.grad(lambda v: jnp.sum(layers.MaxPool(2).apply({}, v))))(
          jnp.ones((1, 8, 8, 1))
      )
  )
  assert "reduce_window" not in jaxpr and "select_and_scatter" not in jaxpr
  # Overlapping (3/2, AlexNet) and padded pools keep reduce_window.
  for pool in (layers.MaxPool(3, 2), layers.MaxPool(2, padding=1)):
    jaxpr = str(jax.make_jaxpr(lambda v, pool=pool: pool.apply({}, v))(jnp.ones((1, 8, 8, 1))))
    assert "reduce_window_max" in jaxpr, pool


def test_lenet5_trains_the_same_with_either_pool(monkeypatch):
  # A whole model's loss and gradients, float64: equal to reduce_window's.
  model = models.create("lenet5_modern", num_classes=10)
  with jax.enable_x64():
    x = jax.random.normal(jax.random.key(2), (4, 32, 32, 1), jnp.float64)
    labels = jnp.arange(4) % 10
    variables = jax.tree.map(
        lambda p: p.astype(jnp.float64), model.init(jax.random.key(3), x, train=False)
    )

    def loss(params):
      logits = model.apply({**variables, "params": params}, x, train=False)
      return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels])

    ours = jax.value_and_grad(loss)(variables["params"])
    monkeypatch.setattr(layers, "tiled_max_pool", lambda v, window: _reference(v, window))
    theirs = jax.value_and_grad(loss)(variables["params"])
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
    for a, b in zip(jax.tree.leaves(ours[1]), jax.tree.leaves(theirs[1])):
      np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
