"""The segmentation task: its loss and its metrics against scikit-learn."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from cnn_jax.tasks import Segmentation
from cnn_jax.tasks.segmentation import confusion_matrix, iou_metrics

CLASSES = 5


def _sklearn_scores(labels, predictions, classes=CLASSES):
  """Per-class IoU (NaN for a class in neither), mean over the others, pixel accuracy."""
  labels, predictions = np.ravel(labels), np.ravel(predictions)
  present = np.union1d(labels, predictions)  # a class in neither has no IoU
  iou = np.full(classes, np.nan)
  iou[present] = sk_metrics.jaccard_score(labels, predictions, labels=present, average=None)
  return iou, np.nanmean(iou), sk_metrics.accuracy_score(labels, predictions)


def _assert_scores_equal(scores, labels, predictions):
  iou, mean_iou, accuracy = _sklearn_scores(labels, predictions)
  ours = [scores.get(f"iou_{c}", np.nan) for c in range(CLASSES)]  # none: in neither
  np.testing.assert_allclose(ours, iou, atol=1e-6)
  np.testing.assert_allclose(scores["mean_iou"], mean_iou, atol=1e-6)
  np.testing.assert_allclose(scores["accuracy"], accuracy, atol=1e-6)


def test_confusion_matrix_is_sklearns_and_counts_only_weighted_pixels():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, CLASSES, (3, 16, 16))
  predictions = rng.integers(0, CLASSES, (3, 16, 16))
  ours = jax.jit(confusion_matrix, static_argnums=2)(labels, predictions, CLASSES)
  expected = sk_metrics.confusion_matrix(labels.ravel(), predictions.ravel(), labels=range(CLASSES))
  np.testing.assert_array_equal(ours, expected)
  weights = np.zeros((3, 16, 16), bool)
  weights[:2] = True  # the third image is padding
  ours = confusion_matrix(labels, predictions, CLASSES, weights)
  expected = sk_metrics.confusion_matrix(
      labels[:2].ravel(), predictions[:2].ravel(), labels=range(CLASSES)
  )
  np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize(
    "case",
    ["random", "class 4 in neither", "class 4 only predicted", "class 4 only true", "perfect"],
)
def test_iou_metrics_equal_sklearns(case):
  rng = np.random.default_rng(1)
  labels = rng.integers(0, CLASSES, 4096)
  predictions = np.where(rng.random(4096) < 0.7, labels, rng.integers(0, CLASSES, 4096))
  if case != "random":
    labels, predictions = np.minimum(labels, 3), np.minimum(predictions, 3)
  if case == "class 4 only predicted":
    predictions[:100] = 4
  if case == "class 4 only true":
    labels[:100] = 4
  if case == "perfect":
    predictions = labels
  scores = iou_metrics(np.asarray(confusion_matrix(labels, predictions, CLASSES)))
  _assert_scores_equal(scores, labels, predictions)
  if case == "class 4 in neither":  # no IoU, and left out of the mean
    assert "iou_4" not in scores
    assert scores["mean_iou"] == pytest.approx(np.mean([scores[f"iou_{c}"] for c in range(4)]))
  if case in ("class 4 only predicted", "class 4 only true"):
    assert scores["iou_4"] == 0.0


def test_eval_sums_cover_every_real_pixel_once_and_no_padding():
  # Metrics from batch sums equal those of the whole set at once, which a
  # mean of per-batch mIoUs would not.
  task = Segmentation(CLASSES)
  rng = np.random.default_rng(2)
  labels = rng.integers(0, CLASSES, (5, 8, 8)).astype(np.uint8)
  logits = rng.standard_normal((5, 8, 8, CLASSES)).astype(np.float32)
  labels[:3] = np.minimum(labels[:3], 2)  # the first batch lacks classes 3 and 4
  padded_logits = np.concatenate([logits, np.zeros((1, 8, 8, CLASSES), np.float32)])
  padded_labels = np.concatenate([labels, np.full((1, 8, 8), 4, np.uint8)])
  real = np.arange(6) < 5
  sums = task.empty_eval_sums(0)
  eval_sums = jax.jit(task.eval_sums)
  for batch in (slice(0, 3), slice(3, 6)):
    added = eval_sums(
        padded_logits[batch],
        {"segmentation_mask": padded_labels[batch], "mask": real[batch]},
    )
    sums = jax.tree.map(jnp.add, sums, added)
  metrics = task.eval_metrics(jax.device_get(sums))
  _assert_scores_equal(metrics, labels, logits.argmax(-1))
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expected_loss = -np.take_along_axis(log_probs, labels[..., None].astype(int), -1).mean()
  np.testing.assert_allclose(metrics["loss"], expected_loss, rtol=1e-5)
  assert int(sums["count"]) == 5 * 8 * 8


def test_training_loss_is_the_mean_pixel_cross_entropy():
  task = Segmentation(3)
  logits = np.zeros((1, 1, 2, 3), np.float32)
  logits[0, 0, 0] = [2.0, 0.0, 0.0]  # class 0 favoured, and true
  mask = np.array([[[0, 2]]], np.uint8)  # the second pixel: uniform logits, class 2
  expected = np.mean([-np.log(np.exp(2) / (np.exp(2) + 2)), np.log(3)])
  np.testing.assert_allclose(
      task.loss(logits, {}, {"segmentation_mask": mask}), expected, rtol=1e-6
  )
  assert np.array_equal(task.predict(logits), [[[0, 0]]])
