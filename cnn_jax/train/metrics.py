"""Loss and accuracy of a batch, with the padding mask of evaluation batches."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0,
                  mask: jax.Array | None = None) -> jax.Array:
  """Mean softmax cross-entropy over the valid examples, in float32.

  Args:
    logits: (B, classes), any float dtype (computed in float32).
    labels: int (B,).
    label_smoothing: eps of Szegedy et al. 2016: targets (1 - eps) one-hot
      plus eps / classes everywhere.
    mask: optional bool (B,); padded examples (False) do not count.

  Returns:
    A float32 scalar.
  """
  logits = logits.astype(jnp.float32)
  classes = logits.shape[-1]
  targets = optax.smooth_labels(jax.nn.one_hot(labels, classes), label_smoothing)
  losses = optax.softmax_cross_entropy(logits, targets)
  weights = jnp.ones_like(losses) if mask is None else mask.astype(jnp.float32)
  return jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def topk_correct(logits: jax.Array, labels: jax.Array, k: int = 1,
                 mask: jax.Array | None = None) -> jax.Array:
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
