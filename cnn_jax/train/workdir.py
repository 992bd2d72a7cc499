"""One run owns its workdir: checks of the --workdir path and the lock.

The lock is an advisory `flock` on the workdir folder itself, so taking it
writes nothing (a rejected command leaves the folder byte-identical) and a
process killed with -9 releases it with its file descriptors. Process 0 of
a multi-process run takes it for all of them. Who holds it is read from the
holder's environment.json (host, pid), written once its checks passed.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket

import jax
import numpy as np
from jax.experimental import multihost_utils

from cnn_jax import folders
from cnn_jax.errors import WorkdirError


def check_path(workdir: str) -> str:
  """The absolute workdir path, or WorkdirError for one no run can use.

  Args:
    workdir: the --workdir value.

  Returns:
    Its absolute path (the folder may not exist yet).
  """
  if not workdir or not workdir.strip():
    raise WorkdirError(
        "--workdir is empty; give the folder for this run, e.g. " "--workdir=/tmp/my_run"
    )
  return folders.writable_folder(workdir, "--workdir", WorkdirError)


def _holder(path: str) -> str:
  """Who holds the lock, as far as the holder's environment.json says."""
  try:
    with open(os.path.join(path, "environment.json")) as f:
      info = json.load(f)
    info = (info.get("resumes") or [info])[-1]  # the newest invocation
    host, pid = info["host"], int(info["pid"])
  except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
    return "another process"
  if host == socket.gethostname():
    try:
      os.kill(pid, 0)
    except ProcessLookupError:
      return "another process (still starting)"
    except PermissionError:
      pass
  return f"pid {pid} on host {host}"


class WorkdirLock:
  """Holds the workdir for this run until `release` (or the process ends).

  Args:
    path: the workdir (from `check_path`); created if missing.

  Raises:
    WorkdirError: when another run holds the workdir.
  """

  def __init__(self, path: str):
    self.path = path
    self._fd = None
    message = ""
    if jax.process_index() == 0:
      os.makedirs(path, exist_ok=True)
      self._fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
      try:
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        os.close(self._fd)
        self._fd = None
        message = (
            f"--workdir={path} is in use by another run ({_holder(path)}); wait for "
            "it to finish, stop it, or use another --workdir"
        )
    held = self._fd is not None
    if jax.process_count() > 1:  # every process of the run stops if process 0 could not lock
      held = bool(multihost_utils.broadcast_one_to_all(np.array(held)))
    if not held:
      raise WorkdirError(
          message
          or f"--workdir={path} is in use by another run (see "
          "process 0's message); use another --workdir"
      )

  def release(self) -> None:
    """Lets the workdir go (also when the process ends, however it ends)."""
    if self._fd is not None:
      os.close(self._fd)  # closing the descriptor drops the flock
      self._fd = None

  def __enter__(self) -> "WorkdirLock":
    return self

  def __exit__(self, *exc) -> None:
    self.release()
