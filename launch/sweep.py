"""Runs the hyper-parameter sweep a config file defines, and tabulates it.

    python -m launch.sweep --config=configs/default.py --workdir_root=/tmp/lr_sweep
    python -m launch.sweep --config=configs/cifar10_resnet.py:20 --workdir_root=DIR \
        --parallel=2 --dry_run

A config file defines its sweep next to `get_config` (`h` is launch/hyper.py):

    def get_sweep(h):
      return h.product([h.sweep("optimizer.learning_rate", [1e-3, 3e-3, 1e-2]),
                        h.sweep("seed", [0, 1])])

A config with an argument (FILE.py:ARG) may define `get_sweep(h, arg)`.

Each run is `python -m cnn_jax.main --config=FILE --workdir=ROOT/<name>
--config.key=value ...`, named from its overrides ("learning_rate=0.001,
seed=1"), with its output in ROOT/logs/<name>.txt. A run whose results.json
exists is not run again; an interrupted one resumes from its checkpoints (the
trainer does that), so re-running the sweep command finishes a sweep.
ROOT/sweep.csv and ROOT/sweep.md hold one row per run (overrides, accuracy,
loss, steps, wall time, status); ROOT/sweep.png plots the accuracy against
the first swept value, one line per group of runs that differ only in their
seed, with error bars over the seeds. A failed run is recorded with the end
of its log and the sweep goes on; the command then exits with status 1.

Learning curves (each run's metrics.jsonl, see launch/curves.py):

    --curves=eval.accuracy            curves_eval_accuracy.png, mean ± std over seeds
    --curves=train.accuracy,eval.accuracy --panels=train_split
                                      both curves, one panel per train_split
    --reach="eval.accuracy>=0.95"     a column: the first logged step that met it
    --last=train.accuracy             a column: the curve's last value
    --baseline=augment=               a table in sweep.md: each setting minus the one
                                      without augmentation, all else equal, ± its
                                      standard error over seeds

--results_dir=DIR writes the tables and plots there instead of ROOT (an
experiment's folder). --smoke checks that a sweep still runs: one seed of its first two
settings, 3 steps each at a constant rate, tables in ROOT only.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import datetime
import difflib
import inspect
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
from typing import Any, Callable, Sequence

from absl import flags

from cnn_jax import errors
from launch import config_files, curves, hyper
from launch.hyper import Overrides, SweepError

_LOG_TAIL_LINES = 15
_SMOKE_STEPS = 3
_SEED = "seed"

_CONFIG = flags.DEFINE_string("config", None, "config file, FILE.py or FILE.py:ARG")
_ROOT = flags.DEFINE_string("workdir_root", None, "folder for the runs' workdirs and the tables")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "runs at a time")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "print the commands, run nothing")
_OVERRIDE = flags.DEFINE_multi_string(
    "override", [], "key=value set in every run (not part of run names), e.g. num_epochs=2")
# Not "--out": cnn_jax.data.preview defines that, and absl flags share one namespace.
_RESULTS_DIR = flags.DEFINE_string("results_dir", None,
                                   "folder for the tables and plots (default: workdir_root)")
_CURVES = flags.DEFINE_multi_string(
    "curves", [], "a learning-curve plot of these curves, e.g. eval.accuracy or "
    "train.accuracy,eval.accuracy (one plot per flag)")
_PANELS = flags.DEFINE_string("panels", None, "draw the curves in one panel per value of this key")
_REACH = flags.DEFINE_multi_string(
    "reach", [], "tabulate the first step at which a curve meets a target, e.g. "
    "eval.accuracy>=0.95")
_LAST = flags.DEFINE_multi_string(
    "last", [], "tabulate the last logged value of a curve, e.g. train.accuracy")
_BASELINE = flags.DEFINE_multi_string(
    "baseline", [], "KEY=VALUE: a table of each other value of KEY minus this one "
    "(accuracy and the --reach/--last columns), with its standard error over seeds")
_SMOKE = flags.DEFINE_bool(
    "smoke", False, "check that the sweep runs: one seed of the first two settings, "
    f"{_SMOKE_STEPS} steps each, tables in workdir_root only")


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
    SweepError: a missing file or get_sweep, an empty sweep, a key that is
      not a config field, or two identical runs.
  """
  path, _, arg = config_spec.partition(":")
  module = config_files.load_module(path)
  if not hasattr(module, "get_sweep"):
    raise SweepError(f"{path} defines no get_sweep(h); add one (see launch/sweep.py)")
  takes_arg = len(inspect.signature(module.get_sweep).parameters) > 1
  runs = module.get_sweep(hyper, arg) if takes_arg else module.get_sweep(hyper)
  if not runs or not all(isinstance(r, dict) for r in runs):
    raise SweepError(f"get_sweep of {path} must return a non-empty list of override dicts")
  config = module.get_config(arg) if arg else module.get_config()
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


