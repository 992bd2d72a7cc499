"""LeCun et al. (1998), Figure 9, beside our runs: writes experiments/lecun1998/table.md.

    python experiments/lecun1998/table.py

Reads the sweep.csv that each group's sweep wrote (see config.py) and puts
every row's test error (mean ± std over 3 seeds) next to the paper's, with
the comparisons the paper's table makes as differences with their standard
errors.
"""

from __future__ import annotations

import argparse
import csv
import os

from cnn_jax.sweep.tables import difference, mean_std

HERE = os.path.dirname(os.path.abspath(__file__))

# (label, group, fc_widths in the sweep's table or None, paper's test error %)
ROWS = [
    ("LeNet-5", "lenet5", None, 0.95),
    ("LeNet-5, with distortions", "distortions", None, 0.8),
    ("LeNet-5 modern (ReLU, max pooling, full C3, softmax)", "modern", None, None),
    ("300-100 fully connected", "fc", "(300, 100)", 3.05),
    ("300 hidden units", "fc", "(300,)", 4.7),
    ("linear classifier", "fc", "()", 12.0),
]
COMPARISONS = [  # (a, b, what the paper's numbers say of a - b)
    ("LeNet-5, with distortions", "LeNet-5", -0.15),
    ("LeNet-5 modern (ReLU, max pooling, full C3, softmax)", "LeNet-5", None),
    ("LeNet-5", "300-100 fully connected", -2.1),
    ("300-100 fully connected", "300 hidden units", -1.65),
]


def _runs(sweeps: str, group: str, widths: str | None) -> list[dict[str, str]]:
  path = os.path.join(sweeps, group, "sweep.csv")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    rows = [r for r in csv.DictReader(f) if r["status"].startswith("ok")]
  return [r for r in rows if widths is None or r.get("model_kwargs.fc_widths") == widths]


def _verdict(mean: float, std: float, paper: float | None) -> str:
  if paper is None:
    return "(not in the paper)"
  if mean <= paper:
    return "yes, better"
  if mean <= paper + 2 * std:
    return "yes, within 2 std"
  return f"no: {mean - paper:+.2f} points"


def table(sweeps: str = HERE) -> str:
  """The markdown of table.md, from the sweep.csv files in sweeps/<group>/."""
  errors, lines = {}, [
      "# LeCun et al. (1998), Figure 9, on MNIST: the paper beside this codebase",
      "",
      "Test error on the 10,000 MNIST test images; ours is the mean ± std over seeds 0, 1, 2.",
      "Made by `python experiments/lecun1998/table.py` from the sweeps in config.py.",
      "",
      "| row | paper | ours | reproduced (ours <= paper + 2 std) | parameters | "
      "wall time per run (2 CPU cores) |",
      "|---|---|---|---|---|---|",
  ]
  for label, group, widths, paper in ROWS:
    runs = _runs(sweeps, group, widths)
    if not runs:
      lines.append(f"| {label} | {paper or '-'}% | not run | | | |")
      continue
    errors[label] = [100 * (1 - float(r["accuracy"])) for r in runs]
    mean, std = mean_std(errors[label])
    wall, _ = mean_std([float(r["wall_seconds"]) for r in runs])
    paper_text = f"{paper}%" if paper is not None else "-"
    lines.append(
        f"| {label} | {paper_text} | {mean:.2f} ± {std:.2f}% (n={len(runs)}) | "
        f"{_verdict(mean, std, paper)} | {int(runs[0]['num_params']):,} | "
        f"{wall / 60:.1f} min |"
    )
  lines += ["", "| comparison | paper | ours: difference ± standard error |", "|---|---|---|"]
  for a, b, paper in COMPARISONS:
    if a in errors and b in errors:
      diff, error = difference(errors[a], errors[b])
      paper_text = f"{paper:+.2f}" if paper is not None else "-"
      lines.append(f"| {a} - {b} | {paper_text} | {diff:+.2f} ± {error:.2f} points |")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sweeps", default=HERE, help="folder of the groups' sweep folders")
  parser.add_argument("--table", default=os.path.join(HERE, "table.md"), help="file to write")
  args = parser.parse_args()
  text = table(args.sweeps)
  with open(args.table, "w") as f:
    f.write(text)
  print(text)
