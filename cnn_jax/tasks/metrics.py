"""Loss and accuracy of a batch, with the padding mask of evaluation batches."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import optax

# The training losses (config.loss). Cross-entropy fits every model; the two
# others are LeCun et al. 1998's (Section II-C) for Euclidean RBF output
# units, whose logits are -y with y_i = sum_j (x_j - w_ij)^2.
LOSSES = ("cross_entropy", "rbf_mse", "rbf_map")

# The constant j of the MAP criterion (Eq. 9), which the paper does not give.
# e^-j is the unnormalized probability of a "rubbish class" of penalty j.
# While all of an output's penalties y_i are well above j, the criterion is
# Eq. 8 (minus j): it pulls the output towards the correct code and leaves the
# wrong classes alone, whose penalties are "already very large" (the paper).
# Classes whose penalties fall below about j compete as in cross-entropy on
# -y (j -> infinity is that cross-entropy). 10 is about the penalty of an
# output half-way between two close codes: each of the h pixels where they
# differ adds 1 there, and our digit codes differ in 9 to 35 of their 84
# pixels. (A public reimplementation uses j = 0.1: Eq. 8 with competition only
# at near-ties.)
DEFAULT_MAP_J = 10.0


def masked_mean(values: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Mean of per-example values over the valid examples (mask True; all if None)."""
  weights = jnp.ones_like(values) if mask is None else mask.astype(values.dtype)
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def cross_entropy_per_example(
    logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0
) -> jax.Array:
  """Softmax cross-entropy of each example, in float32.

  Args:
    logits: (B, classes), any float dtype (computed in float32).
    labels: int (B,).
    label_smoothing: eps of Szegedy et al. 2016: targets (1 - eps) one-hot
      plus eps / classes everywhere.

  Returns:
    float32 (B,).
  """
  logits = logits.astype(jnp.float32)
  classes = logits.shape[-1]
  targets = optax.smooth_labels(jax.nn.one_hot(labels, classes), label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    label_smoothing: float = 0.0,
    mask: jax.Array | None = None,
) -> jax.Array:
  """Mean softmax cross-entropy over the valid examples, in float32.

  Args:
    logits: (B, classes), any float dtype (computed in float32).
    labels: int (B,).
    label_smoothing: see `cross_entropy_per_example`.
    mask: optional bool (B,); padded examples (False) do not count.

  Returns:
    A float32 scalar.
  """
  return masked_mean(cross_entropy_per_example(logits, labels, label_smoothing), mask)


def rbf_mse_per_example(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """LeCun et al. 1998, Eq. 8: E = y_D, the RBF output of the correct class.

  That is the squared distance from the last hidden layer's output to the
  correct class's code: a mean squared error to the code (times its length).

  Args:
    logits: (B, classes), -y of Euclidean RBF output units.
    labels: int (B,), the correct classes D.

  Returns:
    float32 (B,).
  """
  logits = logits.astype(jnp.float32)
  return -jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]


def rbf_map_per_example(
    logits: jax.Array, labels: jax.Array, j: float = DEFAULT_MAP_J
) -> jax.Array:
  """LeCun et al. 1998, Eq. 9, the MAP criterion: E = y_D + log(e^-j + sum_i e^-y_i).

  Args:
    logits: (B, classes), -y of Euclidean RBF output units.
    labels: int (B,), the correct classes D.
    j: the positive constant j (see DEFAULT_MAP_J).

  Returns:
    float32 (B,), each >= 0.
  """
  logits = logits.astype(jnp.float32)
  rubbish = jnp.full((logits.shape[0], 1), -j, jnp.float32)
  # log(e^-j + sum_i e^-y_i), stable for penalties in the hundreds.
  log_partition = jax.nn.logsumexp(jnp.concatenate([logits, rubbish], axis=-1), axis=-1)
  return rbf_mse_per_example(logits, labels) + log_partition


def per_example_loss(
    kind: str,
    logits: jax.Array,
    labels: jax.Array,
    *,
    label_smoothing: float = 0.0,
    map_j: float = DEFAULT_MAP_J,
) -> jax.Array:
  """The loss of each example as a function of the model's outputs and labels.

  Args:
    kind: one of LOSSES.
    logits: (B, classes).
    labels: int (B,).
    label_smoothing: for "cross_entropy".
    map_j: the constant j of "rbf_map".

  Returns:
    float32 (B,).

  Raises:
    ValueError: for an unknown kind.
  """
  if kind == "cross_entropy":
    return cross_entropy_per_example(logits, labels, label_smoothing)
  if kind == "rbf_mse":
    return rbf_mse_per_example(logits, labels)
  if kind == "rbf_map":
    return rbf_map_per_example(logits, labels, map_j)
  raise ValueError(f"unknown loss {kind!r}; use one of {LOSSES}")


def topk_correct(
    logits: jax.Array, labels: jax.Array, k: int = 1, mask: jax.Array | None = None
) -> jax.Array:
  """Number of valid examples whose label is among the k largest logits.

  Args:
    logits: (B, classes).
    labels: int (B,).
    k: 1 for top-1, 5 for top-5 accuracy.
    mask: optional bool (B,).

  Returns:
    An int32 scalar count (sum it over batches, divide by the example count).
  """
  label_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)
  # Rank = classes that beat the label: higher logits, and equal logits of a
  # lower index (as argmax breaks ties). Ties must not count in the label's
  # favour, or a dead network with constant logits would score 100%.
  index = jnp.arange(logits.shape[-1])
  beaten_by = (logits > label_logit) | ((logits == label_logit) & (index < labels[:, None]))
  rank = jnp.sum(beaten_by, axis=-1)
  correct = (rank < k) & jnp.isfinite(label_logit[:, 0])
  if mask is not None:
    correct = correct & mask
  return jnp.sum(correct.astype(jnp.int32))
