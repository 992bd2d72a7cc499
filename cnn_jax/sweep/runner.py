"""Running a sweep: the runs a config file's `get_sweep` defines, each a training command.

Each run is `python -m cnn_jax.main --config=FILE --workdir=ROOT/<name>
--config.key=value ...`, named from its overrides ("learning_rate=0.001,
seed=1"), with its output in ROOT/logs/<name>.txt. A run whose results.json
exists (and is intact) is not run again; an interrupted one resumes from its checkpoints (the
trainer does that), so re-running the sweep command finishes a sweep. A
failed run is recorded with the end of its log and the sweep goes on.
The tables and plots of the outcomes are `cnn_jax.sweep.tables`'.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import difflib
import fcntl
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import threading
from typing import Any, Sequence

from cnn_jax import interrupts, records
from cnn_jax.sweep import config_files, hyper
from cnn_jax.sweep.hyper import Overrides, SweepError

_LOG_TAIL_LINES = 15
_SEED = "seed"


def is_seed(key: str) -> bool:
  """Whether an override key is the seed (runs differing only in it form one setting)."""
  return key.rsplit(".", 1)[-1] == _SEED


@dataclasses.dataclass
class Run:
  """One training run of a sweep."""

  name: str
  overrides: Overrides
  workdir: str
  log_path: str
  command: list[str]


@dataclasses.dataclass
class Outcome:
  """What became of a run.

  status: "ok", "ok (earlier)" (results.json was there), "failed",
  "interrupted" or "not started" (the sweep was stopped).
  """

  run: Run
  status: str
  results: dict[str, Any] = dataclasses.field(default_factory=dict)
  log_tail: str = ""


def load_sweep(config_spec: str) -> tuple[str, list[Overrides]]:
  """The config file and the runs its get_sweep defines, checked against its config.

  Args:
    config_spec: "FILE.py" or "FILE.py:ARG".

  Returns:
    (the config spec, as given, the list of override dicts).

  Raises:
    ConfigFileError: the file is missing or cannot be loaded (one line: the
      file, the error and its line).
    SweepError: a missing get_sweep, an empty sweep, a key that is not a
      config field, or two identical runs.
  """
  path, _, arg = config_spec.partition(":")
  module = config_files.load_module(path)
  if not hasattr(module, "get_sweep"):
    raise SweepError(f"{path} defines no get_sweep(h); add one (see cnn_jax/sweep/__main__.py)")
  takes_arg = len(inspect.signature(module.get_sweep).parameters) > 1
  runs = config_files.call(path, module.get_sweep, hyper, *([arg] if takes_arg else []))
  if not runs or not all(isinstance(r, dict) for r in runs):
    raise SweepError(f"get_sweep of {path} must return a non-empty list of override dicts")
  config = config_files.config_of(module, path, arg)
  for key in dict.fromkeys(k for r in runs for k in r):
    _check_field(config, key, path)
  names = [json.dumps(r, sort_keys=True, default=str) for r in runs]
  if len(set(names)) < len(names):
    raise SweepError(f"get_sweep of {path} lists the same run twice")
  return config_spec, runs


def _check_field(config, key: str, path: str) -> None:
  node = config
  parts = key.split(".")
  for depth, part in enumerate(parts):
    fields = list(node.keys()) if hasattr(node, "keys") else []
    if part not in fields:
      where = ".".join(parts[:depth]) or "the config"
      close = difflib.get_close_matches(part, fields, n=1)
      hint = f"; did you mean {'.'.join(parts[:depth] + close)!r}?" if close else ""
      raise SweepError(f"sweep key {key!r}: {where} in {path} has no field {part!r}{hint}")
    node = node[part]


def format_value(value: Any) -> str:
  """A value as it goes on the command line (and, shortened, into run names)."""
  if isinstance(value, float):
    return format(value, "g")
  if isinstance(value, (list, tuple)):
    return repr(tuple(value))
  return str(value)


def _name_value(value: Any) -> str:
  # (1, 1, 1) -> 1-1-1: commas separate the keys of a run's name.
  if isinstance(value, (list, tuple)):
    return "-".join(format_value(v) for v in value)
  return format_value(value)


def run_names(runs: Sequence[Overrides]) -> list[str]:
  """Folder names from the overrides, e.g. "learning_rate=0.001,seed=1".

  A key is named by its last part unless two keys of the sweep share it.
  """
  keys = list(dict.fromkeys(k for r in runs for k in r))
  last = [k.rsplit(".", 1)[-1] for k in keys]
  label = {k: (short if last.count(short) == 1 else k) for k, short in zip(keys, last)}
  names = []
  for run in runs:
    name = ",".join(f"{label[k]}={_name_value(v)}" for k, v in run.items()) or "base"
    name = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", name)
    names.append(name if name not in names else f"{name},{len(names)}")
  return names


def make_runs(
    config_spec: str, runs: Sequence[Overrides], root: str, common: Sequence[str] = ()
) -> list[Run]:
  """The commands of the sweep's runs.

  Args:
    config_spec: "FILE.py[:ARG]".
    runs: the override dicts.
    root: the sweep's folder.
    common: "key=value" overrides for every run.

  Returns:
    One Run per override dict.
  """
  root = os.path.abspath(root)
  result = []
  for name, overrides in zip(run_names(runs), runs):
    workdir = os.path.join(root, name)
    command = [
        sys.executable,
        "-m",
        "cnn_jax.main",
        f"--config={config_spec}",
        f"--workdir={workdir}",
    ]
    command += [f"--config.{k}={format_value(v)}" for k, v in overrides.items()]
    command += [f"--config.{c}" for c in common]
    result.append(
        Run(name, dict(overrides), workdir, os.path.join(root, "logs", name + ".txt"), command)
    )
  return result


def _read_results(run: Run) -> dict[str, Any] | None:
  # None for a missing or damaged results.json: the run is then run again,
  # and the trainer re-evaluates a finished run and writes its results anew.
  return records.read_results(run.workdir)


def _tail(path: str) -> str:
  try:
    with open(path, errors="replace") as f:
      lines = [line.rstrip() for line in f.read().replace("\r", "\n").splitlines()]
  except OSError:
    return ""
  return "\n".join([line for line in lines if line][-_LOG_TAIL_LINES:])


def _wait_for_workdir(run: Run, report) -> None:
  """Waits while another process holds the run's workdir lock (see train/workdir.py).

  A run started by an earlier sweep that was killed stops by itself (it
  watches its parent, and saves a checkpoint on the way out); started again
  at once, it would fail with "in use by another run".
  """
  if not os.path.isdir(run.workdir):
    return
  folder = os.open(run.workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
  try:
    try:
      fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      report(
          f"{run.name}: waiting for the process that holds {run.workdir} (a run of an "
          "earlier sweep that is stopping, or another sweep) to let it go"
      )
      fcntl.flock(folder, fcntl.LOCK_EX)
  finally:
    os.close(folder)  # the run itself takes the lock


class _Runner:
  """Runs commands N at a time and stops them all on request."""

  def __init__(self, report):
    self._live: set[subprocess.Popen] = set()
    self._lock = threading.Lock()
    self._report = report
    self.stopping = False

  def run(self, run: Run) -> Outcome:
    _wait_for_workdir(run, self._report)
    earlier = _read_results(run)
    if earlier is not None:
      return Outcome(run, "ok (earlier)", earlier)
    if self.stopping:
      return Outcome(run, "not started")
    os.makedirs(os.path.dirname(run.log_path), exist_ok=True)
    with open(run.log_path, "a") as log:
      log.write(f"$ {' '.join(run.command)}\n")
      log.flush()
      with self._lock:
        # The run stops if this process dies (interrupts.child_environment).
        process = subprocess.Popen(
            run.command, stdout=log, stderr=subprocess.STDOUT, env=interrupts.child_environment()
        )
        self._live.add(process)
      returncode = process.wait()
      with self._lock:
        self._live.discard(process)
    results = _read_results(run)
    if returncode == 0 and results is not None:
      return Outcome(run, "ok", results)
    if self.stopping:
      return Outcome(run, "interrupted", log_tail=_tail(run.log_path))
    reason = f"exit status {returncode}" if returncode else "no results.json written"
    return Outcome(run, "failed", {"error": reason}, _tail(run.log_path))

  def stop(self) -> None:
    """SIGTERM to every live run: the trainer saves a checkpoint and exits."""
    self.stopping = True
    with self._lock:
      for process in self._live:
        process.send_signal(signal.SIGTERM)


def _say(line: str) -> None:
  # Flushed: a sweep's progress is read through pipes and logs (tee, nohup), as it happens.
  print(line, flush=True)


def run_sweep(runs: Sequence[Run], parallel: int = 1, report=_say) -> list[Outcome]:
  """Runs the runs, `parallel` at a time; Ctrl-C or SIGTERM stops them cleanly.

  Returns:
    One Outcome per run, in the runs' order.
  """
  runner = _Runner(report)
  outcomes: dict[int, Outcome] = {}
  with concurrent.futures.ThreadPoolExecutor(max_workers=max(parallel, 1)) as pool:
    futures = {pool.submit(runner.run, run): i for i, run in enumerate(runs)}
    try:
      for future in concurrent.futures.as_completed(futures):
        outcome = future.result()
        outcomes[futures[future]] = outcome
        report(f"[{len(outcomes)}/{len(runs)}] {_describe(outcome)}")
    except KeyboardInterrupt:
      report("interrupted: stopping the runs (they save a checkpoint; re-run to resume)")
      runner.stop()
      for future, i in futures.items():
        outcomes[i] = future.result()
  return [outcomes[i] for i in range(len(runs))]


def _describe(outcome: Outcome) -> str:
  text = f"{outcome.run.name}: {outcome.status}"
  if "accuracy" in outcome.results:
    text += (
        f", accuracy {outcome.results['accuracy']:.4f}, "
        f"{outcome.results.get('wall_seconds', float('nan')):.0f} s"
    )
  if outcome.status == "failed":
    text += f" ({outcome.results.get('error')}; log: {outcome.run.log_path})"
  return text


def smoke_runs(runs: Sequence[Overrides]) -> list[Overrides]:
  """One seed of each of the first two settings (runs that differ beyond the seed)."""
  chosen, settings = [], []
  for run in runs:
    setting = {k: v for k, v in run.items() if not is_seed(k)}
    if setting not in settings and len(chosen) < 2:
      settings.append(setting)
      chosen.append(run)
  return chosen