def build_runs(config_spec: str, runs: Sequence[Overrides], root: str,
               common: Sequence[str] = ()) -> list[Run]:
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
    command = [sys.executable, "-m", "cnn_jax.main", f"--config={config_spec}",
               f"--workdir={workdir}"]
    command += [f"--config.{k}={format_value(v)}" for k, v in overrides.items()]
    command += [f"--config.{c}" for c in common]
    result.append(Run(name, dict(overrides), workdir,
                      os.path.join(root, "logs", name + ".txt"), command))
  return result


def _read_results(run: Run) -> dict[str, Any] | None:
  path = os.path.join(run.workdir, "results.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _tail(path: str) -> str:
  try:
    with open(path, errors="replace") as f:
      lines = [line.rstrip() for line in f.read().replace("\r", "\n").splitlines()]
  except OSError:
    return ""
  return "\n".join([line for line in lines if line][-_LOG_TAIL_LINES:])


class _Runner:
  """Runs commands N at a time and stops them all on request."""

  def __init__(self):
    self._live: set[subprocess.Popen] = set()
    self._lock = threading.Lock()
    self.stopping = False

  def run(self, run: Run) -> Outcome:
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
        process = subprocess.Popen(run.command, stdout=log, stderr=subprocess.STDOUT)
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


def run_sweep(runs: Sequence[Run], parallel: int = 1, report=print) -> list[Outcome]:
  """Runs the runs, `parallel` at a time; Ctrl-C or SIGTERM stops them cleanly.

  Returns:
    One Outcome per run, in the runs' order.
  """
  runner = _Runner()
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
    text += (f", accuracy {outcome.results['accuracy']:.4f}, "
             f"{outcome.results.get('wall_seconds', float('nan')):.0f} s")
  if outcome.status == "failed":
    text += f" ({outcome.results.get('error')}; log: {outcome.run.log_path})"
  return text


_COLUMNS = ("accuracy", "top5_accuracy", "loss", "step", "num_params", "wall_seconds")


def _keys_of(runs: Sequence[Overrides]) -> list[str]:
  """The overridden keys of all runs, in the order they first appear."""
  return list(dict.fromkeys(k for r in runs for k in r))


def _keys(outcomes: Sequence[Outcome]) -> list[str]:
  return _keys_of([o.run.overrides for o in outcomes])


def _is_seed(key: str) -> bool:
  return key.rsplit(".", 1)[-1] == _SEED


@dataclasses.dataclass
class Column:
  """A column computed from each run's learning curves (see launch/curves.py)."""
  header: str
  value: Callable[[Outcome], float | None]  # None: the run logged no such curve
  digits: int
  missing: str  # what nan means, e.g. "never"


def reach_column(target: str) -> Column:
  """The first logged step at which a run met a target such as "eval.accuracy>=0.95"."""
  name, op, value = curves.parse_target(target)

  def steps(outcome: Outcome) -> float | None:
    logged, values = curves.read_curve(outcome.run.workdir, name)
    return curves.steps_to_reach(logged, values, op, value) if len(logged) else None

  return Column(f"steps to {target}", steps, 0, "never")


def last_column(name: str) -> Column:
  """The last logged value of a curve such as "train.accuracy"."""
  curves.parse_curve(name)

  def last(outcome: Outcome) -> float | None:
    values = curves.read_curve(outcome.run.workdir, name)[1]
    return float(values[-1]) if len(values) else None

  return Column(f"last {name}", last, 4, "")


def _column_cell(column: Column, values: Sequence[float]) -> str:
  """Mean (± std over several runs) of the runs that have a value, and how many have none."""
  values = [v for v in values if v is not None]
  if not values:
    return "no curve"
  present = [v for v in values if not math.isnan(v)]
  if not present:
    return column.missing
  mean, std = mean_std(present)
  text = f"{mean:.{column.digits}f}"
  if len(values) > 1:
    text += f" ± {std:.{column.digits}f}"
  missed = len(values) - len(present)
  return text + (f" ({missed} of {len(values)} {column.missing or 'missing'})" if missed else "")


def write_csv(path: str, outcomes: Sequence[Outcome], columns: Sequence[Column] = ()) -> None:
  """One row per run: name, override values, status, results, extra columns, workdir, error."""
  keys = _keys(outcomes)
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["run", *keys, "status", *_COLUMNS, *(c.header for c in columns),
                     "workdir", "error"])
    for o in outcomes:
      ok = o.status.startswith("ok")
      error = "" if ok else " / ".join(
          filter(None, [o.results.get("error"), o.log_tail.splitlines()[-1] if o.log_tail else ""]))
      extra = [_column_cell(c, [c.value(o)]) if ok else "" for c in columns]
      writer.writerow([o.run.name, *(format_value(o.run.overrides.get(k, "")) for k in keys),
                       o.status, *(o.results.get(c, "") for c in _COLUMNS), *extra,
                       o.run.workdir, error])


