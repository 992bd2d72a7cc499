"""Semantic segmentation: a class per pixel, TFDS's `segmentation_mask` (0 = background).

The eval step sums a confusion matrix over every real pixel of the eval set
on the device; IoU, mean IoU and pixel accuracy are computed once from the
sums, so no batch's average biases them (a mean of per-batch mIoUs would).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnn_jax.tasks.base import Sums, Task


def confusion_matrix(
    labels: jax.Array, predictions: jax.Array, num_classes: int, weights: jax.Array | None = None
) -> jax.Array:
  """counts[i, j]: pixels of true class i predicted as class j (jit-able).

  Args:
    labels: int, any shape.
    predictions: int, the same shape.
    num_classes: C; values outside [0, C) are not counted.
    weights: optional bool or int of the same shape (False/0: not counted).

  Returns:
    int32 (C, C), as scikit-learn's `confusion_matrix(labels, predictions)`.
  """
  labels, predictions = labels.reshape(-1), predictions.reshape(-1)
  valid = (labels >= 0) & (labels < num_classes) & (predictions >= 0)
  valid &= predictions < num_classes
  if weights is not None:
    valid &= weights.reshape(-1).astype(bool)
  index = jnp.where(valid, labels * num_classes + predictions, 0)
  counts = jnp.zeros(num_classes * num_classes, jnp.int32).at[index].add(valid.astype(jnp.int32))
  return counts.reshape(num_classes, num_classes)


def iou_metrics(confusion: np.ndarray) -> dict[str, float]:
  """Per-class IoU, mean IoU and pixel accuracy of a confusion matrix.

  IoU_c = TP / (TP + FP + FN). A class absent from both the labels and the
  predictions has no IoU: it has no "iou_c" entry and does not count in the
  mean (torchmetrics' and the FCN paper's mean IU over the classes present).

  Args:
    confusion: (C, C) counts, rows the true classes.

  Returns:
    {"accuracy": pixel accuracy, "mean_iou", "iou_c" for each class c present}.
  """
  confusion = np.asarray(confusion, np.float64)
  true_positives = np.diag(confusion)
  union = confusion.sum(0) + confusion.sum(1) - true_positives
  with np.errstate(invalid="ignore", divide="ignore"):
    iou = np.where(union > 0, true_positives / union, np.nan)
  present = ~np.isnan(iou)
  total = confusion.sum()
  return {
      "accuracy": float(true_positives.sum() / total) if total else 0.0,
      "mean_iou": float(iou[present].mean()) if present.any() else 0.0,
      **{f"iou_{c}": float(iou[c]) for c in np.flatnonzero(present)},
  }


@dataclasses.dataclass(frozen=True)
class Segmentation(Task):
  """A class per pixel: the batch's "segmentation_mask" (uint8 (B, H, W)); logits (B, H, W, C).

  Attributes:
    num_classes: C, background (class 0) included.
  """

  num_classes: int
  targets = ("segmentation_mask",)
  headline = "mean_iou"

  def _per_pixel_loss(self, logits: jax.Array, mask: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), mask.astype(jnp.int32)
    )

  def loss(self, outputs: jax.Array, aux_outputs: Any, batch: dict[str, jax.Array]) -> jax.Array:
    """Cross-entropy averaged over every pixel of the batch (FCN's and U-Net's loss)."""
    del aux_outputs  # no segmentation model has auxiliary heads
    return jnp.mean(self._per_pixel_loss(outputs, batch["segmentation_mask"]))

  def empty_train_sums(self) -> Sums:
    """Correctly classified pixels, pixels seen."""
    return {"correct": jnp.zeros((), jnp.int32), "count": jnp.zeros((), jnp.int32)}

  def train_sums(self, outputs: jax.Array, batch: dict[str, jax.Array]) -> Sums:
    """The batch's correct pixels and pixel count."""
    mask = batch["segmentation_mask"]
    correct = jnp.sum((self.predict(outputs) == mask).astype(jnp.int32))
    return {"correct": correct, "count": mask.size}

  def train_metrics(self, sums: dict[str, Any]) -> dict[str, float]:
    """{"accuracy"}: pixel accuracy since the last log."""
    return {"accuracy": float(sums["correct"]) / max(int(sums["count"]), 1)}

  def empty_eval_sums(self, num_examples: int) -> Sums:
    """The confusion matrix, summed cross-entropy and pixel count."""
    del num_examples  # nothing is kept per example
    return {
        "confusion": jnp.zeros((self.num_classes, self.num_classes), jnp.int32),
        "loss": jnp.zeros((), jnp.float32),
        "count": jnp.zeros((), jnp.int32),
    }

  def eval_sums(self, outputs: jax.Array, batch: dict[str, jax.Array]) -> Sums:
    """The batch's sums over the pixels of its real images."""
    mask = batch["segmentation_mask"]
    real = jnp.broadcast_to(batch["mask"][:, None, None], mask.shape)
    per_pixel = self._per_pixel_loss(outputs, mask)
    return {
        "confusion": confusion_matrix(mask, self.predict(outputs), self.num_classes, real),
        "loss": jnp.sum(jnp.where(real, per_pixel, 0.0)),
        "count": jnp.sum(real.astype(jnp.int32)),
    }

  def eval_metrics(self, sums: dict[str, Any]) -> dict[str, float]:
    """{"accuracy" (pixels), "mean_iou", "loss", "iou_c" of each class present}."""
    loss = float(sums["loss"]) / max(int(sums["count"]), 1)
    scores = iou_metrics(sums["confusion"])
    return {
        "accuracy": scores.pop("accuracy"),
        "mean_iou": scores.pop("mean_iou"),
        "loss": loss,
        **scores,
    }

  def eval_line(self, metrics: dict[str, Any]) -> str:
    """E.g. "mean IoU 0.8123  pixel accuracy 0.9712  loss 0.0931"."""
    return (
        f"mean IoU {metrics['mean_iou']:.4f}  pixel accuracy {metrics['accuracy']:.4f}  "
        f"loss {metrics['loss']:.4f}"
    )

  def predict(self, outputs: jax.Array) -> jax.Array:
    """The class of each pixel, int32 (B, H, W)."""
    return jnp.argmax(outputs, axis=-1).astype(jnp.int32)
