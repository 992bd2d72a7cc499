"""Several sweeps side by side: an experiment's settings (one sweep of seeds each) in one table.

Each setting's sweep wrote FOLDER/sweep.csv (`cnn_jax.sweep.tables`); these
read the finished runs of each, and write markdown rows of mean ± std over
the seeds per setting and of differences between settings ± their standard
errors (experiments/segmentation/table.py, experiments/detection/table.py).
"""

from __future__ import annotations

import argparse
import csv
import os
from typing import Callable, Sequence

from cnn_jax import records
from cnn_jax.sweep.tables import difference, mean_std

# What the tables read from each setting's runs: {setting: its sweep.csv rows}.
Runs = dict[str, list[dict[str, str]]]


def read_finished_runs(folder: str) -> list[dict[str, str]]:
  """The finished runs of one sweep (its sweep.csv rows with status ok); [] if it has none."""
  path = os.path.join(folder, "sweep.csv")
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    return [row for row in csv.DictReader(f) if row["status"].startswith("ok")]


def read_settings(sweeps: str, settings: Sequence[tuple[str, str]]) -> Runs:
  """Each setting's finished runs, from SWEEPS/<setting>/sweep.csv."""
  return {setting: read_finished_runs(os.path.join(sweeps, setting)) for setting, _ in settings}


def column_values(runs: list[dict[str, str]], column: str, scale: float = 100.0) -> list[float]:
  """A column's numbers over the runs, times `scale` (100: percent); runs without one left out.

  A run lacks a value where its cell is empty, "nan", or "no curve" (a curve it
  never wrote: e.g. the IoU of a class absent from its eval scenes).
  """
  return [
      scale * float(r[column]) for r in runs if r.get(column, "") not in ("", "nan", "no curve")
  ]


def mean_std_cell(numbers: list[float], runs: int) -> str:
  """mean ± std (one value alone), and how many runs had a value if not all did."""
  if not numbers:
    return "n/a"
  mean, std = mean_std(numbers)
  text = f"{mean:.1f} ± {std:.1f}" if len(numbers) > 1 else f"{mean:.1f}"
  return text + (f" ({len(numbers)} of {runs} runs)" if len(numbers) < runs else "")


def summary_lines(
    runs: Runs, settings: Sequence[tuple[str, str]], columns: Sequence[tuple[str, str]]
) -> list[str]:
  """One row per setting: its runs, each column's mean ± std, and the wall time per run.

  Args:
    runs: each setting's finished runs.
    settings: (setting, label) pairs, in the table's order.
    columns: (sweep.csv column, header) pairs; the values are shown in percent.

  Returns:
    The markdown lines.
  """
  lines = [
      "| setting | runs | " + " | ".join(header for _, header in columns) + " | wall s per run |",
      "|---|---|" + "---|" * len(columns) + "---|",
  ]
  for setting, label in settings:
    found = runs[setting]
    wall = column_values(found, "wall_seconds", 1.0)
    if not wall:
      lines.append(f"| {label} | 0 | not run |" + " |" * len(columns))
      continue
    cells = [mean_std_cell(column_values(found, column), len(found)) for column, _ in columns]
    lines.append(
        f"| {label} | {len(found)} | " + " | ".join(cells) + f" | {mean_std(wall)[0]:.0f} |"
    )
  return lines


def comparison_lines(
    runs: Runs,
    settings: Sequence[tuple[str, str]],
    comparisons: Sequence[tuple[str, str]],
    columns: Sequence[tuple[str, str]],
) -> list[str]:
  """One row per comparison (a, b): each column's mean(a) - mean(b) ± its standard error.

  Args:
    runs: each setting's finished runs.
    settings: (setting, label) pairs.
    comparisons: (a, b) setting pairs; a row shows a - b, in points.
    columns: (sweep.csv column, header) pairs.

  Returns:
    The markdown lines ("n/a" where a side has fewer than 2 runs).
  """
  labels = dict(settings)
  lines = [
      "| comparison | " + " | ".join(header for _, header in columns) + " |",
      "|---|" + "---|" * len(columns),
  ]
  for a, b in comparisons:
    cells = []
    for column, _ in columns:
      x, y = column_values(runs[a], column), column_values(runs[b], column)
      cells.append(
          "{:+.1f} ± {:.1f}".format(*difference(x, y)) if len(x) > 1 and len(y) > 1 else "n/a"
      )
    lines.append(f"| {labels[a]} - {labels[b]} | " + " | ".join(cells) + " |")
  return lines


def write_from_command_line(
    description: str, settings: Sequence[tuple[str, str]], lines: Callable[[Runs], list[str]]
) -> None:
  """An experiment's table.py: reads --sweeps (a folder of the settings' sweeps), writes --table.

  Args:
    description: the script's one-line description (its --help).
    settings: (setting, label) pairs: the sweeps' folders under --sweeps.
    lines: the table's markdown lines from the settings' finished runs.
  """
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument("--sweeps", required=True, help="the folder holding each group's sweep")
  parser.add_argument("--table", required=True, help="the markdown file to write")
  args = parser.parse_args()
  records.write_text(args.table, "\n".join(lines(read_settings(args.sweeps, settings))) + "\n")
  print(f"wrote {args.table}")
