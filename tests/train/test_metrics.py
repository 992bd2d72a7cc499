"""Loss and accuracy against NumPy."""

import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.train import metrics


def _numpy_cross_entropy(logits, labels, eps):
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  targets = np.full_like(logits, eps / logits.shape[-1])
  targets[np.arange(len(labels)), labels] += 1 - eps
  return -(targets * log_p).sum(-1)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_matches_numpy(eps):
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((6, 5)).astype(np.float32) * 3
  labels = rng.integers(0, 5, 6)
  expected = _numpy_cross_entropy(logits.astype(np.float64), labels, eps)
  np.testing.assert_allclose(metrics.cross_entropy(logits, labels, eps), expected.mean(), rtol=1e-5)
  mask = np.array([1, 1, 0, 1, 0, 0], bool)
  np.testing.assert_allclose(
      metrics.cross_entropy(logits, labels, eps, mask), expected[mask].mean(), rtol=1e-5
  )
  # bfloat16 logits still give a float32 loss.
  assert metrics.cross_entropy(jnp.asarray(logits, jnp.bfloat16), labels).dtype == jnp.float32


def test_topk_correct():
  logits = jnp.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
  labels = jnp.array([2, 0, 0])
  assert int(metrics.topk_correct(logits, labels, 1)) == 1
  assert int(metrics.topk_correct(logits, labels, 2)) == 2
  assert int(metrics.topk_correct(logits, labels, 3)) == 3
  assert int(metrics.topk_correct(logits, labels, 2, mask=jnp.array([True, False, True]))) == 1


def test_ties_and_nan_do_not_count_as_correct():
  constant = jnp.zeros((4, 10))  # a dead network
  labels = jnp.array([0, 3, 5, 9])
  # argmax of equal logits is class 0: only the first example is right.
  assert int(metrics.topk_correct(constant, labels, 1)) == 1
  assert int(metrics.topk_correct(constant, labels, 5)) == 2  # classes 0-4 rank first
  assert int(metrics.topk_correct(jnp.full((2, 10), jnp.nan), jnp.array([0, 1]), 5)) == 0