def seed_groups(outcomes: Sequence[Outcome]) -> dict[tuple, list[Outcome]]:
  """Successful runs grouped by their overrides other than the seed."""
  groups: dict[tuple, list[Outcome]] = {}
  for o in outcomes:
    if o.status.startswith("ok"):
      key = tuple((k, format_value(v)) for k, v in o.run.overrides.items() if not _is_seed(k))
      groups.setdefault(key, []).append(o)
  return groups


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (n - 1; 0 for a single value)."""
  mean = sum(values) / len(values)
  variance = sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)
  return mean, variance ** 0.5


def difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
  """mean(a) - mean(b) and its standard error, sqrt(s_a^2 / n_a + s_b^2 / n_b)."""
  (mean_a, std_a), (mean_b, std_b) = mean_std(a), mean_std(b)
  return mean_a - mean_b, math.sqrt(std_a ** 2 / len(a) + std_b ** 2 / len(b))


def parse_baseline(spec: str, runs: Sequence[Overrides]) -> tuple[str, str]:
  """"KEY=VALUE" of --baseline, checked against the sweep: (key, formatted value)."""
  key, sep, value = spec.partition("=")
  if not sep or key not in _keys_of(runs) or _is_seed(key):
    raise SweepError(f"--baseline={spec!r}: write KEY=VALUE with a swept key; the sweep's "
                     f"keys: {', '.join(k for k in _keys_of(runs) if not _is_seed(k))}")
  values = {format_value(run.get(key, "")) for run in runs}
  if value not in values:
    raise SweepError(f"--baseline={spec!r}: {key} takes the values {', '.join(sorted(values))}")
  return key, value


def difference_lines(outcomes: Sequence[Outcome], key: str, baseline: str,
                     columns: Sequence[Column] = ()) -> list[str]:
  """Markdown: each setting minus the one with KEY=baseline and all else equal.

  Args:
    outcomes: the runs.
    key, baseline: the swept key and the value to subtract (as format_value writes it).
    columns: extra columns (reach, last) compared the same way where every run has a value.

  Returns:
    A table with one row per (other settings, value of KEY), the differences
    of the means over seeds, each with its standard error (`difference`).
  """
  groups = seed_groups(outcomes)
  others = [k for k in _keys(outcomes) if not _is_seed(k) and k != key]
  lines = [f"Differences from {key}={baseline}, all else equal (mean difference ± its "
           "standard error over seeds; accuracy in points):", "",
           "| " + " | ".join(others + [key, "accuracy", *(c.header for c in columns)]) + " |",
           "|" + "---|" * (len(others) + 2 + len(columns))]
  for group, members in groups.items():
    setting = dict(group)
    if setting.get(key) == baseline:
      continue
    reference = groups.get(tuple((k, baseline if k == key else v) for k, v in group))
    if not reference:
      continue
    cells = []
    for value_of in [lambda o: 100 * o.results["accuracy"], *(c.value for c in columns)]:
      a, b = [value_of(o) for o in members], [value_of(o) for o in reference]
      if any(v is None or math.isnan(v) for v in a + b):
        cells.append("n/a (a run has no value)")
        continue
      mean, error = difference(a, b)
      cells.append(f"{mean:+.2f} ± {error:.2f}")
    lines.append("| " + " | ".join([_markdown(setting.get(k, "")) for k in others] +
                                   [_markdown(setting[key]), *cells]) + " |")
  return lines


def _markdown(text: str) -> str:
  """A table cell's text, its pipes escaped (augmentation specs have them)."""
  return text.replace("|", "\\|")


