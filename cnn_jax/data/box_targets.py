"""Detection targets: an example's TFDS `objects` as fixed-size arrays.

TFDS's detection datasets (coco, voc) and our digit scenes hold an
example's objects as a Sequence feature: `objects/bbox` (BBoxFeature:
float32 (n, 4) normalized ymin, xmin, ymax, xmax) and `objects/label`
(ClassLabel, (n,)). A jitted step needs the same shapes in every batch, so
each example's objects are padded to `MAX_OBJECTS`, with a validity flag:
the three targets "boxes", "box_labels" and "box_valid", the names that
on-device augmentation (`cnn_jax.data.augment.from_spec_with_targets`)
moves with the image. Padding is what TFDS pads with: zero boxes.

COCO's crowd regions (`objects/is_crowd`) are left out: one box over a
crowd of people is no object to detect (Detectron2's training leaves them
out too). The boxes stay normalized, so a resize of the whole image leaves them
right; a "pad" resize (LeNet's field around MNIST digits) would not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnn_jax.errors import ArgumentError, DataError

# As many objects as COCO's evaluation scores detections per image.
MAX_OBJECTS = 100
BOX_TARGETS = ("boxes", "box_labels", "box_valid")


def box_target(example: dict[str, Any], key: str) -> np.ndarray:
  """One of an example's detection targets, padded to MAX_OBJECTS objects.

  Args:
    example: a decoded TFDS example with an `objects` feature.
    key: "boxes" (float32 (MAX_OBJECTS, 4), normalized ymin, xmin, ymax,
      xmax), "box_labels" (int32 (MAX_OBJECTS,)) or "box_valid" (bool
      (MAX_OBJECTS,), True for the example's own objects, which come first,
      in the dataset's order, crowd regions left out).

  Returns:
    The array; padded entries are 0 (False).

  Raises:
    DataError: if the example has no objects feature or more than MAX_OBJECTS objects.
    ArgumentError: for another key.
  """
  if key not in BOX_TARGETS:
    raise ArgumentError(f"unknown box target {key!r}; use one of {BOX_TARGETS}")
  objects = example.get("objects")
  if not isinstance(objects, dict) or not {"bbox", "label"} <= set(objects):
    raise DataError(
        f"the dataset's examples have no objects/bbox and objects/label features (they have "
        f"{', '.join(sorted(example))}); choose a config.task that reads what the dataset holds"
    )
  labels = np.asarray(objects["label"]).reshape(-1)
  single = ~np.asarray(objects.get("is_crowd", np.zeros(len(labels), bool)), bool).reshape(-1)
  labels = labels[single]
  count = len(labels)
  if count > MAX_OBJECTS:
    raise DataError(
        f"an example holds {count} objects, more than the {MAX_OBJECTS} a detection batch "
        "keeps (cnn_jax.data.box_targets.MAX_OBJECTS); leave such images out of the split"
    )
  if key == "box_valid":
    return np.arange(MAX_OBJECTS) < count
  if key == "box_labels":
    return np.pad(labels.astype(np.int32), (0, MAX_OBJECTS - count))
  boxes = np.asarray(objects["bbox"], np.float32).reshape(-1, 4)[single]
  return np.pad(boxes, ((0, MAX_OBJECTS - count), (0, 0)))
