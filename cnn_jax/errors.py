"""The errors a user can fix: one base class and the kinds of mistake.

Every mistake in what a user asked for (a config, a model argument, a
dataset, a workdir, a weights file) raises a subclass of `UserError` whose
message names the problem and the fix. Every command line runs its main
through `cnn_jax.cli.run`, which prints such an error in one line and exits
non-zero; any other exception is a bug in cnn_jax and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
  """A request that cannot be carried out as given; the message says how to fix it."""

  def __str__(self) -> str:
    # KeyError subclasses would otherwise print their message quoted.
    return str(self.args[0]) if len(self.args) == 1 else super().__str__()


# What the user asked for.


class ArgumentError(UserError, ValueError):
  """A model, layer or augmentation argument that has no valid meaning."""


class ConfigError(UserError, ValueError):
  """A config that cannot run; the message names the field and the fix."""


class ConfigFileError(UserError):
  """A config file that cannot be imported or evaluated; the message names the file and line.

  Not a ValueError: absl's flag parsing would wrap it in a message of its own.
  """


class SweepError(UserError, ValueError):
  """A sweep definition, its config, or a curve or target of its results that is wrong."""


# The model.


class UnknownModelError(UserError, KeyError):
  """A model name that is not in the zoo."""


class UnknownLayerError(UserError, ValueError):
  """A layer name that the model does not have."""


class GeometryError(UserError, ValueError):
  """Layer hyper-parameters that do not fit the input size exactly."""


# Files and folders.


class DataError(UserError, ValueError):
  """A dataset that cannot be read as asked; the message says how to fix it."""


class ImageError(DataError):
  """An image file that cannot be decoded; the message names it and the fix.

  Attributes:
    path: the file (or what the bytes were called).
    reason: the cause in a few words ("UnidentifiedImageError: ..."), for
      lists of skipped files that name the file themselves.
  """

  def __init__(self, message: str, path: str, reason: str):
    super().__init__(message)
    self.path, self.reason = path, reason


class WorkdirError(UserError, ValueError):
  """A run's folder that cannot be used as asked: not writable, held by another
  run, or (for what reads a run) without a config or a readable checkpoint."""


class FolderError(UserError, ValueError):
  """An output folder that cannot be written; the message says why and what to do."""


class CheckpointError(UserError, RuntimeError):
  """No checkpoint of a workdir could be restored."""


class StateDictError(UserError, ValueError):
  """A file that is not a readable torch state dict."""


class WeightMismatchError(UserError, ValueError):
  """Weights that do not fit the model (pretrained or torchvision's); the message lists them."""


# A run.


class NonFiniteLossError(UserError, FloatingPointError):
  """The run diverged: its loss, gradient norm, parameters or eval loss became NaN or Inf."""