def write_markdown(path: str, outcomes: Sequence[Outcome], command: str,
                   columns: Sequence[Column] = (),
                   baselines: Sequence[tuple[str, str]] = ()) -> None:
  """The runs' table, the mean and spread over seeds, and the failed runs' logs.

  Args:
    path: the .md file to write.
    outcomes: the runs.
    command: the command that made the sweep, quoted at the top.
    columns: extra columns from the runs' curves (reach_column, last_column).
    baselines: (key, value) pairs: a table of differences from each (difference_lines).
  """
  keys = _keys(outcomes)

  def cell(value, digits=4):
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

  def count(value):
    return f"{value:,}" if isinstance(value, int) else ""

  extra = {id(o): [c.value(o) for c in columns] for o in outcomes if o.status.startswith("ok")}
  lines = [f"# Sweep ({datetime.date.today().isoformat()})", "", f"    {command}", "",
           "| " + " | ".join([*keys, "accuracy", "loss", "steps", "params", "wall s",
                              *(c.header for c in columns), "status"]) + " |",
           "|" + "---|" * (len(keys) + 6 + len(columns))]
  for o in outcomes:
    r = o.results
    cells = ([_column_cell(c, [v]) for c, v in zip(columns, extra[id(o)])] if id(o) in extra
             else [""] * len(columns))
    lines.append("| " + " | ".join(
        [*(_markdown(format_value(o.run.overrides.get(k, ""))) for k in keys),
         cell(r.get("accuracy", "")), cell(r.get("loss", "")), str(r.get("step", "")),
         count(r.get("num_params")), cell(r.get("wall_seconds", ""), 0), *cells,
         o.status]) + " |")
  groups = seed_groups(outcomes)
  if any(len(members) > 1 for members in groups.values()):
    others = [k for k in keys if not _is_seed(k)]
    lines += ["", "Mean and standard deviation over seeds:", "",
              "| " + " | ".join(others + ["runs", "accuracy", "loss", "params", "wall s",
                                          *(c.header for c in columns)]) + " |",
              "|" + "---|" * (len(others) + 5 + len(columns))]
    for group, members in groups.items():
      accuracy = mean_std([m.results["accuracy"] for m in members])
      loss = mean_std([m.results["loss"] for m in members])
      wall = mean_std([m.results.get("wall_seconds", math.nan) for m in members])
      lines.append("| " + " | ".join([_markdown(dict(group).get(k, "")) for k in others] + [
          str(len(members)), f"{accuracy[0]:.4f} ± {accuracy[1]:.4f}",
          f"{loss[0]:.4f} ± {loss[1]:.4f}", count(members[0].results.get("num_params")),
          f"{wall[0]:.0f}",
          *(_column_cell(c, [extra[id(m)][i] for m in members]) for i, c in enumerate(columns))])
          + " |")
  for key, value in baselines:
    lines += ["", *difference_lines(outcomes, key, value, columns)]
  failed = [o for o in outcomes if not o.status.startswith("ok")]
  for o in failed:
    lines += ["", f"## {o.run.name}: {o.status}", "", f"    {' '.join(o.run.command)}", "",
              "```", o.log_tail or "(no output)", "```"]
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def plot(path: str, outcomes: Sequence[Outcome]) -> bool:
  """Accuracy against the first swept value (not the seed); False if nothing to plot.

  One line per combination of the other swept values, each point the mean
  over seeds with its standard deviation as error bar; a log x axis when
  the values are positive and span a factor of 10 or more.
  """
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  swept = [k for k in _keys(outcomes) if not _is_seed(k)
           and len({format_value(o.run.overrides.get(k)) for o in outcomes}) > 1]
  groups = seed_groups(outcomes)
  if not swept or not groups:
    return False
  x_key = swept[0]
  lines: dict[tuple, list[tuple[Any, float, float]]] = {}
  for group, members in groups.items():
    rest = tuple((k, v) for k, v in group if k != x_key)
    mean, std = mean_std([m.results["accuracy"] for m in members])
    lines.setdefault(rest, []).append((members[0].run.overrides[x_key], mean, std))
  x_values = [x for points in lines.values() for x, _, _ in points]
  numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in x_values)
  categories = list(dict.fromkeys(format_value(x) for x in x_values))
  figure, axes = plt.subplots(figsize=(6, 4))
  for rest, points in lines.items():
    points.sort(key=lambda p: p[0] if numeric else categories.index(format_value(p[0])))
    xs = [p[0] if numeric else categories.index(format_value(p[0])) for p in points]
    label = ", ".join(f"{k}={v}" for k, v in rest) or None
    axes.errorbar(xs, [p[1] for p in points], yerr=[p[2] for p in points], marker="o",
                  capsize=3, label=label)
  if numeric and min(x_values) > 0 and max(x_values) / min(x_values) >= 10:
    axes.set_xscale("log")
  if not numeric:
    axes.set_xticks(range(len(categories)), categories)
  seeds = max(len(m) for m in groups.values())
  axes.set_xlabel(x_key)
  axes.set_ylabel("eval accuracy" + (f" (mean ± std over {seeds} seeds)" if seeds > 1 else ""))
  axes.grid(alpha=0.3)
  if any(rest for rest in lines):
    axes.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)
  return True


