"""A fork server for the tests' command-line runs: each `python -m cnn_jax...`
starts from a process that has imported JAX, Flax, Orbax and TFDS already.

Most of the suite's time is command-line runs (training runs, sweeps and
their runs, experiment scripts), and each spent seconds importing before its
work. The server imports the libraries behind our command-line programs once,
without starting JAX's backend (so forking is safe: XLA flags, devices and
compilation all happen in the child), and forks one child per run.

`python()` returns the path of a small client program that stands in for the
interpreter: `subprocess.run([python(), "-m", "cnn_jax.main", ...])` behaves
as with sys.executable. The child gets the client's argv, working directory,
environment and stdin/stdout/stderr; the client exits with the child's status
(or dies of its signal), forwards SIGINT and SIGTERM to it, and the child is
killed if the client dies. Runs that the child starts itself (a sweep's
training runs) go through the server too.

A request that a fork cannot serve as a fresh interpreter would (interpreter
options such as -X, or an environment that differs from the server's in a
variable read at import time) runs a fresh interpreter in the child instead.
Tests of what happens when a parent dies or a run is SIGKILLed use
sys.executable: there the process itself, not a client, must be signalled.
"""

import atexit
import dataclasses
import importlib
import json
import os
import random
import runpy
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import types

# The libraries behind the command-line programs (cnn_jax.main, the sweep,
# predict, visualize, benchmark, summary, prepare), not the programs: their
# modules define absl flags when run.
PRELOAD = (
    "ml_collections.config_flags",
    "matplotlib.pyplot",
    "cnn_jax.train",
    "cnn_jax.sweep.run_and_tabulate",
    "cnn_jax.visualize.make_gallery",
    "cnn_jax.visualize.methods",
    "cnn_jax.data.imagenet",
    "cnn_jax.data.preparation",
    "cnn_jax.transfer.imagenet_weights",
    "cnn_jax.train.throughput",
    "cnn_jax.summary",
)

# Variables that the interpreter or the preloaded libraries read when they are
# imported; a request whose values differ runs a fresh interpreter.
_IMPORT_TIME_PREFIXES = (
    "JAX_",
    "TF_",
    "TFDS_",
    "PYTHON",
    "LD_",
    "OMP_",
    "OPENBLAS_",
    "MKL_",
    "MPL",
    "HOME",
    "TMP",
    "TEMP",
)
# Forwarded by the client; their dispositions are the client's (inherited), as
# in a fresh interpreter.
_SIGNALS = tuple(
    int(s)
    for s in (
        signal.SIGINT,
        signal.SIGTERM,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGALRM,
    )
)
_PARENT_PID = "CNN_JAX_PARENT_PID"  # cnn_jax.interrupts: the run watches that pid
_STATUS_BYTES = 8


@dataclasses.dataclass
class _Preloaded:
  """What importing PRELOAD did that a fresh interpreter's imports would do again."""

  stdout: bytes
  stderr: bytes
  environment_before: dict[str, str]  # the server's environment before the imports
  environment_changes: dict[str, str]  # the variables the imports set


def _import_time_environment(environment: dict[str, str], preloaded: _Preloaded) -> dict:
  """The variables of `environment` that importing PRELOAD reads or sets."""
  return {
      k: v
      for k, v in environment.items()
      if k.startswith(_IMPORT_TIME_PREFIXES) or k in preloaded.environment_changes
  }


# ----------------------------------------------------------------------------- the client

_CLIENT = r"""#!{python} -S
import json, os, signal, socket, sys
connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
connection.connect({socket_path!r})
# A fresh interpreter keeps the signals its parent ignores ignored.
ignored = [n for n in {signals} if signal.getsignal(n) == signal.SIG_IGN]
request = dict(argv=sys.argv[1:], cwd=os.getcwd(), env=dict(os.environ), ppid=os.getppid())
request = json.dumps(dict(request, ignored=ignored)).encode()
socket.send_fds(connection, [len(request).to_bytes(8, "big")], [0, 1, 2])
connection.sendall(request)

def receive(size):
  data = b""
  while len(data) < size:
    chunk = connection.recv(size - len(data))
    if not chunk:
      sys.exit("fork server: the server went away")
    data += chunk
  return int.from_bytes(data, "big")

pid = receive(8)
for number in {signals}:
  signal.signal(number, lambda number, frame: os.kill(pid, number))
status = receive(8)
if os.WIFSIGNALED(status):
  signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
  os.kill(os.getpid(), os.WTERMSIG(status))
sys.exit(os.waitstatus_to_exitcode(status))
"""


