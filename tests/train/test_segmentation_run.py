"""Segmentation through the training loop: config.task="segmentation" on digit scenes."""

import json

import jax
import numpy as np
import pytest
from PIL import Image

from cnn_jax import predict
from cnn_jax.data import augment, sources
from cnn_jax.errors import ConfigError, UserError
from cnn_jax.train import steps, train_and_evaluate
from cnn_jax.visualize import make_gallery, methods
from cnn_jax.visualize import trained as visualize_trained

from helpers import assert_resumed_run_equals, prepared_scenes, tiny_config

# The first scenes of mnist_scenes' splits (scene i does not depend on the count).
COUNTS = {"train": 32, "test": 12}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return prepared_scenes(str(tmp_path_factory.mktemp("tfds")), COUNTS)


def segmentation_config(data_dir, pipeline="device", **overrides):
  """A 4-filter, 2-pool U-Net on 64x64 scenes, 8 scenes per step."""
  fields = dict(
      task="segmentation",
      dataset="mnist_scenes",
      data_dir=data_dir,
      image_size=64,
      augment="",  # the step's moving of masks: test_the_step_moves_masks_with_the_images
      model="unet_small",
      model_kwargs={"width": 4, "depth": 2},
      batch_size=8,
      eval_batch_size=8,
      num_train_steps=8,
      eval_every_steps=8,
      checkpoint_every_steps=4,
      log_every_steps=4,
  )
  return tiny_config(pipeline, **{**fields, **overrides})


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
  """(the eval of an 8-step run, its workdir)."""
  workdir = tmp_path_factory.mktemp("ref")
  return train_and_evaluate(segmentation_config(data_dir), str(workdir)), workdir


def test_segmentation_trains_and_resumes_bit_exactly(data_dir, trained, tmp_path):
  # (The Grain pipeline's masks: tests/data/test_scenes.py; resuming Grain: test_train.py.)
  # A constant learning rate makes a 4-step run the first half of an 8-step one.
  reference, reference_dir = trained
  make_config = lambda **overrides: segmentation_config(data_dir, **overrides)
  assert_resumed_run_equals(make_config, reference, reference_dir, tmp_path / "split")
  # Background and the digits of the 12 test scenes (classes 1-10), no other.
  test = sources.load("mnist_scenes", "test", data_dir)
  present = {0} | {
      1 + int(label) for i in range(len(test)) for label in test[i]["objects"]["label"]
  }
  assert {k for k in reference if k.startswith("iou_")} == {f"iou_{c}" for c in present}
  assert 0.0 <= reference["mean_iou"] <= 1.0 and np.isfinite(reference["loss"])
  saved = json.loads((reference_dir / "results.json").read_text())
  assert saved["mean_iou"] == reference["mean_iou"] and saved["step"] == 8


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"task": "pose"}, "config.task='pose'; use one of"),
        ({"loss": "rbf_map"}, "config.loss"),
        (
            {"model": "lenet5_modern", "model_kwargs": {}},
            "config.model='lenet5_modern' predicts for config.task='classification', not "
            "'segmentation'; choose a segmentation model",
        ),
    ],
)
def test_segmentation_config_mistakes_are_one_line_errors(data_dir, tmp_path, overrides, message):
  config = segmentation_config(data_dir)
  config.update(overrides)
  with pytest.raises(ConfigError, match=message) as raised:
    train_and_evaluate(config, str(tmp_path / "w"))
  assert "\n" not in str(raised.value)
  assert not (tmp_path / "w").exists()


def test_predict_writes_a_runs_masks_as_indexed_pngs(data_dir, trained, tmp_path, capsys):
  _, workdir = trained
  scene = sources.load("mnist_scenes", "test", data_dir)[0]["image"]
  path = tmp_path / "scene.png"
  Image.fromarray(np.asarray(scene)[..., 0]).save(path)
  run = visualize_trained.load(str(workdir))
  logits = run.model.apply(run.variables, run.network_input(np.asarray(scene)[None]))
  predict._print_or_write(str(workdir), [str(path)], str(tmp_path / "out"))  # the CLI's body
  assert f"scene.png -> {tmp_path / 'out' / 'scene_mask.png'}" in capsys.readouterr().out
  with Image.open(tmp_path / "out" / "scene_mask.png") as written:
    assert written.mode == "P" and written.size == (64, 64)
    np.testing.assert_array_equal(np.asarray(written), np.argmax(logits[0], -1))


def test_the_step_moves_masks_with_the_images():
  transform = steps.InputTransform(
      augment_fn=augment.from_spec_with_targets("flip_lr(p=1.0)"), moves_targets=True
  )
  image = np.zeros((1, 4, 4, 1), np.uint8)
  image[0, 1, 0] = 255  # ink at the left edge, its class in the mask
  mask = (image[..., 0] > 0).astype(np.uint8) * 3
  x, batch = transform.model_batch({"image": image, "segmentation_mask": mask}, jax.random.key(0))
  assert float(x[0, 1, 3, 0]) == 1.0 and int(batch["segmentation_mask"][0, 1, 3]) == 3
  assert int(np.asarray(batch["segmentation_mask"]).sum()) == 3  # moved, not copied


def test_gallery_draws_true_and_predicted_masks_and_refuses_one_label_methods(trained, tmp_path):
  _, workdir = trained
  out = tmp_path / "gallery"
  # Occlusion and activation maximization explain one label per image.
  with pytest.raises(UserError, match="--method=occlusion cannot show a segmentation run"):
    make_gallery.make_gallery("occlusion", workdir=str(workdir), out=str(out))
  assert not out.exists()
  assert set(methods.METHODS) - set(methods.applicable("segmentation")) == {
      "occlusion",
      "activation_max",
      "boxes",
  }
  assert "masks" not in methods.applicable("classification")
  assert "boxes" not in methods.applicable("classification")
  index = make_gallery.make_gallery("masks", workdir=str(workdir), out=str(out), images=4)
  assert (out / "masks.png").stat().st_size > 5_000 and "masks.png" in open(index).read()
  # The attribution methods explain each image's largest true class.
  run = visualize_trained.load(str(workdir))
  context = methods.Context(run, 4, str(out), methods.Options())
  masks = np.asarray(run.examples(4)[1])
  for mask, label in zip(masks, context.labels):
    areas = np.bincount(mask.ravel(), minlength=11)
    assert label == 1 + np.argmax(areas[1:]) and areas[label] > 0
  assert run.class_names == ["background", *map(str, range(10))]
  assert context.titles[0].startswith(f"{int(context.labels[0]) - 1}: IoU ")


def test_largest_class_ignores_the_background():
  assert methods.largest_class(np.array([[0, 0, 0], [2, 2, 5]])) == 2
  assert methods.largest_class(np.zeros((2, 2), int)) == 0
