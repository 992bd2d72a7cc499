"""The tables and plots of a sweep's outcomes.

ROOT/sweep.csv and ROOT/sweep.md hold one row per run (overrides, accuracy,
loss, steps, wall time, status); ROOT/sweep.png plots the accuracy against
the first swept value, one line per group of runs that differ only in their
seed, with error bars over the seeds; `--baseline` adds the difference of
each setting to a baseline with its standard error over seeds, and
`--curves` the learning curves (see `cnn_jax.sweep.curves`).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import math
from typing import Any, Callable, Sequence

from cnn_jax import records
from cnn_jax.sweep import curves
from cnn_jax.sweep.hyper import Overrides, SweepError
from cnn_jax.sweep.runner import Outcome, format_value, is_seed

_COLUMNS = ("accuracy", "top5_accuracy", "loss", "step", "num_params", "wall_seconds")


def keys_of(runs: Sequence[Overrides]) -> list[str]:
  """The overridden keys of all runs, in the order they first appear."""
  return list(dict.fromkeys(k for r in runs for k in r))


def _keys(outcomes: Sequence[Outcome]) -> list[str]:
  return keys_of([o.run.overrides for o in outcomes])


@dataclasses.dataclass
class Column:
  """A column computed from each run's learning curves (see cnn_jax/sweep/curves.py)."""

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
  text = io.StringIO()
  writer = csv.writer(text)
  writer.writerow(
      ["run", *keys, "status", *_COLUMNS, *(c.header for c in columns), "workdir", "error"]
  )
  for o in outcomes:
    ok = o.status.startswith("ok")
    error = (
        ""
        if ok
        else " / ".join(
            filter(
                None, [o.results.get("error"), o.log_tail.splitlines()[-1] if o.log_tail else ""]
            )
        )
    )
    extra = [_column_cell(c, [c.value(o)]) if ok else "" for c in columns]
    writer.writerow(
        [
            o.run.name,
            *(format_value(o.run.overrides.get(k, "")) for k in keys),
            o.status,
            *(o.results.get(c, "") for c in _COLUMNS),
            *extra,
            o.run.workdir,
            error,
        ]
    )
  # One atomic write: a sweep killed while writing leaves the old table whole.
  records.write_text(path, text.getvalue())


def seed_groups(outcomes: Sequence[Outcome]) -> dict[tuple, list[Outcome]]:
  """Successful runs grouped by their overrides other than the seed."""
  groups: dict[tuple, list[Outcome]] = {}
  for o in outcomes:
    if o.status.startswith("ok"):
      key = tuple((k, format_value(v)) for k, v in o.run.overrides.items() if not is_seed(k))
      groups.setdefault(key, []).append(o)
  return groups


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (n - 1; 0 for a single value)."""
  mean = sum(values) / len(values)
  variance = sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)
  return mean, variance**0.5


def difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
  """mean(a) - mean(b) and its standard error, sqrt(s_a^2 / n_a + s_b^2 / n_b)."""
  (mean_a, std_a), (mean_b, std_b) = mean_std(a), mean_std(b)
  return mean_a - mean_b, math.sqrt(std_a**2 / len(a) + std_b**2 / len(b))


def parse_baseline(spec: str, runs: Sequence[Overrides]) -> tuple[str, str]:
  """ "KEY=VALUE" of --baseline, checked against the sweep: (key, formatted value)."""
  key, sep, value = spec.partition("=")
  if not sep or key not in keys_of(runs) or is_seed(key):
    raise SweepError(
        f"--baseline={spec!r}: write KEY=VALUE with a swept key; the sweep's "
        f"keys: {', '.join(k for k in keys_of(runs) if not is_seed(k))}"
    )
  values = {format_value(run.get(key, "")) for run in runs}
  if value not in values:
    raise SweepError(f"--baseline={spec!r}: {key} takes the values {', '.join(sorted(values))}")
  return key, value


def difference_lines(
    outcomes: Sequence[Outcome], key: str, baseline: str, columns: Sequence[Column] = ()
) -> list[str]:
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
  others = [k for k in _keys(outcomes) if not is_seed(k) and k != key]
  lines = [
      f"Differences from {key}={baseline}, all else equal (mean difference ± its "
      "standard error over seeds; accuracy in points):",
      "",
      "| " + " | ".join(others + [key, "accuracy", *(c.header for c in columns)]) + " |",
      "|" + "---|" * (len(others) + 2 + len(columns)),
  ]
  for group, members in groups.items():
    setting = dict(group)
    if setting.get(key) == baseline:
      continue
    reference = groups.get(tuple((k, baseline if k == key else v) for k, v in group))
    if not reference:
      continue
    cells = []
    for value_of in [
        lambda o: 100 * o.results.get("accuracy", math.nan),
        *(c.value for c in columns),
    ]:
      a, b = [value_of(o) for o in members], [value_of(o) for o in reference]
      if any(v is None or math.isnan(v) for v in a + b):
        cells.append("n/a (a run has no value)")
        continue
      mean, error = difference(a, b)
      cells.append(f"{mean:+.2f} ± {error:.2f}")
    lines.append(
        "| "
        + " | ".join(
            [_markdown(setting.get(k, "")) for k in others] + [_markdown(setting[key]), *cells]
        )
        + " |"
    )
  return lines


def _markdown(text: str) -> str:
  """A table cell's text, its pipes escaped (augmentation specs have them)."""
  return text.replace("|", "\\|")


