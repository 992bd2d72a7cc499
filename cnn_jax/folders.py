"""Output folders a command was asked to write, checked before anything is computed.

A command that computes for minutes and then finds its --out or --workdir
unusable wastes the minutes, and may have written half of its output; every
CLI checks the folder first, with `writable_folder`.
"""

from __future__ import annotations

import os

from cnn_jax.errors import FolderError, UserError


def writable_folder(path: str, flag: str, error: type[UserError] = FolderError) -> str:
  """The absolute path of a folder a command may create or write into.

  Args:
    path: the flag's value (the folder may not exist yet).
    flag: how errors name it, e.g. "--out".
    error: the UserError subclass to raise.

  Returns:
    The absolute path.

  Raises:
    error: when the path is a file, lies below a file, or the nearest
      existing folder above it is not writable.
  """
  absolute = os.path.abspath(path)
  if os.path.exists(absolute) and not os.path.isdir(absolute):
    raise error(f"{flag}={path} is a file, not a folder; give a new or existing folder")
  parent = absolute
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise error(
        f"{flag}={path} lies below the file {parent}, not a folder; give a new or "
        "existing folder"
    )
  if not os.access(parent, os.W_OK | os.X_OK):
    raise error(
        f"cannot write to {flag}={path} ({parent} is not writable); use a folder "
        "you can write to"
    )
  return absolute
