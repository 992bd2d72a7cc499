"""Detection through the training loop: config.task="detection" (CenterNet) on digit scenes."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from cnn_jax import predict, records
from cnn_jax.data import sources
from cnn_jax.errors import ConfigError, UserError
from cnn_jax.tasks import coco_eval
from cnn_jax.train import train_and_evaluate
from cnn_jax.visualize import attribution, make_gallery, methods
from cnn_jax.visualize import trained as trained_runs

from helpers import assert_resumed_run_equals, prepared_scenes, tiny_config, two_processes

# The first scenes of mnist_scenes' splits (scene i does not depend on the count).
COUNTS = {"train": 32, "test": 12}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return prepared_scenes(str(tmp_path_factory.mktemp("tfds")), COUNTS)


def detection_config(data_dir, pipeline="device", **overrides):
  """CenterNet on a ResNet-18 of width 8 (8-channel neck and heads), 8 scenes per step."""
  fields = dict(
      task="detection",
      dataset="mnist_scenes",
      data_dir=data_dir,
      image_size=64,
      # No RGB statistics: the ResNet stem reads the grey scenes as they are
      # (and predict must read image files as grey, not as the zoo's RGB).
      augment="flip_lr",
      model="centernet_resnet18",
      model_kwargs={"backbone_kwargs": (("width", 8),), "neck_features": 8, "head_features": 8},
      # Adam, as the experiment: the tiny config's SGD at 0.1 diverged on
      # CenterNet's summed focal loss within 3 steps.
      **{"optimizer.name": "adam", "optimizer.learning_rate": 1e-3, "optimizer.weight_decay": 0.0},
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
  return train_and_evaluate(detection_config(data_dir), str(workdir)), workdir


def test_detection_trains_and_resumes_bit_exactly(data_dir, trained, tmp_path):
  # A constant learning rate makes a 4-step run the first half of an 8-step one.
  reference, reference_dir = trained
  make_config = lambda **overrides: detection_config(data_dir, **overrides)
  assert_resumed_run_equals(make_config, reference, reference_dir, tmp_path / "split")
  assert set(coco_eval.STAT_NAMES) <= set(reference) and np.isfinite(reference["loss"])
  assert 0.0 <= reference["AP50"] <= 1.0
  saved = json.loads((reference_dir / "results.json").read_text())
  assert saved["AP"] == reference["AP"] and saved["step"] == 8
  # ...and read as a finished run's (by the trainer and the sweep), not as damaged.
  assert records.read_results(str(reference_dir)) == saved


def test_a_classification_model_is_refused_for_detection(data_dir, tmp_path):
  config = detection_config(data_dir, model="resnet18", model_kwargs={})
  with pytest.raises(
      ConfigError, match="predicts for config.task='classification', not 'detection'"
  ):
    train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_predict_prints_and_draws_a_runs_boxes(data_dir, trained, tmp_path, capsys):
  _, workdir = trained
  scene = np.asarray(sources.load("mnist_scenes", "test", data_dir)[0]["image"])
  path = tmp_path / "scene.png"
  Image.fromarray(scene[..., 0]).save(path)
  found = predict.predict_with_run(str(workdir), [str(path)])
  assert found.predictions.shape == (1, 100, 6) and found.class_names == [str(d) for d in range(10)]
  scores = found.predictions[0, :, 4]
  assert np.all(np.diff(scores) <= 0) and np.all((0 <= scores) & (scores <= 1))
  # Every box scoring at least the threshold is printed and drawn; 0 keeps all 100.
  predict._print_or_write(str(workdir), [str(path)], str(tmp_path / "out"), min_score=0.0)
  printed = capsys.readouterr().out
  assert f"{path}: 100 box(es)" in printed and printed.count(" at (") == 100
  with Image.open(tmp_path / "out" / "scene_boxes.png") as drawn:
    assert drawn.size == (256, 256) and drawn.mode == "RGB"
    assert len(np.unique(np.asarray(drawn).reshape(-1, 3), axis=0)) > 2  # boxes in colour


def test_the_gallery_draws_boxes_and_explains_the_top_detections_score(trained, tmp_path):
  _, workdir = trained
  run = trained_runs.load(str(workdir))
  ctx = methods.Context(run, 4, str(tmp_path), methods.Options())
  assert ctx.objects["boxes"].shape == (4, 100, 4) and ctx.objects["box_valid"][:, 0].all()
  # The score explained is the top detection's: its class, and its score is
  # the sigmoid of the logit that the methods differentiate.
  outputs = run.model.apply(run.variables, ctx.x, train=False)
  classes, rows, columns = ctx.labels.T
  images = np.arange(4)
  np.testing.assert_array_equal(classes, ctx.detections[:, 0, 5])
  logits = outputs[images, rows, columns, classes]
  np.testing.assert_allclose(jax.nn.sigmoid(logits), ctx.detections[:, 0, 4], rtol=1e-6)
  gradient = attribution.vanilla_gradient(run.model, run.variables, ctx.x, jnp.asarray(ctx.labels))
  direct = jax.grad(
      lambda x: run.model.apply(run.variables, x)[images, rows, columns, classes].sum()
  )(ctx.x)
  np.testing.assert_allclose(gradient, direct, rtol=1e-5, atol=1e-6)
  # Grad-CAM at the layer every head reads, on the gallery's page with the boxes.
  out = str(tmp_path / "gallery")
  for method in ("boxes", "gradcam"):
    index = make_gallery.make_gallery(method, workdir=str(workdir), out=out, images=4)
  page = open(index).read()
  assert "boxes.png" in page and "gradcam.png" in page and "layer neck_act" in page
  assert "top detection" in page
  with Image.open(tmp_path / "gallery" / "boxes.png") as drawn:
    colours = np.unique(np.asarray(drawn.convert("RGB")).reshape(-1, 3), axis=0)
    assert drawn.size[0] > 400 and len(colours) > 10
  with pytest.raises(UserError, match="--method=occlusion cannot show a detection run"):
    make_gallery.make_gallery("occlusion", workdir=str(workdir), out=out)


def test_two_hosts_of_two_devices_score_every_eval_scene_once(trained, tmp_path):
  # The finished run re-evaluated by 2 processes of 2 devices each: the 12
  # eval scenes come in batches of 8 (the last one padded), 2 per device, and
  # each host writes the detections of its own scenes; the metrics (and its
  # rewritten results.json) are the one-device run's only if every scene
  # counted once.
  reference, reference_dir = trained
  workdir = tmp_path / "run"
  shutil.copytree(reference_dir, workdir)
  (workdir / "results.json").unlink()
  config = tmp_path / "saved_config.py"
  config.write_text(
      "from cnn_jax.visualize import trained\n\n\n"
      f"def get_config():\n  return trained.run_config({str(workdir)!r})\n"
  )
  outputs = two_processes(
      ["-m", "cnn_jax.main", f"--config={config}", f"--workdir={workdir}"], tmp_path
  )
  assert "on 4 device(s)" in outputs[0][0]
  finals = [
      next(line for line in out.splitlines() if "of 2 finished at step 8" in line)
      for out, _ in outputs
  ]
  assert finals[0].split(":", 1)[1] == finals[1].split(":", 1)[1]
  rewritten = json.loads((workdir / "results.json").read_text())
  for name in [*coco_eval.STAT_NAMES, "loss"]:
    assert rewritten[name] == pytest.approx(reference[name], rel=1e-5, abs=1e-7), name
