"""Loss and accuracy against NumPy."""

import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.tasks import metrics


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


# LeCun et al. 1998's losses for Euclidean RBF output units: the logits are -y.
# Penalties y = ln 2, ln 4, ln 4 make e^-y = 1/2, 1/4, 1/4; with j = ln 4 the
# rubbish class adds e^-j = 1/4, so log(e^-j + sum_i e^-y_i) = ln(5/4).
_Y = np.log([[2.0, 4.0, 4.0], [2.0, 4.0, 4.0]])
_LABELS = np.array([0, 1])


def test_rbf_mse_is_the_correct_class_penalty():
  # Eq. 8: E = y_D: ln 2 for class 0, ln 4 for class 1.
  np.testing.assert_allclose(metrics.rbf_mse_per_example(-_Y, _LABELS), np.log([2.0, 4.0]))
  y = np.array([[3.0, 0.5], [7.0, 1.5]])
  np.testing.assert_allclose(metrics.rbf_mse_per_example(-y, np.array([1, 0])), [0.5, 7.0])


def test_rbf_map_matches_eq_9_by_hand():
  # E = y_D + ln(5/4): ln 2 + ln(5/4) = ln(5/2) and ln 4 + ln(5/4) = ln 5.
  got = metrics.rbf_map_per_example(-_Y, _LABELS, j=np.log(4.0))
  np.testing.assert_allclose(got, np.log([2.5, 5.0]), rtol=1e-6)
  # Large penalties stay finite: y_D = 300 with the others farther and j = 10
  # gives 300 + ln(e^-10 + e^-300 + e^-310) = 290 in float32.
  far = -np.array([[300.0, 310.0, 320.0]], np.float32)
  np.testing.assert_allclose(metrics.rbf_map_per_example(far, np.array([0]), j=10.0), [290.0])
  # j -> infinity leaves cross-entropy on -y; the loss is never negative.
  logits = -np.random.default_rng(0).uniform(0.0, 8.0, (5, 10)).astype(np.float32)
  labels = np.arange(5)
  np.testing.assert_allclose(
      metrics.rbf_map_per_example(logits, labels, j=1e4),
      metrics.cross_entropy_per_example(logits, labels),
      rtol=1e-5,
  )
  assert np.all(np.asarray(metrics.rbf_map_per_example(logits, labels, j=1.0)) >= 0.0)


def test_per_example_losses_by_name_and_their_mean():
  for kind, expected in [
      ("rbf_mse", np.log([2.0, 4.0])),
      ("rbf_map", np.log([2.5, 5.0])),
      # -log softmax(-y)_D = y_D + ln(1/2 + 1/4 + 1/4) = y_D.
      ("cross_entropy", np.log([2.0, 4.0])),
  ]:
    got = metrics.per_example_loss(kind, -_Y, _LABELS, map_j=np.log(4.0))
    assert got.shape == (2,) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=kind)
  np.testing.assert_allclose(metrics.masked_mean(jnp.array([1.0, 2.0, 6.0])), 3.0)
  np.testing.assert_allclose(
      metrics.masked_mean(jnp.array([1.0, 2.0, 6.0]), np.array([1, 1, 0], bool)), 1.5
  )
  with pytest.raises(ValueError, match="unknown loss 'hinge'"):
    metrics.per_example_loss("hinge", -_Y, _LABELS)
