"""LeCun et al. (1998), Figure 9, beside our runs: writes experiments/lecun1998/table.md.

    python experiments/lecun1998/table.py

Two columns of ours beside the paper's figure: *the paper's recipe* at 16
patterns per update, from the results.json that paper_recipe.py wrote in
paper_recipe_batch16/<row>/, and *the modern recipe*, from the sweep.csv that
each group's sweep wrote (config.py). Every row's test error is the mean ±
std over 3 seeds; the comparisons the paper's table makes are differences
with their standard errors. A second table sets the paper's recipe at one
pattern per update (paper_recipe/<row>/, as in the paper) beside the batch
of 16; a third adds the paper's recipe to the modern one a piece at a time
(the ablation).
"""

from __future__ import annotations

import argparse
import csv
import json
import os

from cnn_jax.sweep.tables import difference, mean_std

HERE = os.path.dirname(os.path.abspath(__file__))

PAPER_RECIPE = os.path.join(HERE, "paper_recipe_batch16")
PER_PATTERN = os.path.join(HERE, "paper_recipe")

# (label, the modern recipe's group, fc_widths in its sweep's table or None,
#  paper's test error %, the paper's recipe's folder in PAPER_RECIPE or None)
# The distortion row's command estimates the curvature from Rademacher
# probes (to fit 20 minutes); this row runs LeNet-5 so too, beside the exact one.
PROBED = "LeNet-5, curvature from 4 probes per pattern"
ROWS = [
    ("LeNet-5", "lenet5", None, 0.95, "lenet5"),
    ("LeNet-5, with distortions", "distortions", None, 0.8, "distortions"),
    (PROBED, None, None, 0.95, "lenet5_probes"),
    ("LeNet-4", None, None, 1.1, "lenet4"),
    ("LeNet-1", None, None, 1.7, "lenet1"),
    ("LeNet-5 modern (ReLU, max pooling, full C3, softmax)", "modern", None, None, None),
    ("300-100 fully connected", "fc", "(300, 100)", 3.05, None),
    ("300 hidden units", "fc", "(300,)", 4.7, None),
    ("linear classifier", "fc", "()", 12.0, None),
]
PAPERS, MODERN = "the paper's recipe", "the modern recipe"
# (recipe of a, a, recipe of b, b, what the paper's numbers say of a - b)
COMPARISONS = [
    (PAPERS, "LeNet-5", MODERN, "LeNet-5", None),
    (PAPERS, PROBED, PAPERS, "LeNet-5", None),
    (PAPERS, "LeNet-5, with distortions", PAPERS, PROBED, -0.15),
    (PAPERS, "LeNet-5", PAPERS, "LeNet-4", -0.15),
    (PAPERS, "LeNet-4", PAPERS, "LeNet-1", -0.6),
    (MODERN, "LeNet-5, with distortions", MODERN, "LeNet-5", -0.15),
    (MODERN, "LeNet-5 modern (ReLU, max pooling, full C3, softmax)", MODERN, "LeNet-5", None),
    (MODERN, "LeNet-5", MODERN, "300-100 fully connected", -2.1),
    (MODERN, "300-100 fully connected", MODERN, "300 hidden units", -1.65),
]
# The faithful LeNet-5 from the modern recipe to the paper's, one piece at a
# time: (what is added, the paper's recipe's folder, or None for the modern
# recipe's lenet5 sweep).
ABLATION = [
    ("the modern recipe: Adam at batch 64 for 10 epochs, cross-entropy, standardized input", None),
    (
        "+ the paper's update count: 20 passes, 16 patterns per update (still Adam, "
        "its step size 3e-4 on the paper's schedule)",
        "ablation_updates",
    ),
    ("+ the paper's input scale (background -0.1, ink 1.175)", "ablation_input"),
    ("+ the paper's MAP loss (Eq. 9)", "ablation_loss"),
    ("+ SDLM: the paper's recipe", "lenet5"),
]


