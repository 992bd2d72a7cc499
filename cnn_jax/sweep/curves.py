"""Learning curves of a sweep's runs: read, average over seeds, plot, time to a target.

Every run's workdir has a metrics.jsonl with one record per log or eval
("split": "train" or "eval"). A curve is named "SPLIT.METRIC", e.g.
"eval.accuracy" or "train.loss"; train records average the steps since the
previous record, on the training batches (augmented, dropout on).
"""

from __future__ import annotations

import math
import os
import re
from typing import Sequence

import numpy as np

from cnn_jax import records
from cnn_jax.errors import SweepError

_TARGET = re.compile(r"^(train|eval)\.(\w+)\s*(>=|<=)\s*([-+0-9.eE]+)$")


def parse_curve(name: str) -> tuple[str, str]:
  """("eval", "accuracy") from "eval.accuracy"; SweepError for anything else."""
  split, _, metric = name.partition(".")
  if split not in ("train", "eval") or not metric:
    raise SweepError(
        f"curve {name!r}: write SPLIT.METRIC with SPLIT train or eval, "
        "e.g. eval.accuracy or train.loss"
    )
  return split, metric


def parse_target(text: str) -> tuple[str, str, float]:
  """("eval.accuracy", ">=", 0.95) from "eval.accuracy>=0.95"."""
  match = _TARGET.match(text.strip())
  if not match:
    raise SweepError(f"target {text!r}: write e.g. eval.accuracy>=0.95 or train.loss<=0.1")
  split, metric, op, value = match.groups()
  return f"{split}.{metric}", op, float(value)


def read_curve(workdir: str, name: str) -> tuple[np.ndarray, np.ndarray]:
  """(steps, values) of one run's curve, in step order.

  Args:
    workdir: a run's workdir.
    name: "SPLIT.METRIC".

  Returns:
    Two 1-D arrays; empty if the run logged no such value.
  """
  split, metric = parse_curve(name)
  points = {}
  # A run killed mid-write leaves a torn last line: read_lines skips it (and says so once).
  for record in records.read_lines(os.path.join(workdir, "metrics.jsonl")):
    if record.get("split") == split and metric in record and "step" in record:
      points[record["step"]] = record[metric]  # a resumed run logs a step again
  steps = np.array(sorted(points), dtype=np.int64)
  return steps, np.array([points[s] for s in steps], dtype=np.float64)


def steps_to_reach(steps: np.ndarray, values: np.ndarray, op: str, value: float) -> float:
  """The first logged step at which the curve meets the target; nan if it never does.

  Args:
    steps, values: a curve (see read_curve); its resolution is the log or eval interval.
    op: ">=" or "<=".
    value: the target.
  """
  met = values >= value if op == ">=" else values <= value
  return float(steps[np.argmax(met)]) if met.any() else math.nan


def mean_curve(
    curves: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Mean and standard deviation over runs, at the steps all of them logged.

  Returns:
    (steps, mean, std); std is 0 for a single run.
  """
  common = set(curves[0][0].tolist())
  for steps, _ in curves[1:]:
    common &= set(steps.tolist())
  steps = np.array(sorted(common), dtype=np.int64)
  stacked = np.stack([values[np.searchsorted(s, steps)] for s, values in curves])
  std = stacked.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(len(steps))
  return steps, stacked.mean(axis=0), std


def plot_curves(
    path: str,
    groups: Sequence[tuple[str, str, Sequence[str]]],
    names: Sequence[str],
    log_y: bool = False,
) -> None:
  """Mean curves (shaded ± std over seeds) of groups of runs, saved as a PNG.

  Args:
    path: the PNG to write.
    groups: (panel title, label, the workdirs of the group's runs, i.e. its
      seeds) per group; groups with the same title share a panel (one panel:
      give every group the same title, e.g. "").
    names: curves to draw, e.g. ["eval.accuracy"] or ["train.accuracy",
      "eval.accuracy"]; the first is drawn solid, the others dashed and dotted.
    log_y: a logarithmic y axis (for losses).
  """
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  titles = list(dict.fromkeys(title for title, _, _ in groups))
  lines_per_panel = max(sum(t == title for t, _, _ in groups) for title in titles) * len(names)
  # Many lines: one legend under the panels (they share their labels) rather than on them.
  below = lines_per_panel > 6
  legend_rows = -(-lines_per_panel // 2) if below else 0
  figure, axes = plt.subplots(
      1,
      len(titles),
      squeeze=False,
      sharey=True,
      figsize=(5.5 * len(titles), 4 + 0.22 * legend_rows),
  )
  styles = ["-", "--", ":", "-."]
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for title, ax in zip(titles, axes[0]):
    members = [(label, workdirs) for t, label, workdirs in groups if t == title]
    for i, (label, workdirs) in enumerate(members):
      color = colors[i % len(colors)]
      for name, style in zip(names, styles):
        runs = [read_curve(w, name) for w in workdirs]
        runs = [c for c in runs if len(c[0])]
        if not runs:
          continue
        steps, mean, std = mean_curve(runs)
        text = label if len(names) == 1 else f"{label}, {name.split('.')[0]}"
        ax.plot(steps, mean, style, color=color, label=text)
        if len(runs) > 1:
          ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    if log_y:
      ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0] and not below:
      ax.legend(fontsize=7)
  seeds = max(len(workdirs) for _, _, workdirs in groups)
  spread = f" (mean, ± std over {seeds} seeds)" if seeds > 1 else ""
  axes[0][0].set_ylabel(" / ".join(names) + spread, fontsize=9)
  if below:
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.22 * legend_rows / figure.get_figheight(), 1, 1))
  else:
    figure.tight_layout()
  figure.savefig(path, dpi=110)
  plt.close(figure)