def _table_row(cells: Sequence[str]) -> str:
  return "| " + " | ".join(cells) + " |"


def _cell(value, digits=4) -> str:
  return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _count(value) -> str:
  return f"{value:,}" if isinstance(value, int) else ""


def _runs_table(
    outcomes: Sequence[Outcome], keys: list[str], columns: Sequence[Column], extra: dict
) -> list[str]:
  """One row per run: its swept values, results, curve columns and status."""
  header = [*keys, "accuracy", "loss", "steps", "params", "wall s", *(c.header for c in columns)]
  lines = [
      _table_row([*header, "status"]),
      "|" + "---|" * (len(keys) + 6 + len(columns)),
  ]
  for o in outcomes:
    r = o.results
    cells = (
        [_column_cell(c, [v]) for c, v in zip(columns, extra[id(o)])]
        if id(o) in extra
        else [""] * len(columns)
    )
    lines.append(
        _table_row(
            [
                *(_markdown(format_value(o.run.overrides.get(k, ""))) for k in keys),
                _cell(r.get("accuracy", "")),
                _cell(r.get("loss", "")),
                str(r.get("step", "")),
                _count(r.get("num_params")),
                _cell(r.get("wall_seconds", ""), 0),
                *cells,
                o.status,
            ]
        )
    )
  return lines


def _seeds_table(
    outcomes: Sequence[Outcome], keys: list[str], columns: Sequence[Column], extra: dict
) -> list[str]:
  """The mean and standard deviation over seeds of each setting ([] without repeated seeds)."""
  groups = seed_groups(outcomes)
  if not any(len(members) > 1 for members in groups.values()):
    return []
  others = [k for k in keys if not is_seed(k)]
  lines = [
      "",
      "Mean and standard deviation over seeds:",
      "",
      _table_row(
          others + ["runs", "accuracy", "loss", "params", "wall s", *(c.header for c in columns)]
      ),
      "|" + "---|" * (len(others) + 5 + len(columns)),
  ]
  for group, members in groups.items():
    # A detection run has no accuracy: its metrics go in columns (--last=eval.AP).
    accuracies = [m.results["accuracy"] for m in members if "accuracy" in m.results]
    accuracy = mean_std(accuracies) if len(accuracies) == len(members) else None
    loss = mean_std([m.results["loss"] for m in members])
    wall = mean_std([m.results.get("wall_seconds", math.nan) for m in members])
    lines.append(
        _table_row(
            [_markdown(dict(group).get(k, "")) for k in others]
            + [
                str(len(members)),
                f"{accuracy[0]:.4f} ± {accuracy[1]:.4f}" if accuracy else "",
                f"{loss[0]:.4f} ± {loss[1]:.4f}",
                _count(members[0].results.get("num_params")),
                f"{wall[0]:.0f}",
                *(
                    _column_cell(c, [extra[id(m)][i] for m in members])
                    for i, c in enumerate(columns)
                ),
            ]
        )
    )
  return lines