# ----------------------------------------------------------------------------- the server


def _receive_request(connection: socket.socket) -> tuple[dict, list[int]]:
  header, fds, _, _ = socket.recv_fds(connection, 8, 3)
  size = int.from_bytes(header, "big")
  payload = b""
  while len(payload) < size:
    payload += connection.recv(size - len(payload))
  return json.loads(payload), fds


def _forkable(argv: list[str], environment: dict[str, str], preloaded: _Preloaded) -> bool:
  """Whether a fork of this server runs `python *argv` as a fresh interpreter would."""
  if not argv or (argv[0].startswith("-") and argv[0] not in ("-m", "-c")):
    return False
  if argv[0] in ("-m", "-c") and len(argv) < 2:
    return False
  # Either as the server started, or as its imports left it (a run started by
  # a forked program): importing again would set the same values.
  after = {**preloaded.environment_before, **preloaded.environment_changes}
  return _import_time_environment(environment, preloaded) in (
      _import_time_environment(preloaded.environment_before, preloaded),
      _import_time_environment(after, preloaded),
  )


def _run_program(argv: list[str]) -> None:
  """Runs `python *argv` in this process, as the interpreter's main program."""
  if argv[0] == "-m":
    sys.argv = [argv[1], *argv[2:]]  # runpy puts the module's file in sys.argv[0]
    sys.path[0] = os.getcwd()
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
  elif argv[0] == "-c":
    sys.argv = ["-c", *argv[2:]]
    sys.path[0] = ""
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    exec(compile(argv[1], "<string>", "exec"), main.__dict__)
  else:
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
    runpy.run_path(argv[0], run_name="__main__")


def _become_program(
    request: dict, fds: list[int], client_path: str, server_files, preloaded: _Preloaded
) -> None:
  """In the forked child: takes over the client's files and environment, then runs.

  Args:
    request: the client's argv, cwd, env and ppid.
    fds: the client's stdin, stdout and stderr.
    client_path: the client program (the child's sys.executable).
    server_files: the server's sockets, selector and pipes, closed here.
    preloaded: what importing PRELOAD did: the child writes the imports'
      output first and sets the variables they set, as a fresh interpreter's
      imports would have.
  """
  for file in server_files:
    file.close() if hasattr(file, "close") else os.close(file)
  for target, fd in enumerate(fds):
    os.dup2(fd, target)
    os.close(fd)
  os.chdir(request["cwd"])
  environment = dict(request["env"])
  if environment.get(_PARENT_PID) == str(request["ppid"]):
    # The client's parent started this run; the child's own parent is the
    # server, which kills it when the client dies.
    environment[_PARENT_PID] = str(os.getppid())
  if not _forkable(request["argv"], environment, preloaded):
    os.execve(sys.executable, [sys.executable, *request["argv"]], environment)
  for fd, output in zip((1, 2), (preloaded.stdout, preloaded.stderr)):
    os.write(fd, output)
  os.environ.clear()
  os.environ.update({**environment, **preloaded.environment_changes})
  random.seed()  # a fresh interpreter seeds from the system
  sys.executable = client_path  # runs this program starts come back here
  for number in _SIGNALS:
    default = signal.default_int_handler if number == signal.SIGINT else signal.SIG_DFL
    signal.signal(number, signal.SIG_IGN if number in request["ignored"] else default)
  _run_program(request["argv"])
  # A normal end of the program: the interpreter exits as it would have
  # (non-daemon threads joined, atexit handlers run, buffers flushed).
  sys.exit(0)


