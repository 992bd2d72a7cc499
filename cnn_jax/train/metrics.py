"""Loss and accuracy of a batch, with the padding mask of evaluation batches."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax


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


def from_eval_totals(totals: dict[str, Any]) -> dict[str, float]:
  """The eval metrics of the eval step's sums (see `steps.empty_eval_totals`).

  Args:
    totals: host values of "loss" (summed), "top1", "top5" and "count".

  Returns:
    {"accuracy", "top5_accuracy", "loss"}, each a mean over the examples.
  """
  count = max(int(totals["count"]), 1)
  return {
      "accuracy": float(totals["top1"]) / count,
      "top5_accuracy": float(totals["top5"]) / count,
      "loss": float(totals["loss"]) / count,
  }


def from_train_totals(totals: dict[str, Any]) -> dict[str, float]:
  """The training metrics of the training step's sums (see `steps.empty_totals`).

  Args:
    totals: host values of "loss" and "grad_norm" (summed over steps),
      "steps", "correct" and "count" (examples).

  Returns:
    {"loss", "accuracy", "grad_norm"}: means over the logging interval.
  """
  steps = max(int(totals["steps"]), 1)
  return {
      "loss": float(totals["loss"]) / steps,
      "accuracy": float(totals["correct"]) / max(int(totals["count"]), 1),
      "grad_norm": float(totals["grad_norm"]) / steps,
  }
