"""COCO-style box AP and AR, pycocotools' `COCOeval` (iouType "bbox") in NumPy.

The same numbers as `COCOeval.evaluate(); accumulate(); summarize()` with its
default parameters, rounding included: IoU thresholds 0.50:0.05:0.95, recall
thresholds 0:0.01:1 (101 points on the precision envelope made monotone),
at most 1, 10 and 100 detections per image *and category* (the highest
scores, ties kept in the given order), area ranges all, small (up to
32^2), medium (32^2 to 96^2) and large (from 96^2), bounds inclusive as
COCO's: an object of exactly 32^2 is both small and medium.

The ground truth is boxes, so an object's area is its box's (w * h); COCO's
own annotation files give the segmentation's area instead, so the size
ranges of COCO's published numbers can differ from ours on the same boxes.
Every object is a single object (COCO's iscrowd=0): crowd regions, which any
number of detections may match, are not supported; nor are masks ("segm")
or keypoints.

Not in pycocotools' way, on purpose: pycocotools cannot evaluate a result
list with no detections at all (`loadRes` reads its first entry); here that
gives AP 0 for every category that has ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from cnn_jax.tasks import boxes as box_lib

# np.linspace as pycocotools' Params: np.arange's points drift above the
# thresholds, and an IoU of exactly 0.75 must count at 0.75.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = (1, 10, 100)
# (low, high) of an object's area in pixels, inclusive at both ends.
AREA_RANGES = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}
# pycocotools' `COCOeval.stats`, in its order.
STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)


class GroundTruth(NamedTuple):
  """One image's objects.

  Attributes:
    boxes: (G, 4) float pixel boxes (ymin, xmin, ymax, xmax).
    labels: (G,) int classes.
  """

  boxes: np.ndarray
  labels: np.ndarray


class Detections(NamedTuple):
  """One image's detections.

  Attributes:
    boxes: (D, 4) float pixel boxes (ymin, xmin, ymax, xmax).
    scores: (D,) float confidences; higher ranks first.
    labels: (D,) int classes.
  """

  boxes: np.ndarray
  scores: np.ndarray
  labels: np.ndarray


class _Matches(NamedTuple):
  """One image's detections of one category, judged in one area range."""

  scores: np.ndarray  # (D,) highest first
  matched: np.ndarray  # (T, D) bool: matched a ground-truth object at each IoU threshold
  ignored: np.ndarray  # (T, D) bool: neither a true nor a false positive
  num_objects: int  # ground-truth objects in the area range


def _coco_iou(detections: np.ndarray, objects: np.ndarray) -> np.ndarray:
  """(D, G) IoU with pycocotools' rounding: far corners x + w, areas w * h."""
  # maskApi's bbIou takes (x, y, w, h) and adds w to x for the far corner:
  # xmax again for coordinates of one sign, but off in the last bit for some
  # boxes across 0 (a prediction that leaves the image). Computed the same
  # way, an IoU next to a threshold matches in both or in neither.
  round_trip = lambda b: box_lib.coco_to_pixels(box_lib.pixels_to_coco(b))
  return box_lib.pairwise_iou(
      round_trip(detections), round_trip(objects), box_lib.area(detections), box_lib.area(objects)
  )


def _last_best(ious: np.ndarray) -> np.ndarray:
  """(N,) index of the highest of each row of (N, G), the last of equals; -1 for a row of -1s."""
  best = ious.max(axis=1)
  last = ious.shape[1] - 1 - np.argmax(ious[:, ::-1] == best[:, None], axis=1)
  return np.where(best >= 0, last, -1)


