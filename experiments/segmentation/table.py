"""The three segmentation settings side by side: writes experiments/segmentation/table.md.

    python experiments/segmentation/table.py --sweeps=experiments/segmentation \
        --table=experiments/segmentation/table.md

Reads the sweep.csv that each setting's sweep wrote (SWEEPS/<group>/, see
config.py): mean IoU, pixel accuracy and each class's IoU on the 2,000 test
scenes, mean ± std over the seeds, then the comparisons as differences ±
their standard errors. A class a run never saw in the test masks nor
predicted has no IoU; a cell counts the runs that have one.
"""

from __future__ import annotations

import argparse
import csv
import os

from cnn_jax import records
from cnn_jax.sweep.tables import difference, mean_std

# (group folder, label)
SETTINGS = [
    ("fcn_scratch", "FCN-8s, Lite0 from scratch"),
    ("fcn_imagenet", "FCN-8s, Lite0 from ImageNet"),
    ("unet", "U-Net (unet_small) from scratch"),
]
# (a, b): the table shows a - b.
COMPARISONS = [("fcn_imagenet", "fcn_scratch"), ("unet", "fcn_scratch"), ("unet", "fcn_imagenet")]
CLASSES = ["background", *(f"digit {d}" for d in range(10))]


def read_runs(folder: str) -> list[dict[str, str]]:
  """The finished runs of one sweep (its sweep.csv rows with status ok); [] if it has none."""
  path = os.path.join(folder, "sweep.csv")
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    return [row for row in csv.DictReader(f) if row["status"].startswith("ok")]


def values(runs: list[dict[str, str]], column: str, scale: float = 100.0) -> list[float]:
  """A column's numbers over the runs, in percent; runs without a value are left out."""
  return [scale * float(r[column]) for r in runs if r.get(column, "") not in ("", "nan")]


def cell(numbers: list[float], runs: int) -> str:
  """mean ± std (one value alone), and how many runs had none."""
  if not numbers:
    return "n/a"
  mean, std = mean_std(numbers)
  text = f"{mean:.1f} ± {std:.1f}" if len(numbers) > 1 else f"{mean:.1f}"
  return text + (f" ({len(numbers)} of {runs} runs)" if len(numbers) < runs else "")


def summary_lines(runs: dict[str, list[dict[str, str]]]) -> list[str]:
  """The settings' mean IoU, pixel accuracy and wall time per run."""
  lines = [
      "| setting | runs | mean IoU (%) | pixel accuracy (%) | wall s per run |",
      "|---|---|---|---|---|",
  ]
  for group, label in SETTINGS:
    found = runs[group]
    wall = values(found, "wall_seconds", 1.0)
    lines.append(
        f"| {label} | {len(found)} | {cell(values(found, 'last eval.mean_iou'), len(found))} "
        f"| {cell(values(found, 'accuracy'), len(found))} "
        f"| {mean_std(wall)[0]:.0f} |"
        if wall
        else f"| {label} | 0 | not run | | |"
    )
  return lines


def comparison_lines(runs: dict[str, list[dict[str, str]]]) -> list[str]:
  """Each comparison's difference in mean IoU and per class, ± its standard error."""
  labels = dict(SETTINGS)
  columns = ["last eval.mean_iou", *(f"last eval.iou_{c}" for c in range(len(CLASSES)))]
  lines = [
      "| comparison | mean IoU | " + " | ".join(CLASSES) + " |",
      "|---|" + "---|" * (1 + len(CLASSES)),
  ]
  for a, b in COMPARISONS:
    cells = []
    for column in columns:
      x, y = values(runs[a], column), values(runs[b], column)
      cells.append(
          "{:+.1f} ± {:.1f}".format(*difference(x, y)) if len(x) > 1 and len(y) > 1 else "n/a"
      )
    lines.append(f"| {labels[a]} - {labels[b]} | " + " | ".join(cells) + " |")
  return lines


def per_class_lines(runs: dict[str, list[dict[str, str]]]) -> list[str]:
  """Each class's IoU per setting, mean ± std over the seeds."""
  lines = ["| class | " + " | ".join(label for _, label in SETTINGS) + " |"]
  lines.append("|---|" + "---|" * len(SETTINGS))
  for c, name in enumerate(CLASSES):
    cells = [cell(values(runs[g], f"last eval.iou_{c}"), len(runs[g])) for g, _ in SETTINGS]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return lines


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sweeps", required=True, help="the folder holding each group's sweep")
  parser.add_argument("--table", required=True, help="the markdown file to write")
  args = parser.parse_args()
  runs = {group: read_runs(os.path.join(args.sweeps, group)) for group, _ in SETTINGS}
  lines = [
      "# Semantic segmentation of digit scenes (mnist_scenes, 2,000 test scenes)",
      "",
      "Mean ± std over seeds, in percent; made by experiments/segmentation/table.py.",
      "",
      *summary_lines(runs),
      "",
      "Differences (mean difference ± its standard error over seeds, in points):",
      "",
      *comparison_lines(runs),
      "",
      "IoU of each class:",
      "",
      *per_class_lines(runs),
  ]
  records.write_text(args.table, "\n".join(lines) + "\n")
  print(f"wrote {args.table}")


if __name__ == "__main__":
  main()