def _preload() -> _Preloaded:
  """Imports PRELOAD; returns what the imports wrote and which variables they set."""
  environment_before = dict(os.environ)
  saved = [os.dup(1), os.dup(2)]
  captured = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
  for fd, file in zip((1, 2), captured):
    os.dup2(file.fileno(), fd)
  for name in PRELOAD:
    importlib.import_module(name)
  sys.stdout.flush()
  sys.stderr.flush()
  for fd, copy in zip((1, 2), saved):
    os.dup2(copy, fd)
    os.close(copy)
  output = []
  for file in captured:
    file.seek(0)
    output.append(file.read())
    file.close()
  changes = {k: v for k, v in os.environ.items() if environment_before.get(k) != v}
  return _Preloaded(output[0], output[1], environment_before, changes)


def serve(socket_path: str, client_path: str) -> None:
  """Imports PRELOAD, then serves requests until stdin closes (its parent ended)."""
  preloaded = _preload()
  listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  listener.bind(socket_path)
  listener.listen(64)
  selector = selectors.DefaultSelector()
  selector.register(listener, selectors.EVENT_READ, ("accept",))
  selector.register(0, selectors.EVENT_READ, ("parent",))
  print("ready", flush=True)
  children = {}  # pid -> its client's connection (None once the client is gone)
  while True:
    for key, _ in selector.select():
      kind, *data = key.data
      if kind == "parent" and not os.read(0, 1):
        for pid in children:
          _kill(pid)
        return
      if kind == "accept":
        connection, _ = listener.accept()
        request, fds = _receive_request(connection)
        pid = os.fork()
        if pid == 0:
          server_files = [k.fileobj for k in selector.get_map().values()]
          files = [*server_files, connection, selector]
          _become_program(request, fds, client_path, files, preloaded)
        for fd in fds:
          os.close(fd)
        connection.sendall(pid.to_bytes(_STATUS_BYTES, "big"))
        children[pid] = connection
        selector.register(os.pidfd_open(pid), selectors.EVENT_READ, ("exit", pid))
        selector.register(connection, selectors.EVENT_READ, ("client", pid))
      if kind == "client":  # the client never writes after its request: it is gone
        (pid,) = data
        selector.unregister(key.fileobj)
        key.fileobj.close()
        children[pid] = None
        _kill(pid)
      if kind == "exit":
        (pid,) = data
        _, status = os.waitpid(pid, 0)
        selector.unregister(key.fileobj)
        os.close(key.fileobj)
        connection = children.pop(pid)
        if connection is not None:
          selector.unregister(connection)
          try:
            connection.sendall(status.to_bytes(_STATUS_BYTES, "big"))
          except OSError:
            pass  # the client died as the child ended
          connection.close()


def _kill(pid: int) -> None:
  try:
    os.kill(pid, signal.SIGKILL)
  except ProcessLookupError:
    pass


# ----------------------------------------------------------------------------- the tests' side

_client_path = None


def python() -> str:
  """The client's path, to use in place of sys.executable (starts the server once)."""
  global _client_path
  if _client_path is None:
    folder = tempfile.mkdtemp(prefix="cnn_jax_fork_server_")
    if len(folder) > 90:  # a socket's path has at most 107 bytes; mkdtemp's folder is 0700
      folder = tempfile.mkdtemp(prefix="cnn_jax_fork_server_", dir="/tmp")
    socket_path = os.path.join(folder, "socket")
    client_path = os.path.join(folder, "python")
    with open(client_path, "w") as f:
      f.write(_CLIENT.format(python=sys.executable, socket_path=socket_path, signals=_SIGNALS))
    os.chmod(client_path, 0o755)
    server = subprocess.Popen(
        [sys.executable, __file__, socket_path, client_path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    ready = server.stdout.readline()  # the event: the server has imported and listens
    if ready.strip() != "ready":
      raise RuntimeError(f"the fork server did not start (exit status {server.wait()})")
    atexit.register(server.stdin.close)  # the server ends when its stdin closes
    _client_path = client_path
  return _client_path


if __name__ == "__main__":
  serve(*sys.argv[1:3])