def _match(ious: np.ndarray, object_ignored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Greedy matching at every IoU threshold, COCOeval.evaluateImg's, in every area range.

  evaluateImg sorts the ignored objects last and scans them only when no
  other is left to match; taking the best of the others first, and of the
  ignored ones only then, is the same without the sort.

  Args:
    ious: (D, G), detections highest score first, objects in the given order.
    object_ignored: (A, G) bool, the objects outside each area range.

  Returns:
    (matched, on_ignored), both (A, T, D) bool: whether each detection
    matched an object at each threshold, and whether that object is ignored.
  """
  num_detections, num_objects = ious.shape
  # One row per area range and threshold: the ranges match independently.
  rows = len(object_ignored) * len(IOU_THRESHOLDS)
  ignored = np.repeat(object_ignored, len(IOU_THRESHOLDS), axis=0)
  thresholds = np.tile(np.minimum(IOU_THRESHOLDS, 1 - 1e-10), len(object_ignored))[:, None]
  matched = np.zeros((rows, num_detections), bool)
  on_ignored = np.zeros_like(matched)
  taken = np.zeros((rows, num_objects), bool)
  # A detection that overlaps nothing enough stays unmatched: no need to look.
  for d in np.flatnonzero((ious >= thresholds.min()).any(axis=1)):
    # Each detection takes the free object it overlaps most, the last of
    # equals (evaluateImg's scan replaces its best on `>=`).
    free = ~taken & (ious[d] >= thresholds)
    counting = free & ~ignored
    candidates = np.where(counting.any(axis=1, keepdims=True), counting, free)
    best = _last_best(np.where(candidates, ious[d], -1.0))
    hit = np.flatnonzero(best >= 0)
    taken[hit, best[hit]] = True
    matched[hit, d] = True
    on_ignored[hit, d] = ignored[hit, best[hit]]
  shape = (len(object_ignored), len(IOU_THRESHOLDS), num_detections)
  return matched.reshape(shape), on_ignored.reshape(shape)


def _outside(areas: np.ndarray) -> np.ndarray:
  """(A, N) bool: whether each area is outside each of AREA_RANGES (bounds inclusive)."""
  low, high = np.array(list(AREA_RANGES.values())).T[:, :, None]
  return (areas[None, :] < low) | (areas[None, :] > high)


def _judge(objects: np.ndarray, detections: np.ndarray, scores: np.ndarray) -> list[_Matches]:
  """One image's detections of one category, judged in each of AREA_RANGES."""
  # Only the first 100 can count; matching in score order, later ones never
  # change the matches of earlier ones, so cutting here only saves work.
  order = np.argsort(-scores, kind="mergesort")[: MAX_DETECTIONS[-1]]
  detections, scores = detections[order], scores[order]
  object_ignored = _outside(box_lib.area(objects))
  matched, on_ignored = _match(_coco_iou(detections, objects), object_ignored)
  # An unmatched detection of another size is no false positive in its range.
  ignored = on_ignored | (~matched & _outside(box_lib.area(detections))[:, None, :])
  num_objects = np.count_nonzero(~object_ignored, axis=1)
  return [_Matches(scores, *judged) for judged in zip(matched, ignored, num_objects.tolist())]


def _precision_recall(
    matches: Sequence[_Matches], max_detections: int
) -> tuple[np.ndarray, np.ndarray] | None:
  """(T, R) interpolated precision and (T,) recall of one category; None without objects."""
  num_objects = sum(m.num_objects for m in matches)
  if not num_objects:
    return None
  scores = np.concatenate([m.scores[:max_detections] for m in matches])
  order = np.argsort(-scores, kind="mergesort")  # stable: ties stay in image order
  matched = np.concatenate([m.matched[:, :max_detections] for m in matches], 1)[:, order]
  ignored = np.concatenate([m.ignored[:, :max_detections] for m in matches], 1)[:, order]
  true_positives = np.cumsum(matched & ~ignored, axis=1).astype(float)
  false_positives = np.cumsum(~matched & ~ignored, axis=1).astype(float)
  count = true_positives.shape[1]
  if not count:
    return np.zeros((len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS))), np.zeros(len(IOU_THRESHOLDS))
  recall = true_positives / num_objects
  precision = true_positives / (false_positives + true_positives + np.spacing(1))
  envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
  at = np.stack([np.searchsorted(r, RECALL_THRESHOLDS, side="left") for r in recall])
  # A recall never reached has precision 0.
  interpolated = np.where(at < count, np.take_along_axis(envelope, np.minimum(at, count - 1), 1), 0)
  return interpolated, recall[:, -1]


