"""COCO box AP and AR against pycocotools' COCOeval, scene by scene."""

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cnn_jax.tasks import boxes, coco_eval
from cnn_jax.tasks.coco_eval import Detections, GroundTruth

IMAGE_SIZE = 640.0


def _pycocotools_stats(ground_truth, detections):
  """COCOeval's 12 stats, its inputs built in memory through our COCO conversion."""
  annotations, results = [], []
  for image_id, (gt, det) in enumerate(zip(ground_truth, detections), start=1):
    for box, label in zip(boxes.pixels_to_coco(gt.boxes), gt.labels):
      annotations.append(
          {
              "id": len(annotations) + 1,  # an id of 0 would read as "unmatched"
              "image_id": image_id,
              "category_id": int(label),
              "bbox": box.tolist(),
              "area": float(box[2] * box[3]),
              "iscrowd": 0,
          }
      )
    for box, score, label in zip(boxes.pixels_to_coco(det.boxes), det.scores, det.labels):
      results.append(
          {"image_id": image_id, "category_id": int(label), "bbox": box.tolist(), "score": score}
      )
  labels = np.concatenate([x.labels for x in [*ground_truth, *detections]])
  dataset = {
      "images": [{"id": i + 1} for i in range(len(ground_truth))],
      "annotations": annotations,
      "categories": [{"id": int(c)} for c in np.unique(labels)],
  }
  with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints each step
    reference = COCO()
    reference.dataset = dataset
    reference.createIndex()
    evaluator = COCOeval(reference, reference.loadRes(results), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
  return evaluator.stats


def _assert_as_pycocotools(ground_truth, detections):
  ours = coco_eval.evaluate(ground_truth, detections)
  assert list(ours) == list(coco_eval.STAT_NAMES)
  expected = dict(zip(coco_eval.STAT_NAMES, _pycocotools_stats(ground_truth, detections)))
  np.testing.assert_allclose(list(ours.values()), list(expected.values()), atol=1e-6, err_msg=ours)
  return ours


def _box(y, x, height, width):
  return [y, x, y + height, x + width]


def _gt(box_list, labels):
  return GroundTruth(np.array(box_list, float).reshape(-1, 4), np.array(labels, int))


def _det(box_list, scores, labels):
  return Detections(
      np.array(box_list, float).reshape(-1, 4), np.array(scores, float), np.array(labels, int)
  )


def _random_boxes(rng, count):
  """Boxes of every size range: sides log-uniform from 4 to 320 pixels."""
  sides = np.exp(rng.uniform(np.log(4.0), np.log(320.0), (count, 2)))
  corners = rng.uniform(0.0, 1.0, (count, 2)) * (IMAGE_SIZE - sides)
  return np.concatenate([corners, corners + sides], axis=1)


def _jittered(rng, objects, spread):
  """Copies of boxes, each corner moved by up to `spread` of the box's size."""
  sides = np.tile(objects[:, 2:] - objects[:, :2], 2)
  moved = objects + rng.uniform(-1.0, 1.0, objects.shape) * spread * sides
  return np.concatenate([np.minimum(moved[:, :2], moved[:, 2:]), moved[:, 2:]], axis=1)


def _random_image(rng, classes, integer, ties):
  """Up to 8 objects of every size; detections near some, of the wrong class, and astray.

  `integer` rounds the coordinates to whole pixels; `ties` the scores to tenths.
  """
  objects = _random_boxes(rng, rng.integers(0, 9))
  labels = rng.integers(0, classes, len(objects))
  copies = rng.integers(0, 3, len(objects))  # none, one or two detections per object
  # Moved by up to 0 to 20% of their size: IoUs across every threshold.
  spread = rng.uniform(0.0, 0.2, (copies.sum(), 1))
  found = _jittered(rng, np.repeat(objects, copies, axis=0), spread)
  found_labels = np.repeat(labels, copies)
  wrong = rng.uniform(size=len(found)) < 0.1  # a few with the wrong class
  found_labels[wrong] = rng.integers(0, classes, wrong.sum())
  strays = rng.integers(0, 6)  # and false positives anywhere
  found = np.concatenate([found, _random_boxes(rng, strays)])
  found_labels = np.concatenate([found_labels, rng.integers(0, classes, strays)])
  scores = rng.uniform(size=len(found))
  if ties:
    scores = np.round(scores, 1)
  if integer:
    objects, found = np.round(objects), np.round(found)
  return GroundTruth(objects, labels), Detections(found, scores, found_labels)


@pytest.mark.parametrize("seed", range(6))
def test_random_scenes(seed):
  rng = np.random.default_rng(seed)
  integer, ties = seed % 2 == 1, seed % 3 == 2
  images = [_random_image(rng, 4, integer, ties) for _ in range(8)]
  _assert_as_pycocotools(*zip(*images))


def test_images_without_detections_or_without_objects():
  ground_truth = [
      _gt([_box(10, 10, 50, 50), _box(100, 100, 200, 150)], [0, 1]),  # nothing detected
      _gt([], []),  # only false positives
      _gt([], []),  # nothing at all
      _gt([_box(10, 10, 50, 50)], [0]),
  ]
  detections = [
      _det([], [], []),
      _det([_box(5, 5, 40, 40), _box(300, 300, 20, 20)], [0.9, 0.4], [0, 1]),
      _det([], [], []),
      _det([_box(12, 10, 50, 48)], [0.7], [0]),
  ]
  _assert_as_pycocotools(ground_truth, detections)


def test_a_class_without_objects_and_a_class_without_detections():
  ground_truth = [_gt([_box(10, 10, 60, 60), _box(200, 200, 40, 40)], [0, 2])] * 2
  # Class 1 has detections and no objects: not in the means; class 2 the reverse: AP 0.
  detections = [
      _det([_box(10, 12, 60, 60), _box(200, 200, 40, 40)], [0.8, 0.95], [0, 1]),
      _det([_box(300, 300, 50, 50), _box(11, 10, 58, 60)], [0.99, 0.6], [1, 0]),
  ]
  ours = _assert_as_pycocotools(ground_truth, detections)
  assert 0 < ours["AP"] < 1


def test_a_crowd_of_duplicates_on_one_object():
  rng = np.random.default_rng(0)
  target = np.array([_box(100, 100, 80, 120)])
  crowd = _jittered(rng, np.repeat(target, 30, axis=0), 0.05)
  ground_truth = [_gt([*target, _box(400, 300, 60, 60)], [0, 0])]
  detections = [_det([*crowd, _box(401, 300, 60, 59)], rng.uniform(size=31), [0] * 31)]
  _assert_as_pycocotools(ground_truth, detections)


def test_tied_scores_keep_the_given_order():
  rng = np.random.default_rng(1)
  images = [_random_image(rng, 2, integer=False, ties=False) for _ in range(5)]
  ground_truth = [gt for gt, _ in images]
  detections = [det._replace(scores=np.full(len(det.scores), 0.5)) for _, det in images]
  _assert_as_pycocotools(ground_truth, detections)
  # A false and a true positive of equal scores: their order moves AP.
  ground_truth = [_gt([_box(0, 0, 50, 50)], [0])] * 2
  detections = [
      _det([_box(300, 300, 50, 50), _box(0, 0, 50, 50)], [0.5, 0.5], [0, 0]),
      _det([_box(0, 0, 50, 50), _box(300, 300, 50, 50)], [0.5, 0.5], [0, 0]),
  ]
  _assert_as_pycocotools(ground_truth, detections)


def test_more_than_100_detections_per_image_and_category():
  rng = np.random.default_rng(2)
  objects = _random_boxes(rng, 20)
  # 150 of class 0, the true ones scored lowest: the last 50 fall off.
  many = np.concatenate([_random_boxes(rng, 130), _jittered(rng, objects, 0.05)])
  scores = np.concatenate([rng.uniform(0.3, 1.0, 130), rng.uniform(0.0, 0.3, 20)])
  # 80 of each of two classes: 160 in the image, but no category over 100.
  pair = np.concatenate([_jittered(rng, objects[:10], 0.1), _random_boxes(rng, 70)])
  ground_truth = [_gt(objects, [0] * 20), _gt(objects[:10], [0] * 5 + [1] * 5)]
  detections = [
      _det(many, scores, [0] * 150),
      _det([*pair, *pair], rng.uniform(size=160), [0] * 80 + [1] * 80),
  ]
  ours = _assert_as_pycocotools(ground_truth, detections)
  assert ours["AR100"] < 1


def test_objects_of_every_size_and_on_the_range_bounds():
  ground_truth = [
      _gt(
          [
              _box(0, 0, 32, 34),  # medium, 1088
              _box(0, 0, 30, 30),  # small, 900, inside the medium one
              _box(100, 100, 32, 32),  # 32^2: small and medium
              _box(200, 200, 96, 96),  # 96^2: medium and large
              _box(300, 300, 200, 150),  # large
              _box(400, 0, 8, 12),  # small
          ],
          [0, 0, 0, 0, 1, 1],
      )
  ]
  # The first detection overlaps the medium object most, but in the small
  # range it must take the small object (objects that count come first,
  # whatever the order given).
  found = [_box(0, 0, 31, 32), _box(100, 101, 32, 32), _box(200, 198, 97, 96)]
  found += [_box(300, 300, 190, 150), _box(400, 0, 9, 12), _box(500, 500, 30, 30)]
  found += [_box(550, 500, 40, 40), _box(0, 500, 100, 100)]  # false positives of each size
  detections = [_det(found, [0.9, 0.8, 0.7, 0.6, 0.5, 0.95, 0.4, 0.3], [0, 0, 0, 1, 1, 0, 0, 1])]
  ours = _assert_as_pycocotools(ground_truth, detections)
  assert all(ours[name] > -1 for name in ("AP_small", "AP_medium", "AP_large"))


def test_ties_in_iou_go_to_the_last_object():
  # One detection equally close to two objects takes the second; the other,
  # exactly on the first, then takes it: two true positives up to IoU 0.95.
  ground_truth = [_gt([_box(0, 0, 10, 10), _box(0, 2, 10, 10)], [0, 0])]
  detections = [_det([_box(0, 1, 10, 10), _box(0, 0, 10, 10)], [0.9, 0.8], [0, 0])]
  ours = _assert_as_pycocotools(ground_truth, detections)
  assert ours["AP50"] == pytest.approx(1.0)


def test_iou_rounds_as_pycocotools_across_the_image_edge():
  # pycocotools adds w to x for the far corner. For coordinates of one sign
  # that gives xmax back exactly, but not across 0: here the IoU of the
  # pixel boxes is 0.85 and a hair, pycocotools' a hair under 0.85.
  objects = np.array(
      [[-9.800908783854162, -2.699076844834587, -1.6923192525755066, 6.596079705562055]]
  )
  found = np.array(
      [[-9.800908783854162, -1.9454155029105347, -1.6923192525755066, 7.3497410474861065]]
  )
  assert boxes.pairwise_iou(found, objects)[0, 0] >= coco_eval.IOU_THRESHOLDS[7] == 0.85
  ours = _assert_as_pycocotools([_gt(objects, [0])], [_det(found, [0.9], [0])])
  assert ours["AP"] == pytest.approx(0.7)  # a match at 7 of the 10 thresholds


def test_a_perfect_detector_has_ap_1():
  rng = np.random.default_rng(3)
  ground_truth = [_gt(_random_boxes(rng, 6), rng.integers(0, 3, 6)) for _ in range(5)]
  detections = [_det(gt.boxes, rng.uniform(size=6), gt.labels) for gt in ground_truth]
  ours = _assert_as_pycocotools(ground_truth, detections)
  for name in ("AP", "AP50", "AP75", "AR100"):
    assert ours[name] == pytest.approx(1.0), name


def test_no_detections_at_all():
  # pycocotools cannot load an empty result list; every category with objects has AP 0.
  ground_truth = [_gt([_box(0, 0, 10, 10), _box(0, 0, 200, 200)], [0, 1]), _gt([], [])]
  ours = coco_eval.evaluate(ground_truth, [_det([], [], [])] * 2)
  assert ours == {name: 0.0 if "medium" not in name else -1.0 for name in coco_eval.STAT_NAMES}


def test_no_objects_at_all():
  detections = [_det([_box(0, 0, 10, 10)], [0.5], [0]), _det([], [], [])]
  ours = _assert_as_pycocotools([_gt([], [])] * 2, detections)
  assert set(ours.values()) == {-1.0}


def test_inputs_of_different_lengths_are_refused():
  with pytest.raises(ValueError, match="2 images of ground truth, 1 of detections"):
    coco_eval.evaluate([_gt([], [])] * 2, [_det([], [], [])])
  with pytest.raises(ValueError, match="image 0"):
    coco_eval.evaluate([_gt([_box(0, 0, 1, 1)], [])], [_det([], [], [])])
