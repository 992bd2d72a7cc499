"""How every command line runs: flags parsed, user errors printed in one line.

`run(main)` is `absl.app.run(main)` for cnn_jax's CLIs: a `UserError`
(cnn_jax.errors), a mistake in a flag or config file, Ctrl-C (see
cnn_jax.interrupts), a full disk or a folder without write permission each
print one line to stderr and exit non-zero; anything else keeps its
traceback. Library leftovers of a failure (orbax's pending reads, log
records with tracebacks) are kept from printing after the line.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any, Callable, Sequence

from absl import app, flags, logging

from cnn_jax import interrupts
from cnn_jax.errors import UserError

# OS errors a user can fix on their side (space, permissions), reported in
# one line; other OS errors are unexpected and keep their traceback.
_USER_OS_ERRORS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only",
}


def os_error_message(error: OSError) -> str | None:
  """One line for an OSError a user can fix (disk full, no permission), else None."""
  problem = _USER_OS_ERRORS.get(error.errno)
  if problem is None:
    return None
  where = f" writing {error.filename}" if error.filename else ""
  fix = (
      "free some space (or use a --workdir on another disk) and re-run: "
      "a run resumes from its last complete checkpoint"
      if error.errno in (errno.ENOSPC, errno.EDQUOT)
      else "use a folder you can write to"
  )
  return f"{problem}{where}; {fix}"


def user_os_error(error: BaseException) -> OSError | None:
  """The user-fixable OSError behind an exception (orbax and others wrap them), or None."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in _USER_OS_ERRORS:
      return error
    # TensorStore (under orbax) reports a full disk as a ValueError's text.
    for code in _USER_OS_ERRORS:
      if os.strerror(code) in str(error):
        return OSError(code, os.strerror(code))
    error = error.__cause__ or error.__context__
  return None


def _config_file_message(error: BaseException) -> str | None:
  """One line for a mistake found while parsing flags (config file or override)."""
  if isinstance(error, UserError):  # e.g. a config file that cannot be loaded
    return str(error)
  if isinstance(error, flags.Error):
    return f"{error}; see --helpfull for the flags"
  if isinstance(error, KeyError):  # ml_collections' unknown key, with its "did you mean"
    message = " ".join(str(error.args[0]).split("\n"))
    return f"unknown config field {message}; list the fields with --config=FILE --helpfull"
  if isinstance(error, OSError):  # the config file itself
    return (
        f"cannot read the config file ({error.strerror or error}: "
        f"{error.filename}); give the path of a configs/*.py file"
    )
  if isinstance(error, AttributeError):
    return f"unknown config field {error}; check the field names in the config file"
  if isinstance(error, (TypeError, ValueError)):
    return f"bad config override: {error}"
  return None


def _parse_flags(argv: Sequence[str]) -> list[str]:
  try:
    remaining = flags.FLAGS(argv)
  except Exception as e:  # config files run user code: classify, or re-raise
    message = _config_file_message(e)
    if message is None:
      raise
    sys.exit(f"error: {message}")
  # Orbax, TFDS and JAX log every file and backend they touch at INFO; a user
  # of the command line needs the progress and the problems.
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  logging.get_absl_handler().addFilter(_without_user_os_errors)
  return remaining


def _without_user_os_errors(record) -> bool:
  """Drops library log records that carry a full-disk or permission traceback.

  Orbax logs the failure of a background save with its whole traceback
  before the error reaches the CLI, which then reports it in one line.
  """
  return not (
      record.exc_info
      and record.exc_info[1] is not None
      and user_os_error(record.exc_info[1]) is not None
  )


def _exit_now(message: str, status: int) -> None:
  """Prints the one line and ends the process at once.

  Every file the command owns was closed on the way here (finally blocks);
  skipping the interpreter's shutdown keeps library threads left over from
  the failure (orbax's pending reads after a checkpoint that does not fit
  the config) from printing tracebacks after the line.
  """
  interrupts.exit_once(message, status)


def _report(main: Callable[[list[str]], Any]) -> Callable[[list[str]], Any]:
  def guarded(argv: list[str]) -> Any:
    try:
      return main(argv)
    except UserError as e:
      _exit_now(f"error: {e}", 1)
    except KeyboardInterrupt:
      _exit_now(interrupts.INTERRUPTED_MESSAGE, interrupts.INTERRUPTED_STATUS)
    except Exception as e:
      os_error = user_os_error(e)
      if os_error is None:
        raise
      sys.exit(f"error: {os_error_message(os_error)}")

  return guarded


def _drop_orbax_leftovers(unraisable) -> None:
  """sys.unraisablehook that hides what a failed orbax save or restore leaves behind.

  Restoring a checkpoint into a config it does not fit fails (one line:
  CheckpointError), and the read coroutines still pending are then garbage
  collected with an "Exception ignored" traceback of their own. A save that
  fails (a full disk) closes orbax's event loop while TensorStore still
  finishes the other writes; each then reports "Event loop is closed" from
  a C++ thread, before the failure reaches the one-line report. A Ctrl-C
  that lands in a garbage collection callback is dropped there too; the
  Ctrl-C handling remembers it and raises it again (cnn_jax.interrupts).
  """
  if unraisable.exc_type is KeyboardInterrupt and interrupts.requested():
    return
  code = getattr(unraisable.object, "cr_code", None)
  if code is not None and "/orbax/" in code.co_filename:
    return
  trace = unraisable.exc_traceback
  if (
      unraisable.exc_type is RuntimeError
      and str(unraisable.exc_value) == "Event loop is closed"
      and trace is not None
      and trace.tb_frame.f_code.co_name == "call_soon_threadsafe"
  ):
    return
  sys.__unraisablehook__(unraisable)


def run(main: Callable[[list[str]], Any], ctrl_c_grace_s: float = 5.0) -> None:
  """`absl.app.run(main)` with user errors printed in one line.

  A `UserError`, a mistake in a flag or config file, Ctrl-C, a full disk or
  a folder without write permission each print one line to stderr and exit
  non-zero (130 for Ctrl-C); anything else keeps its traceback.

  Args:
    main: the CLI's main(argv).
    ctrl_c_grace_s: how long after a Ctrl-C the process may take to stop by
      itself before it is ended (see cnn_jax.interrupts); a second Ctrl-C
      ends it at once.
  """
  sys.unraisablehook = _drop_orbax_leftovers
  interrupts.install(ctrl_c_grace_s)
  app.run(_report(main), flags_parser=_parse_flags)
