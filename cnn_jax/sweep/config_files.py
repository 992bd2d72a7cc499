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
import inspect
import os
import re
import traceback
import types
from typing import Any, Callable

import ml_collections

from cnn_jax.errors import ConfigFileError, UserError
from cnn_jax.sweep.hyper import SweepError

# The repository (cnn_jax/sweep/ is two levels below it), for paths such as "configs/default.py".
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _in_cnn_jax(error: BaseException) -> bool:
  """Whether an exception was raised inside cnn_jax's own code (a bug, not the file's)."""
  frames = traceback.extract_tb(error.__traceback__)
  return bool(frames) and os.path.abspath(frames[-1].filename).startswith(_PACKAGE + os.sep)


def _line(error: BaseException, path: str) -> int | None:
  """The line of the config file where the error arose (its innermost frame there)."""
  if isinstance(error, SyntaxError) and error.lineno:
    return error.lineno
  target = os.path.abspath(path)
  lines = [
      f.lineno
      for f in traceback.extract_tb(error.__traceback__)
      if os.path.abspath(f.filename) == target
  ]
  return lines[-1] if lines else None


def file_error(path: str, error: Exception) -> ConfigFileError:
  """The one-line error for an exception raised while loading a config file.

  Args:
    path: the config file, as the user gave it.
    error: what importing it or calling its functions raised.

  Returns:
    `cannot load the config file FILE (ExcType: message at line N); fix the file`.

  Raises:
    the error itself, when it is a bug in cnn_jax rather than a mistake in
    the file: an exception that is not a UserError, raised inside cnn_jax.
  """
  if isinstance(error, ConfigFileError):  # a file that this one loads: that one is named
    return error
  if _in_cnn_jax(error) and not isinstance(error, UserError):
    raise error
  if isinstance(error, SyntaxError):
    where = error.filename or path
    message = f"syntax error in {where}, line {error.lineno}: {error.msg}"
  else:
    # ml_collections' AttributeError quotes a KeyError's quoted name: "'field'".
    message = " ".join(str(error).split()).strip('"') or "no message"
    line = _line(error, path)
    message += f" at line {line}" if line else ""
  # A UserError (e.g. an unknown FILE.py:ARG group) already says what to fix.
  fix = "" if isinstance(error, UserError) else "; fix the file"
  return ConfigFileError(
      f"cannot load the config file {path} ({type(error).__name__}: " f"{message}){fix}"
  )


def load_module(path: str) -> types.ModuleType:
  """Imports a config file by its path.

  Raises:
    ConfigFileError: the file does not exist, or importing it raised (a
      syntax error, a name that moved, ...), with the file, the error and its line.
  """
  if not os.path.isfile(path):
    raise ConfigFileError(
        f"cannot load the config file {path} (no such file); give the path "
        "of a configs/*.py file"
    )
  spec = importlib.util.spec_from_file_location(
      "config_file_" + re.sub(r"\W", "_", os.path.abspath(path)), path
  )
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # the file's own code: any mistake in it
    raise file_error(path, e) from e
  return module


def call(path: str, function: Callable[..., Any], *args: Any) -> Any:
  """`function(*args)` of a config file (get_config, get_sweep), its errors in one line.

  Raises:
    ConfigFileError: whatever the function raised, with the file and the line.
  """
  try:
    inspect.signature(function).bind(*args)
  except TypeError:  # FILE.py:ARG for a function without an argument, or the reverse
    given = f"the argument {args[-1]!r}" if args else "no argument"
    raise ConfigFileError(
        f"cannot load the config file {path} ({function.__name__}{inspect.signature(function)} "
        f"is called with {given}); add or drop the :ARG after the file name, or fix the "
        "function's parameters"
    ) from None
  try:
    return function(*args)
  except Exception as e:  # the file's own code: any mistake in it
    raise file_error(path, e) from e


def config_of(module: types.ModuleType, path: str, arg: str = "") -> Any:
  """get_config([arg]) of a config file's module (from `load_module(path)`).

  Raises:
    ConfigFileError: it has no get_config, or get_config raised.
  """
  if not callable(getattr(module, "get_config", None)):
    raise ConfigFileError(
        f"the config file {path} defines no get_config(); add one that "
        "returns the config (see configs/default.py)"
    )
  return call(path, module.get_config, *([arg] if arg else []))


def get_config(path: str, arg: str = "") -> Any:
  """get_config([arg]) of the config file at `path` (relative to the working folder).

  Raises:
    ConfigFileError: the file cannot be loaded, or has no get_config.
  """
  return config_of(load_module(path), path, arg)


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
  return get_config(path, arg)


def on_mnist_like(
    config: ml_collections.ConfigDict, dataset: str = "fashion_mnist", image_size: int = 28
) -> ml_collections.ConfigDict:
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


def on_digit_scenes(config: ml_collections.ConfigDict, steps: int) -> ml_collections.ConfigDict:
  """The recipe of the experiments on mnist_scenes (64x64): Adam 1e-3, cosine decay, batch 32.

  Lite0's normalization (mean 0.5, std 0.5 per channel) makes the grey scenes
  the 3-channel input that its ImageNet stem expects; all 2,000 test scenes
  are scored 3 times, and the run is checkpointed at its end.

  Args:
    config: the run's config (its task and model set); changed in place.
    steps: the training steps (of 32 scenes).

  Returns:
    The config.
  """
  # Imported here: it imports JAX and Flax (seconds), which reading configs does not need.
  from cnn_jax.transfer.imagenet_weights import pixel_normalization

  config.dataset = "mnist_scenes"
  config.image_size = 64
  config.input_pipeline = "device"
  config.augment = ""
  config.batch_size = 32
  config.eval_batch_size = 250
  config.num_train_steps = steps
  config.eval_every_steps = steps // 3
  config.log_every_steps = steps // 20
  config.checkpoint_every_steps = steps
  config.mean, config.std = pixel_normalization("efficientnet_lite0")
  config.optimizer = dict(name="adam", learning_rate=1e-3, weight_decay=0.0)
  config.schedule = dict(name="cosine", warmup_steps=steps // 20)
  return config


def check_group(group: str, groups: tuple[str, ...]) -> None:
  """Refuses a FILE.py:ARG whose ARG is not one of the file's groups.

  Raises:
    SweepError: a one-line error naming the groups.
  """
  if group not in groups:
    raise SweepError(f"unknown group {group!r}; use one of {', '.join(groups)}")
