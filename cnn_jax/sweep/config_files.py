"""Config files as modules: what the sweep runner reads, and what a config builds on.

An experiment's config usually starts from a recipe in configs/:

    from cnn_jax.sweep import config_files

    def get_config():
      config = config_files.load_config("configs/default.py")
      config.eval_every_epochs = 4
      return config
"""

from __future__ import annotations

import importlib.util
import os
import re
import types

import ml_collections

from cnn_jax.sweep.hyper import SweepError

# The repository (cnn_jax/sweep/ is two levels below it), for paths such as "configs/default.py".
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_module(path: str) -> types.ModuleType:
  """Imports a config file by its path.

  Raises:
    SweepError: the file does not exist.
  """
  if not os.path.isfile(path):
    raise SweepError(f"config file {path} not found")
  spec = importlib.util.spec_from_file_location(
      "config_file_" + re.sub(r"\W", "_", os.path.abspath(path)), path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(path: str, arg: str = "") -> ml_collections.ConfigDict:
  """get_config([arg]) of a config file.

  Args:
    path: the file; a relative path is taken from the repository root, so
      that a config reads the same recipe whatever the working folder.
    arg: the argument of FILE.py:ARG, if the file takes one.

  Returns:
    The ConfigDict it builds.
  """
  if not os.path.isabs(path):
    path = os.path.join(REPO_ROOT, path)
  module = load_module(path)
  return module.get_config(arg) if arg else module.get_config()


def on_mnist_like(config: ml_collections.ConfigDict, dataset: str = "fashion_mnist",
                  image_size: int = 28) -> ml_collections.ConfigDict:
  """A digits recipe moved to MNIST or Fashion-MNIST (60,000 / 10,000 28x28 images).

  The images sit on the device (60,000 x 28 x 28 bytes), as the digits do:
  the Grain path shares the two cores with the step (experiments/benchmarks).

  Args:
    config: the recipe; changed in place.
    dataset: "mnist" or "fashion_mnist" (prepared offline on first use).
    image_size: 28 keeps the images as they are; other sizes resize them.

  Returns:
    The same config.
  """
  config.dataset = dataset
  config.image_size = image_size
  config.input_pipeline = "device"
  return config


def check_group(group: str, groups: tuple[str, ...]) -> None:
  """Refuses a FILE.py:ARG whose ARG is not one of the file's groups.

  Raises:
    SweepError: a one-line error naming the groups.
  """
  if group not in groups:
    raise SweepError(f"unknown group {group!r}; use one of {', '.join(groups)}")