def _checked(
    ground_truth: Sequence[GroundTruth], detections: Sequence[Detections]
) -> tuple[list[GroundTruth], list[Detections]]:
  """The inputs as float64 / int64 arrays of matching lengths (ValueError if not)."""
  if len(ground_truth) != len(detections):
    raise ValueError(f"{len(ground_truth)} images of ground truth, {len(detections)} of detections")
  objects = [
      GroundTruth(np.asarray(b, np.float64).reshape(-1, 4), np.asarray(c, np.int64).reshape(-1))
      for b, c in ground_truth
  ]
  found = [
      Detections(
          np.asarray(b, np.float64).reshape(-1, 4),
          np.asarray(s, np.float64).reshape(-1),
          np.asarray(c, np.int64).reshape(-1),
      )
      for b, s, c in detections
  ]
  for i, (gt, det) in enumerate(zip(objects, found)):
    if len(gt.boxes) != len(gt.labels) or not len(det.boxes) == len(det.scores) == len(det.labels):
      raise ValueError(f"image {i}: boxes, scores and labels differ in length")
  return objects, found


def _judge_all(
    ground_truth: Sequence[GroundTruth], detections: Sequence[Detections], categories: np.ndarray
) -> dict[int, list[list[_Matches]]]:
  """For each category: per image that has its objects or detections, per area range."""
  judged = {int(c): [] for c in categories}
  for gt, det in zip(ground_truth, detections):
    for c in np.intersect1d(np.union1d(gt.labels, det.labels), categories):
      mine, found = gt.labels == c, det.labels == c
      judged[int(c)].append(_judge(gt.boxes[mine], det.boxes[found], det.scores[found]))
  return judged


def _mean(values: np.ndarray) -> float:
  """The mean of the entries that are not -1 (absent categories); -1 if none, as pycocotools."""
  present = values[values > -1]
  return float(np.mean(present)) if present.size else -1.0


def _summarize(precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
  """COCOeval.summarize's 12 numbers of precision (T, R, K, A, M) and recall (T, K, A, M)."""
  at_50, at_75 = (int(np.flatnonzero(np.isclose(IOU_THRESHOLDS, t))[0]) for t in (0.5, 0.75))
  areas = {name: i for i, name in enumerate(AREA_RANGES)}
  last = len(MAX_DETECTIONS) - 1
  values = [
      _mean(precision[:, :, :, 0, last]),
      _mean(precision[at_50, :, :, 0, last]),
      _mean(precision[at_75, :, :, 0, last]),
      *(_mean(precision[:, :, :, areas[a], last]) for a in ("small", "medium", "large")),
      *(_mean(recall[:, :, 0, m]) for m in range(len(MAX_DETECTIONS))),
      *(_mean(recall[:, :, areas[a], last]) for a in ("small", "medium", "large")),
  ]
  return dict(zip(STAT_NAMES, values))


def evaluate(
    ground_truth: Sequence[GroundTruth], detections: Sequence[Detections]
) -> dict[str, float]:
  """COCO box AP and AR of detections over a set of images, as pycocotools'.

  The categories are those with at least one ground-truth object; a
  category's detections in images that lack it are false positives, and
  detections of any other category are left out (pycocotools' precision -1:
  not in the means). A size range with no object in any category gives -1.

  Args:
    ground_truth: per image, its objects (a `GroundTruth` or a (boxes,
      labels) pair of arrays), boxes in pixels (ymin, xmin, ymax, xmax).
    detections: per image, in the same order, its `Detections` (or a
      (boxes, scores, labels) triple), boxes in pixels too.

  Returns:
    {name: value for name in STAT_NAMES}: "AP" (mean over IoU 0.50:0.95),
    "AP50", "AP75", "AP_small", "AP_medium", "AP_large" at 100 detections
    per image, "AR1", "AR10", "AR100" and "AR_small", "AR_medium",
    "AR_large" at 100; equal to `COCOeval.stats` in that order.

  Raises:
    ValueError: for inputs of different numbers of images, or an image whose
      boxes, scores and labels differ in length.
  """
  ground_truth, detections = _checked(ground_truth, detections)
  categories = np.unique(np.concatenate([gt.labels for gt in ground_truth] or [np.zeros(0, int)]))
  shape = (len(categories), len(AREA_RANGES), len(MAX_DETECTIONS))
  precision = -np.ones((len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), *shape))
  recall = -np.ones((len(IOU_THRESHOLDS), *shape))
  for k, per_image in enumerate(_judge_all(ground_truth, detections, categories).values()):
    for a in range(len(AREA_RANGES)):
      for m, max_detections in enumerate(MAX_DETECTIONS):
        curves = _precision_recall([image[a] for image in per_image], max_detections)
        if curves is not None:
          precision[:, :, k, a, m], recall[:, k, a, m] = curves
  return _summarize(precision, recall)
