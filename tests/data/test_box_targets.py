"""Detection targets read from TFDS's own detection layouts (coco, voc) and the digit scenes."""

import io

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.core import example_serializer

from cnn_jax.data import box_targets, sources
from cnn_jax.errors import DataError

# TFDS's coco/2017 and voc/2007 features (tensorflow_datasets/object_detection/
# coco.py and voc.py, TFDS 4.9), as their builders declare them: the real
# datasets need the network to prepare.
COCO_FEATURES = tfds.features.FeaturesDict(
    {
        "image": tfds.features.Image(encoding_format="jpeg"),
        "image/filename": tfds.features.Text(),
        "image/id": np.int64,
        "objects": tfds.features.Sequence(
            {
                "id": np.int64,
                "area": np.int64,
                "bbox": tfds.features.BBoxFeature(),
                "label": tfds.features.ClassLabel(num_classes=80),
                "is_crowd": np.bool_,
            }
        ),
    }
)
VOC_LABELS = ["aeroplane", "bicycle", "bird", "boat", "bottle"]
VOC_FEATURES = tfds.features.FeaturesDict(
    {
        "image": tfds.features.Image(),
        "image/filename": tfds.features.Text(),
        "objects": tfds.features.Sequence(
            {
                "label": tfds.features.ClassLabel(names=VOC_LABELS),
                "bbox": tfds.features.BBoxFeature(),
                "pose": tfds.features.ClassLabel(names=["frontal", "left"]),
                "is_truncated": np.bool_,
                "is_difficult": np.bool_,
            }
        ),
        "labels": tfds.features.Sequence(tfds.features.ClassLabel(names=VOC_LABELS)),
        "labels_no_difficult": tfds.features.Sequence(tfds.features.ClassLabel(names=VOC_LABELS)),
    }
)
IMAGE = np.zeros((40, 60, 3), np.uint8)
BOXES = np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0], [0.25, 0.5, 0.75, 0.875]], np.float32)


def _encoded_image(image_format):
  encoded = io.BytesIO()
  Image.fromarray(IMAGE).save(encoded, image_format)
  return encoded.getvalue()


def _round_trip(features, example):
  """The example as `tfds.data_source` hands it out: encoded and serialized as TFDS
  writes records (without TensorFlow, as cnn_jax.data.scenes does), then decoded."""
  serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
  return features.deserialize_example_np(
      serializer.serialize_example(features.encode_example(example))
  )


def _targets(example):
  return {key: sources.target_array(example, key) for key in box_targets.BOX_TARGETS}


def test_coco_layout_gives_padded_boxes_without_crowds():
  example = _round_trip(
      COCO_FEATURES,
      {
          "image": _encoded_image("JPEG"),
          "image/filename": "a.jpg",
          "image/id": 7,
          "objects": {
              "id": [1, 2, 3],
              "area": [10, 2400, 600],
              "bbox": [tfds.features.BBox(*box) for box in BOXES],
              "label": [3, 79, 0],
              "is_crowd": [False, True, False],
          },
      },
  )
  targets = _targets(example)
  k = box_targets.MAX_OBJECTS
  assert targets["boxes"].shape == (k, 4) and targets["boxes"].dtype == np.float32
  assert targets["box_labels"].shape == (k,) and targets["box_labels"].dtype == np.int32
  assert targets["box_valid"].tolist() == [True, True] + [False] * (k - 2)
  # The crowd region (the second object) is left out; the others keep their order.
  assert np.array_equal(targets["boxes"][:2], BOXES[[0, 2]])
  assert targets["box_labels"][:2].tolist() == [3, 0]
  assert not targets["boxes"][2:].any() and not targets["box_labels"][2:].any()


def test_voc_layout_and_an_image_without_objects():
  objects = {"label": [4, 1], "bbox": [tfds.features.BBox(*box) for box in BOXES[:2]]}
  flags = {"pose": [0, 1], "is_truncated": [False, True], "is_difficult": [False, False]}
  example = _round_trip(
      VOC_FEATURES,
      {
          "image": _encoded_image("PNG"),
          "image/filename": "b.jpg",
          "objects": {**objects, **flags},
          "labels": [4, 1],
          "labels_no_difficult": [4, 1],
      },
  )
  targets = _targets(example)
  assert np.array_equal(targets["boxes"][:2], BOXES[:2])
  assert targets["box_labels"][:3].tolist() == [4, 1, 0] and targets["box_valid"].sum() == 2
  empty = {
      "image": _encoded_image("PNG"),
      "image/filename": "c.jpg",
      "objects": {"label": [], "bbox": []},
  }
  empty = _round_trip(VOC_FEATURES, {**empty, "labels": [], "labels_no_difficult": []})
  assert not _targets(empty)["box_valid"].any()


def test_bad_examples_are_clear_errors():
  with pytest.raises(DataError, match="no objects/bbox and objects/label.*config.task"):
    sources.target_array({"image": IMAGE, "label": 3}, "boxes")
  many = {"bbox": np.zeros((box_targets.MAX_OBJECTS + 1, 4)), "label": np.zeros(101, int)}
  with pytest.raises(DataError, match="101 objects, more than the 100"):
    sources.target_array({"image": IMAGE, "objects": many}, "box_valid")
