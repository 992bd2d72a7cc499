"""A sweep from start to end: its runs built, run (or listed), then tabulated and plotted.

`run_and_tabulate` is what `python -m cnn_jax.sweep` (and `python -m
launch.sweep`) does; see cnn_jax/sweep/__main__.py for the command's flags.
"""

from __future__ import annotations

import os
import signal
from typing import Sequence

from cnn_jax.sweep import curves
from cnn_jax.sweep.hyper import SweepError
from cnn_jax.sweep.runner import Outcome, make_runs, load_sweep, run_sweep, smoke_runs
from cnn_jax.sweep.tables import (
    Column,
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

SMOKE_STEPS = 3


def _check_overrides(overrides: Sequence[str]) -> None:
  """Refuses an override that is not key=value."""
  for common in overrides:
    if "=" not in common:
      raise SweepError(f"--override={common!r}: write key=value, e.g. num_epochs=2")


def _check_panels(panels: str | None, swept: Sequence[dict]) -> None:
  """Refuses --panels that is not a swept key."""
  if panels and panels not in keys_of(swept):
    raise SweepError(
        f"--panels={panels!r} is not a swept key; the sweep's keys: {', '.join(keys_of(swept))}"
    )


def _curve_figures(curve_flags: Sequence[str]) -> list[list[str]]:
  """The curves of each learning-curve figure ("a,b" -> [a, b]), checked."""
  figures = [[n.strip() for n in flag.split(",") if n.strip()] for flag in curve_flags]
  for names in figures:
    for name in names:
      curves.parse_curve(name)
  return figures


def run_and_tabulate(
    config: str,
    workdir_root: str,
    *,
    command: str,
    parallel: int = 1,
    dry_run: bool = False,
    overrides: Sequence[str] = (),
    results_dir: str | None = None,
    curve_figures: Sequence[str] = (),
    panels: str | None = None,
    reach: Sequence[str] = (),
    last: Sequence[str] = (),
    baselines: Sequence[str] = (),
    smoke: bool = False,
) -> int | str | None:
  """Runs the sweep a config file defines, then writes its tables and plots.

  Everything is checked before the first run starts. With `dry_run` the
  runs' commands are printed and nothing runs.

  Args:
    config: the config file, FILE.py or FILE.py:ARG; it defines get_sweep.
    workdir_root: the folder of the runs' workdirs (and of the tables).
    command: the command that made the sweep, quoted at the top of sweep.md.
    parallel: runs at a time.
    dry_run: print the runs' commands only.
    overrides: key=value set in every run (not part of run names).
    results_dir: the folder of the tables and plots (default: workdir_root).
    curve_figures: one learning-curve figure per entry, e.g. "eval.accuracy"
      or "train.accuracy,eval.accuracy".
    panels: draw the curves in one panel per value of this swept key.
    reach: columns: the first step at which a curve meets a target,
      e.g. "eval.accuracy>=0.95".
    last: columns: the last logged value of a curve (an entry may name
      several, comma-separated: a column each).
    baselines: KEY=VALUE: a table of each other value of KEY minus this one.
    smoke: one seed of the first two settings, SMOKE_STEPS steps each at a
      constant rate; tables in workdir_root only.

  Returns:
    What the command exits with: None when every run finished, 130 when
    runs were interrupted or not started, a message naming the failed runs.

  Raises:
    SweepError: for a malformed override, curve, --panels or --baseline.
  """
  spec, swept = load_sweep(config)
  _check_overrides(overrides)
  figures = _curve_figures(curve_figures)
  last_curves = [n for entry in last for n in entry.split(",")]
  columns = [reach_column(t) for t in reach] + [last_column(n) for n in last_curves]
  _check_panels(panels, swept)
  differences = [parse_baseline(spec, swept) for spec in baselines]
  common = list(overrides)
  if smoke:
    swept = smoke_runs(swept)
    # A constant rate: a recipe's warm-up would outlast the smoke run.
    common += [
        f"num_train_steps={SMOKE_STEPS}",
        f"eval_every_steps={SMOKE_STEPS}",
        "log_every_steps=1",
        "schedule.name=constant",
    ]
  runs = make_runs(spec, swept, workdir_root, common)
  if dry_run:
    for run in runs:
      print(" ".join(run.command))
    return None
  # SIGTERM (a cluster's or a user's kill) stops the runs like Ctrl-C does.
  signal.signal(signal.SIGTERM, signal.default_int_handler)
  root = os.path.abspath(workdir_root)
  # A smoke run never overwrites the committed tables of a full run.
  out = root if smoke or not results_dir else os.path.abspath(results_dir)
  os.makedirs(out, exist_ok=True)
  print(f"{len(runs)} runs, {parallel} at a time, in {root}", flush=True)
  outcomes = run_sweep(runs, parallel)
  written = _write_tables(out, outcomes, command, columns, differences, figures, panels)
  print(f"wrote {', '.join(written)} in {out}")
  return _exit_status(outcomes, out)


def _write_tables(
    out: str,
    outcomes: Sequence[Outcome],
    command: str,
    columns: Sequence[Column],
    differences: Sequence[tuple[str, str]],
    figures: Sequence[Sequence[str]],
    panels: str | None,
) -> list[str]:
  """Writes sweep.csv, sweep.md, sweep.png and the curve figures; returns their names."""
  write_csv(os.path.join(out, "sweep.csv"), outcomes, columns)
  write_markdown(os.path.join(out, "sweep.md"), outcomes, command, columns, differences)
  written = ["sweep.csv", "sweep.md"]
  if plot(os.path.join(out, "sweep.png"), outcomes):
    written.append("sweep.png")
  for names in figures:
    if seed_groups(outcomes):
      name = "curves_" + "_".join(n.replace(".", "_") for n in names) + ".png"
      plot_sweep_curves(os.path.join(out, name), outcomes, names, panels)
      written.append(name)
  return written


def _exit_status(outcomes: Sequence[Outcome], out: str) -> int | str | None:
  """130 if runs were interrupted, a message if runs failed, else None."""
  if any(o.status in ("interrupted", "not started") for o in outcomes):
    return 130
  failed = [o.run.name for o in outcomes if o.status == "failed"]
  if failed:
    return f"{len(failed)} of {len(outcomes)} runs failed: {', '.join(failed)} (see {out}/sweep.md)"
  return None