def _runs(sweeps: str, group: str | None, widths: str | None) -> list[dict[str, str]]:
  """The modern recipe's finished runs of one row, from its group's sweep.csv."""
  path = os.path.join(sweeps, group or "", "sweep.csv")
  if group is None or not os.path.exists(path):
    return []
  with open(path) as f:
    rows = [r for r in csv.DictReader(f) if r["status"].startswith("ok")]
  return [r for r in rows if widths is None or r.get("model_kwargs.fc_widths") == widths]


def _paper_recipe_runs(paper_recipe: str, folder: str | None) -> list[dict]:
  """The paper's recipe's runs of one row (the first entry of its results.json)."""
  path = os.path.join(paper_recipe, folder or "", "results.json")
  if folder is None or not os.path.exists(path):
    return []
  with open(path) as f:
    return next(iter(json.load(f).values()))


def _verdict(mean: float, std: float, paper: float | None) -> str:
  if paper is None:
    return "(not in the paper)"
  if mean <= paper:
    return "yes, better"
  if mean <= paper + max(0.1, 2 * std):
    return "yes, within max(0.1, 2 std)"
  return f"no: {mean - paper:+.2f} points"


def _cells(errors: list[float], paper: float | None, seconds: list[float]) -> list[str]:
  """[mean ± std, reproduced?, minutes per run] of one row's runs, or "not run"."""
  if not errors:
    return ["not run", "", ""]
  mean, std = mean_std(errors)
  return [
      f"{mean:.2f} ± {std:.2f}% (n={len(errors)})",
      _verdict(mean, std, paper),
      f"{mean_std(seconds)[0] / 60:.1f} min",
  ]