def smoke_runs(runs: Sequence[Overrides]) -> list[Overrides]:
  """One seed of each of the first two settings (runs that differ beyond the seed)."""
  chosen, settings = [], []
  for run in runs:
    setting = {k: v for k, v in run.items() if not _is_seed(k)}
    if setting not in settings and len(chosen) < 2:
      settings.append(setting)
      chosen.append(run)
  return chosen


def plot_sweep_curves(path: str, outcomes: Sequence[Outcome], names: Sequence[str],
                      panel_key: str | None = None) -> None:
  """Learning curves of the sweep's settings (mean over seeds), see launch/curves.py.

  Args:
    path: the PNG to write.
    outcomes: the runs.
    names: the curves, e.g. ["train.accuracy", "eval.accuracy"].
    panel_key: a swept key; one panel per value of it.
  """
  groups = []
  for group, members in seed_groups(outcomes).items():
    label = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in group if k != panel_key)
    title = (f"{panel_key.rsplit('.', 1)[-1]}={dict(group).get(panel_key)}"
             if panel_key else "")
    groups.append((title, label or "all runs", [m.run.workdir for m in members]))
  curves.plot_curves(path, groups, names, log_y=all(n.endswith("loss") for n in names))


def _curve_figures() -> list[list[str]]:
  """The --curves flags as lists of curve names, checked."""
  figures = [[n.strip() for n in flag.split(",") if n.strip()] for flag in _CURVES.value]
  for names in figures:
    for name in names:
      curves.parse_curve(name)
  return figures


def main(argv):
  if len(argv) > 1:
    raise errors.UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  spec, overrides = load_sweep(_CONFIG.value)
  for common in _OVERRIDE.value:
    if "=" not in common:
      raise SweepError(f"--override={common!r}: write key=value, e.g. num_epochs=2")
  figures = _curve_figures()
  columns = ([reach_column(t) for t in _REACH.value] +
             [last_column(n) for n in _LAST.value])
  if _PANELS.value and _PANELS.value not in _keys_of(overrides):
    raise SweepError(f"--panels={_PANELS.value!r} is not a swept key; the sweep's keys: "
                     f"{', '.join(_keys_of(overrides))}")
  baselines = [parse_baseline(spec, overrides) for spec in _BASELINE.value]
  common = list(_OVERRIDE.value)
  if _SMOKE.value:
    overrides = smoke_runs(overrides)
    # A constant rate: a recipe's warm-up would outlast the smoke run.
    common += [f"num_train_steps={_SMOKE_STEPS}", f"eval_every_steps={_SMOKE_STEPS}",
               "log_every_steps=1", "schedule.name=constant"]
  runs = build_runs(spec, overrides, _ROOT.value, common)
  if _DRY_RUN.value:
    for run in runs:
      print(" ".join(run.command))
    return
  # SIGTERM (a cluster's or a user's kill) stops the runs like Ctrl-C does.
  signal.signal(signal.SIGTERM, signal.default_int_handler)
  root = os.path.abspath(_ROOT.value)
  # A smoke run never overwrites the committed tables of a full run.
  out = root if _SMOKE.value or not _RESULTS_DIR.value else os.path.abspath(_RESULTS_DIR.value)
  os.makedirs(out, exist_ok=True)
  print(f"{len(runs)} runs, {_PARALLEL.value} at a time, in {root}")
  outcomes = run_sweep(runs, _PARALLEL.value)
  write_csv(os.path.join(out, "sweep.csv"), outcomes, columns)
  command = " ".join(["python -m launch.sweep", *sys.argv[1:]])
  write_markdown(os.path.join(out, "sweep.md"), outcomes, command, columns, baselines)
  written = ["sweep.csv", "sweep.md"]
  if plot(os.path.join(out, "sweep.png"), outcomes):
    written.append("sweep.png")
  for names in figures:
    if seed_groups(outcomes):
      name = "curves_" + "_".join(n.replace(".", "_") for n in names) + ".png"
      plot_sweep_curves(os.path.join(out, name), outcomes, names, _PANELS.value)
      written.append(name)
  print(f"wrote {', '.join(written)} in {out}")
  if any(o.status in ("interrupted", "not started") for o in outcomes):
    sys.exit(130)
  failed = [o.run.name for o in outcomes if o.status == "failed"]
  if failed:
    sys.exit(f"{len(failed)} of {len(runs)} runs failed: {', '.join(failed)} "
             f"(see {out}/sweep.md)")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir_root"])
  errors.run(main)
