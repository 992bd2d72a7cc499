"""Classification: one label per image, cross-entropy (or LeCun et al.'s RBF losses), top-k."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from cnn_jax.tasks import metrics
from cnn_jax.tasks.base import Sums, Task


@dataclasses.dataclass(frozen=True)
class Classification(Task):
  """One class per image: the batch's "label" (int, (B,)); logits (B, classes).

  Attributes:
    label_smoothing: cross-entropy label smoothing.
    aux_loss_weight: weight of each auxiliary classifier's loss (GoogLeNet).
    kind: the logits' loss, one of `metrics.LOSSES`: "cross_entropy", or for
      logits that are -y of Euclidean RBF units (lenet5) LeCun et al. 1998's
      "rbf_mse" (Eq. 8) or "rbf_map" (Eq. 9).
    map_j: the constant j of "rbf_map" (see `metrics.DEFAULT_MAP_J`).
  """

  label_smoothing: float = 0.0
  aux_loss_weight: float = 0.0
  kind: str = "cross_entropy"
  map_j: float = metrics.DEFAULT_MAP_J
  targets = ("label",)

  def per_example(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The logits' loss of each example, float32 (B,): a function of outputs and labels."""
    return metrics.per_example_loss(
        self.kind, logits, labels, label_smoothing=self.label_smoothing, map_j=self.map_j
    )

  def loss(self, outputs: jax.Array, aux_outputs: Any, batch: dict[str, jax.Array]) -> jax.Array:
    """The batch mean of the logits' loss plus each auxiliary classifier's weighted one."""
    labels = batch["label"]
    value = metrics.masked_mean(self.per_example(outputs, labels))
    for aux in jax.tree.leaves(aux_outputs):
      value += self.aux_loss_weight * metrics.cross_entropy(aux, labels, self.label_smoothing)
    return value

  def empty_train_sums(self) -> Sums:
    """Top-1 hits and examples seen."""
    return {"correct": jnp.zeros((), jnp.int32), "count": jnp.zeros((), jnp.int32)}

  def train_sums(self, outputs: jax.Array, batch: dict[str, jax.Array]) -> Sums:
    """The batch's top-1 hits and size."""
    labels = batch["label"]
    return {"correct": metrics.topk_correct(outputs, labels, 1), "count": labels.shape[0]}

  def train_metrics(self, sums: dict[str, Any]) -> dict[str, float]:
    """{"accuracy"}: top-1 over the examples since the last log."""
    return {"accuracy": float(sums["correct"]) / max(int(sums["count"]), 1)}

  def empty_eval_sums(self, num_examples: int) -> Sums:
    """Summed cross-entropy, top-1 and top-5 hits, examples."""
    del num_examples  # nothing is kept per example
    return {
        "loss": jnp.zeros((), jnp.float32),
        "top1": jnp.zeros((), jnp.int32),
        "top5": jnp.zeros((), jnp.int32),
        "count": jnp.zeros((), jnp.int32),
    }

  def eval_sums(self, outputs: jax.Array, batch: dict[str, jax.Array]) -> Sums:
    """The batch's sums over its real examples (the eval loss is cross-entropy)."""
    labels, mask = batch["label"], batch["mask"]
    count = jnp.sum(mask.astype(jnp.int32))
    return {
        "loss": metrics.cross_entropy(outputs, labels, mask=mask) * count,
        "top1": metrics.topk_correct(outputs, labels, 1, mask),
        "top5": metrics.topk_correct(outputs, labels, 5, mask),
        "count": count,
    }

  def eval_metrics(self, sums: dict[str, Any]) -> dict[str, float]:
    """{"accuracy", "top5_accuracy", "loss"}, each a mean over the examples."""
    count = max(int(sums["count"]), 1)
    return {
        "accuracy": float(sums["top1"]) / count,
        "top5_accuracy": float(sums["top5"]) / count,
        "loss": float(sums["loss"]) / count,
    }

  def eval_line(self, metrics: dict[str, Any]) -> str:
    """E.g. "accuracy 0.9912  top-5 0.9999  loss 0.0312"."""
    return (
        f"accuracy {metrics['accuracy']:.4f}  top-5 {metrics['top5_accuracy']:.4f}  "
        f"loss {metrics['loss']:.4f}"
    )

  def predict(self, outputs: jax.Array) -> jax.Array:
    """The top-1 class of each image, int32 (B,)."""
    return jnp.argmax(outputs, axis=-1).astype(jnp.int32)