def _failed_runs(outcomes: Sequence[Outcome]) -> list[str]:
  """Each run that did not finish: its command and the end of its log."""
  lines = []
  for o in outcomes:
    if not o.status.startswith("ok"):
      lines += [
          "",
          f"## {o.run.name}: {o.status}",
          "",
          f"    {' '.join(o.run.command)}",
          "",
          "```",
          o.log_tail or "(no output)",
          "```",
      ]
  return lines


def write_markdown(
    path: str,
    outcomes: Sequence[Outcome],
    command: str,
    columns: Sequence[Column] = (),
    baselines: Sequence[tuple[str, str]] = (),
) -> None:
  """The runs' table, the mean and spread over seeds, and the failed runs' logs.

  Args:
    path: the .md file to write.
    outcomes: the runs.
    command: the command that made the sweep, quoted at the top.
    columns: extra columns from the runs' curves (reach_column, last_column).
    baselines: (key, value) pairs: a table of differences from each (difference_lines).
  """
  keys = _keys(outcomes)
  extra = {id(o): [c.value(o) for c in columns] for o in outcomes if o.status.startswith("ok")}
  lines = [f"# Sweep ({datetime.date.today().isoformat()})", "", f"    {command}", ""]
  lines += _runs_table(outcomes, keys, columns, extra)
  lines += _seeds_table(outcomes, keys, columns, extra)
  for key, value in baselines:
    lines += ["", *difference_lines(outcomes, key, value, columns)]
  lines += _failed_runs(outcomes)
  records.write_text(path, "\n".join(lines) + "\n")


def plot(path: str, outcomes: Sequence[Outcome]) -> bool:
  """Accuracy against the first swept value (not the seed); False if nothing to plot
  (nothing swept but the seed, or runs without an accuracy).

  One line per combination of the other swept values, each point the mean
  over seeds with its standard deviation as error bar; a log x axis when
  the values are positive and span a factor of 10 or more.
  """
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  swept = [
      k
      for k in _keys(outcomes)
      if not is_seed(k) and len({format_value(o.run.overrides.get(k)) for o in outcomes}) > 1
  ]
  groups = seed_groups(outcomes)
  if (
      not swept
      or not groups
      or any("accuracy" not in m.results for g in groups.values() for m in g)
  ):
    return False  # a detection run has no accuracy: its AP goes in --last columns
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
    axes.errorbar(
        xs, [p[1] for p in points], yerr=[p[2] for p in points], marker="o", capsize=3, label=label
    )
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


def plot_sweep_curves(
    path: str, outcomes: Sequence[Outcome], names: Sequence[str], panel_key: str | None = None
) -> None:
  """Learning curves of the sweep's settings (mean over seeds), see cnn_jax/sweep/curves.py.

  Args:
    path: the PNG to write.
    outcomes: the runs.
    names: the curves, e.g. ["train.accuracy", "eval.accuracy"].
    panel_key: a swept key; one panel per value of it.
  """
  groups = []
  for group, members in seed_groups(outcomes).items():
    label = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in group if k != panel_key)
    title = f"{panel_key.rsplit('.', 1)[-1]}={dict(group).get(panel_key)}" if panel_key else ""
    groups.append((title, label or "all runs", [m.run.workdir for m in members]))
  curves.plot_curves(path, groups, names, log_y=all(n.endswith("loss") for n in names))
