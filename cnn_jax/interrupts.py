"""Ctrl-C for command-line runs: never swallowed, a stop within seconds, a second one at once.

Python turns SIGINT into a KeyboardInterrupt wherever the main thread happens
to be, and libraries catch it there: orbax's CheckpointManager catches every
BaseException while it waits for a background save (it logs "Save Finalize
thread failed" and carries on), and an exception raised inside a garbage
collection callback is reported and dropped. A run could then train on after
any number of Ctrl-Cs.

`install` (called by every CLI through `cnn_jax.cli.run`) replaces the
handler:

- The first Ctrl-C raises KeyboardInterrupt at once, unless the main thread is
  inside `deferred()` (orbax writing or reading a checkpoint), where it is held
  until the block ends. It is also remembered: `raise_if_requested()`, called
  between training steps, raises it again if a library swallowed it.
- A watchdog thread learns of every SIGINT from a wakeup file descriptor, which
  the interpreter writes to even while the main thread is inside a long C++
  call (XLA compiling a model) where no Python handler can run. At a second
  Ctrl-C, or when the process is still alive `grace_s` seconds after the first,
  it prints the one line and ends the process. Checkpoints are written to a
  temporary folder and renamed when complete, so a run ended there still
  resumes from its last complete checkpoint.

A process started by another of ours (a sweep's training runs) also stops
when that parent dies, even by kill -9: the parent names itself in
CNN_JAX_PARENT_PID, and the child then gets the SIGTERM a scheduler would send
(a training run saves a checkpoint and exits), instead of training on as an
orphan that holds its workdir's lock.

Outside a CLI (tests, notebooks) nothing is installed and these functions do
nothing.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from typing import Callable, Iterator

INTERRUPTED_MESSAGE = "interrupted (Ctrl-C); re-run the same command to go on"
INTERRUPTED_STATUS = 130  # 128 + SIGINT, as a shell reports a process ended by Ctrl-C
PARENT_PID_VARIABLE = "CNN_JAX_PARENT_PID"
# How often a child checks that its parent is alive: the delay of its stop.
_PARENT_CHECK_SECONDS = 0.5

_requested = False  # a Ctrl-C arrived
_delivered = False  # ... and a KeyboardInterrupt was raised for it at least once
_deferred_depth = 0  # > 0 while the main thread is inside deferred()
_exit_lock = threading.Lock()


def exit_once(message: str, status: int) -> None:
  """Prints `message` on stderr and ends the process at once, from any thread.

  The first caller wins: a second one (the watchdog and the main thread can
  both be on their way out) blocks until the process is gone.

  Args:
    message: the one line to print.
    status: the process's exit status.
  """
  _exit_lock.acquire()
  try:
    sys.stdout.flush()
  except Exception:  # a closed or broken stdout must not keep the process alive
    pass
  os.write(2, (message + "\n").encode())
  os._exit(status)


def _handle_sigint(signum, frame) -> None:
  del signum, frame
  global _requested, _delivered
  if _requested:
    return  # a second Ctrl-C: the watchdog ends the process
  _requested = True
  if _deferred_depth == 0:
    _delivered = True
    raise KeyboardInterrupt


@contextlib.contextmanager
def deferred() -> Iterator[None]:
  """Holds a Ctrl-C that arrives inside the block until the block ends.

  For calls into libraries that would swallow a KeyboardInterrupt or be left
  half-done by one (orbax's saves, waits and restores). The watchdog still
  ends the process after its grace period.
  """
  global _deferred_depth, _delivered
  _deferred_depth += 1
  try:
    yield
  finally:
    _deferred_depth -= 1
  if _deferred_depth == 0 and _requested and not _delivered:
    _delivered = True
    raise KeyboardInterrupt


def raise_if_requested() -> None:
  """Raises KeyboardInterrupt if a Ctrl-C arrived (again, if a library swallowed it).

  Called by long loops between units of work (training steps, eval batches).
  """
  global _delivered
  if _requested:
    _delivered = True
    raise KeyboardInterrupt


def requested() -> bool:
  """Whether a Ctrl-C arrived in this process."""
  return _requested


def _watch(read_fd: int, grace_s: float) -> None:
  """The watchdog thread: ends the process at a second Ctrl-C or after the grace."""
  count, timeout = 0, None
  while True:
    ready, _, _ = select.select([read_fd], [], [], timeout)
    if not ready:  # the grace period after the first Ctrl-C ran out
      exit_once(INTERRUPTED_MESSAGE, INTERRUPTED_STATUS)
    count += os.read(read_fd, 512).count(signal.SIGINT)
    if count >= 2:
      exit_once(INTERRUPTED_MESSAGE, INTERRUPTED_STATUS)
    if count == 1 and timeout is None:
      timeout = grace_s


def watch_parent(parent_pid: int, on_parent_death: Callable[[], None]) -> None:
  """Calls `on_parent_death` (in a thread) once `parent_pid` is no longer our parent.

  A parent death signal (prctl) would follow the thread that started the
  child, not the process, and Grain and the sweep start theirs from threads;
  a poll of the parent's pid follows the process.

  Args:
    parent_pid: the pid of the process that started this one.
    on_parent_death: what to do then (end the process, or ask it to stop).
  """

  def watch():
    while os.getppid() == parent_pid:
      time.sleep(_PARENT_CHECK_SECONDS)
    on_parent_death()

  threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def child_environment() -> dict[str, str]:
  """os.environ for a CLI child that must stop when this process dies (see module doc)."""
  return {**os.environ, PARENT_PID_VARIABLE: str(os.getpid())}


def _terminate_self() -> None:
  os.kill(os.getpid(), signal.SIGTERM)


def install(grace_s: float = 5.0) -> None:
  """Installs the Ctrl-C handling and the parent watch described in the module docstring.

  Call from the main thread of a command-line program, before its work.

  Args:
    grace_s: seconds after the first Ctrl-C before the process is ended
      even if it has not reached a point where it can stop by itself.
  """
  read_fd, write_fd = os.pipe()
  os.set_blocking(write_fd, False)  # the interpreter's signal handler must never block
  signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
  signal.signal(signal.SIGINT, _handle_sigint)
  threading.Thread(
      target=_watch, args=(read_fd, grace_s), name="ctrl-c-watchdog", daemon=True
  ).start()
  parent = os.environ.get(PARENT_PID_VARIABLE, "")
  if parent.isdigit():
    watch_parent(int(parent), _terminate_self)
