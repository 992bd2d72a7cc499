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


class ArgumentError(UserError, ValueError):
  """A model, layer or augmentation argument that has no valid meaning."""


class ConfigError(UserError, ValueError):
  """A config that cannot run; the message names the field and the fix."""


class WorkdirError(UserError, ValueError):
  """A run's folder that cannot be used as asked: not writable, held by another
  run, or (for what reads a run) without a config or a readable checkpoint."""
