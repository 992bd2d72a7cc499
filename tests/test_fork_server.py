"""The tests' fork server (tests/fork_server.py) runs programs as a fresh interpreter does."""

import os
import signal
import subprocess
import sys

import pytest

from helpers import ROOT, python

_SHOW = (
    "import json, os, signal, sys; print(json.dumps([sys.argv, os.getcwd(), sys.path[0], "
    "os.environ.get('FORK_TEST'), sys.stdin.read(), __name__, 'cnn_jax.main' in sys.modules, "
    "[str(signal.getsignal(n)) for n in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE)]]));"
    "print('to stderr', file=sys.stderr); sys.exit(3)"
)


def _both(args, **kwargs):
  """The same command through the interpreter and through the fork server."""
  return [
      subprocess.run([interpreter, *args], capture_output=True, text=True, timeout=120, **kwargs)
      for interpreter in (sys.executable, python())
  ]


@pytest.mark.parametrize(
    "args",
    [
        ["-c", _SHOW, "one", "two"],
        ["-m", "tests.scripts.show_argv", "one"],
        ["tests/scripts/show_argv.py", "one"],
        ["-X", "utf8", "-c", _SHOW],  # an interpreter option: a fresh interpreter
    ],
)
def test_a_program_sees_what_it_would_see_in_a_fresh_interpreter(args, tmp_path):
  fresh, forked = _both(
      args, cwd=ROOT, input="from stdin", env={**os.environ, "FORK_TEST": str(tmp_path)}
  )
  assert fresh.returncode == 3, fresh.stderr
  assert (forked.returncode, forked.stdout, forked.stderr) == (3, fresh.stdout, fresh.stderr)


def test_programs_start_with_the_libraries_imported_unless_that_would_show():
  unimported = "import sys; print('jax' in sys.modules)"
  assert [run.stdout for run in _both(["-c", unimported])] == ["False\n", "True\n"]
  # A program's own runs (a sweep's training runs) come back to the server,
  # in the environment that the server's imports left.
  nested = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {unimported!r}])"
  assert [run.stdout for run in _both(["-c", nested])] == ["False\n", "True\n"]
  code = "import jax, sys; print(jax.config.jax_enable_x64)"
  fresh, forked = _both(["-c", code], env={**os.environ, "JAX_ENABLE_X64": "1"})
  assert fresh.stdout == forked.stdout == "True\n", (fresh.stderr, forked.stderr)
  assert _both(["-X", "utf8", "-c", unimported])[1].stdout == "False\n"  # a fresh interpreter


def test_exceptions_and_signals_end_the_client_as_they_end_the_program():
  fresh, forked = _both(["-c", "raise ValueError('boom')"])
  assert forked.returncode == fresh.returncode == 1
  assert forked.stderr.strip().splitlines()[-1] == "ValueError: boom"
  killed = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
  assert [r.returncode for r in _both(["-c", killed])] == [-signal.SIGTERM] * 2


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_client_reaches_the_program(number):
  # Its own handler: a pytest-xdist worker's children inherit SIGINT ignored.
  waiting = (
      "import signal, time; signal.signal(signal.SIGINT, signal.default_int_handler); "
      "print('ready', flush=True); time.sleep(600)"
  )
  codes = []
  for interpreter in (sys.executable, python()):
    process = subprocess.Popen(
        [interpreter, "-c", waiting], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "ready\n"  # the event: the program runs
    process.send_signal(number)
    codes.append(process.wait(timeout=60))
    process.stdout.close()
    process.stderr.close()
  assert codes[1] == codes[0] == -number
