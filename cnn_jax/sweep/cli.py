"""The sweep command: runs the sweep a config file defines, and tabulates it.

    python -m launch.sweep --config=configs/default.py --workdir_root=/tmp/lr_sweep
    python -m launch.sweep --config=configs/cifar10_resnet.py:20 --workdir_root=DIR \
        --parallel=2 --dry_run

A config file defines its sweep next to `get_config` (`h` is cnn_jax/sweep/hyper.py):

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

Learning curves (each run's metrics.jsonl, see cnn_jax/sweep/curves.py):

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

import os
import signal
import sys

from absl import flags

from cnn_jax import errors
from cnn_jax.sweep import curves
from cnn_jax.sweep.hyper import SweepError
from cnn_jax.sweep.runner import build_runs, load_sweep, run_sweep, smoke_runs
from cnn_jax.sweep.tables import (
    keys_of,
    last_column,
    parse_baseline,
    plot,
    plot_sweep_curves,
    reach_column,
    seed_groups,
    write_csv,
    write_markdown,
)

_SMOKE_STEPS = 3

_CONFIG = flags.DEFINE_string("config", None, "config file, FILE.py or FILE.py:ARG")
_ROOT = flags.DEFINE_string("workdir_root", None, "folder for the runs' workdirs and the tables")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "runs at a time")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "print the commands, run nothing")
_OVERRIDE = flags.DEFINE_multi_string(
    "override", [], "key=value set in every run (not part of run names), e.g. num_epochs=2"
)
# Not "--out": cnn_jax.data.preview defines that, and absl flags share one namespace.
_RESULTS_DIR = flags.DEFINE_string(
    "results_dir", None, "folder for the tables and plots (default: workdir_root)"
)
_CURVES = flags.DEFINE_multi_string(
    "curves",
    [],
    "a learning-curve plot of these curves, e.g. eval.accuracy or "
    "train.accuracy,eval.accuracy (one plot per flag)",
)
_PANELS = flags.DEFINE_string("panels", None, "draw the curves in one panel per value of this key")
_REACH = flags.DEFINE_multi_string(
    "reach",
    [],
    "tabulate the first step at which a curve meets a target, e.g. " "eval.accuracy>=0.95",
)
_LAST = flags.DEFINE_multi_string(
    "last", [], "tabulate the last logged value of a curve, e.g. train.accuracy"
)
_BASELINE = flags.DEFINE_multi_string(
    "baseline",
    [],
    "KEY=VALUE: a table of each other value of KEY minus this one "
    "(accuracy and the --reach/--last columns), with its standard error over seeds",
)
_SMOKE = flags.DEFINE_bool(
    "smoke",
    False,
    "check that the sweep runs: one seed of the first two settings, "
    f"{_SMOKE_STEPS} steps each, tables in workdir_root only",
)


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
  columns = [reach_column(t) for t in _REACH.value] + [last_column(n) for n in _LAST.value]
  if _PANELS.value and _PANELS.value not in keys_of(overrides):
    raise SweepError(
        f"--panels={_PANELS.value!r} is not a swept key; the sweep's keys: "
        f"{', '.join(keys_of(overrides))}"
    )
  baselines = [parse_baseline(spec, overrides) for spec in _BASELINE.value]
  common = list(_OVERRIDE.value)
  if _SMOKE.value:
    overrides = smoke_runs(overrides)
    # A constant rate: a recipe's warm-up would outlast the smoke run.
    common += [
        f"num_train_steps={_SMOKE_STEPS}",
        f"eval_every_steps={_SMOKE_STEPS}",
        "log_every_steps=1",
        "schedule.name=constant",
    ]
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
  print(f"{len(runs)} runs, {_PARALLEL.value} at a time, in {root}", flush=True)
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
    sys.exit(
        f"{len(failed)} of {len(runs)} runs failed: {', '.join(failed)} " f"(see {out}/sweep.md)"
    )


def run() -> None:
  """Parses the flags and runs `main`, with user errors in one line."""
  flags.mark_flags_as_required(["config", "workdir_root"])
  # At Ctrl-C the sweep waits for its runs, which stop within their own grace.
  errors.run(main, ctrl_c_grace_s=30.0)