def figure9(
    sweeps: str, paper_recipe: str, one_per_update: str = PER_PATTERN
) -> tuple[list[str], dict[tuple, list[float]]]:
  """The rows of Figure 9 with both recipes, and the test errors by (recipe, row).

  A row not run at 16 patterns per update shows its run at one (marked so).
  """
  errors, lines = {}, [
      "| row | paper | the paper's recipe (16 per update): test error | its training error | "
      "reproduced (ours <= paper + max(0.1, 2 std)) | wall time per run | "
      "the modern recipe: test error | reproduced | wall time per run | parameters |",
      "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for label, group, widths, paper, folder in ROWS:
    paper_runs, modern_runs = _paper_recipe_runs(paper_recipe, folder), _runs(sweeps, group, widths)
    single = not paper_runs and bool(_paper_recipe_runs(one_per_update, folder))
    if single:
      paper_runs = _paper_recipe_runs(one_per_update, folder)
    paper_errors = [r["test_error"] for r in paper_runs]
    modern_errors = [100 * (1 - float(r["accuracy"])) for r in modern_runs]
    errors[PAPERS, label], errors[MODERN, label] = paper_errors, modern_errors
    test, verdict, minutes = _cells(paper_errors, paper, [r["seconds"] for r in paper_runs])
    test += " (1 per update)" if single else ""
    train = f"{mean_std([r['train_error'] for r in paper_runs])[0]:.2f}%" if paper_runs else ""
    modern = _cells(modern_errors, paper, [float(r["wall_seconds"]) for r in modern_runs])
    counts = [r["parameters"] for r in paper_runs] + [int(r["num_params"]) for r in modern_runs]
    paper_text = f"{paper}%" if paper is not None else "-"
    lines.append(
        f"| {label} | {paper_text} | {test} | {train} | {verdict} | {minutes} | "
        f"{' | '.join(modern)} | {f'{counts[0]:,}' if counts else ''} |"
    )
  return lines, errors


def ablation(sweeps: str, paper_recipe: str) -> list[str]:
  """The faithful LeNet-5's test error as the paper's recipe replaces the modern one."""
  lines = [
      "| recipe | test error | training error | change in test error from the last row "
      "that ran ± SE |",
      "|---|---|---|---|",
  ]
  previous = None
  for label, folder in ABLATION:
    if folder is None:
      runs = _runs(sweeps, "lenet5", None)
      errors, train = [100 * (1 - float(r["accuracy"])) for r in runs], []
    else:
      runs = _paper_recipe_runs(paper_recipe, folder)
      errors, train = [r["test_error"] for r in runs], [r["train_error"] for r in runs]
    if not errors:
      lines.append(f"| {label} | not run | | |")
      continue
    mean, std = mean_std(errors)
    train_text = "{:.2f} ± {:.2f}%".format(*mean_std(train)) if train else "-"
    change = "{:+.2f} ± {:.2f} points".format(*difference(errors, previous)) if previous else ""
    lines.append(f"| {label} | {mean:.2f} ± {std:.2f}% | {train_text} | {change} |")
    previous = errors
  return lines


def per_pattern(paper_recipe: str, one_per_update: str) -> list[str]:
  """The paper's recipe at one pattern per update beside the batch of 16, row by row."""
  lines = [
      "| row | paper | one pattern per update: test error | its training error | "
      "wall time per run | 16 per update - 1 per update ± SE |",
      "|---|---|---|---|---|---|",
  ]
  for label, _, _, paper, folder in ROWS:
    runs = _paper_recipe_runs(one_per_update, folder)
    if not runs:
      continue
    errors = [r["test_error"] for r in runs]
    test, _, minutes = _cells(errors, paper, [r["seconds"] for r in runs])
    train = "{:.2f} ± {:.2f}%".format(*mean_std([r["train_error"] for r in runs]))
    batched = [r["test_error"] for r in _paper_recipe_runs(paper_recipe, folder)]
    change = "{:+.2f} ± {:.2f} points".format(*difference(batched, errors)) if batched else ""
    lines.append(f"| {label} | {paper}% | {test} | {train} | {minutes} | {change} |")
  return lines


def table(
    sweeps: str = HERE, paper_recipe: str = PAPER_RECIPE, one_per_update: str = PER_PATTERN
) -> str:
  """The markdown of table.md.

  Args:
    sweeps: the folder of the modern recipe's groups, each with its sweep.csv.
    paper_recipe: the folder of the paper's recipe's rows at 16 patterns per
      update, each with its results.json.
    one_per_update: the same at one pattern per update.

  Returns:
    table.md's text: Figure 9 with both recipes, the comparisons, the paper's
    recipe at one pattern per update, and the ablation.
  """
  rows, errors = figure9(sweeps, paper_recipe, one_per_update)
  lines = [
      "# LeCun et al. (1998), Figure 9, on MNIST: the paper beside this codebase",
      "",
      "Test error on the 10,000 MNIST test images; ours is the mean ± std over seeds 0, 1, 2.",
      "Made by `python experiments/lecun1998/table.py` from paper_recipe.py's runs "
      "(paper_recipe_batch16/: 16 patterns per update; paper_recipe/: one) and the sweeps in "
      "config.py.",
      "",
      *rows,
      "",
      "| comparison | paper | ours: difference ± standard error |",
      "|---|---|---|",
  ]
  for recipe_a, a, recipe_b, b, paper in COMPARISONS:
    if errors[recipe_a, a] and errors[recipe_b, b]:
      diff, error = difference(errors[recipe_a, a], errors[recipe_b, b])
      paper_text = f"{paper:+.2f}" if paper is not None else "-"
      lines.append(
          f"| {a} ({recipe_a}) - {b} ({recipe_b}) | {paper_text} | "
          f"{diff:+.2f} ± {error:.2f} points |"
      )
  lines += [
      "",
      "The paper's recipe with one pattern per update, as in the paper:",
      "",
      *per_pattern(paper_recipe, one_per_update),
      "",
      "The faithful LeNet-5, from the modern recipe to the paper's (16 patterns per update):",
      "",
  ]
  return "\n".join(lines + ablation(sweeps, paper_recipe)) + "\n"


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sweeps", default=HERE, help="folder of the groups' sweep folders")
  parser.add_argument(
      "--paper_recipe", default=PAPER_RECIPE, help="folder of the rows at 16 patterns per update"
  )
  parser.add_argument(
      "--one_per_update", default=PER_PATTERN, help="folder of the rows at one pattern per update"
  )
  parser.add_argument("--table", default=os.path.join(HERE, "table.md"), help="file to write")
  args = parser.parse_args()
  text = table(args.sweeps, args.paper_recipe, args.one_per_update)
  with open(args.table, "w") as f:
    f.write(text)
  print(text)
