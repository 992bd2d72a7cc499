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

from cnn_jax.sweep import settings_table
from cnn_jax.sweep.settings_table import column_values, mean_std_cell

# (group folder, label)
SETTINGS = [
    ("fcn_scratch", "FCN-8s, Lite0 from scratch"),
    ("fcn_imagenet", "FCN-8s, Lite0 from ImageNet"),
    ("unet", "U-Net (unet_small) from scratch"),
]
# (a, b): the table shows a - b.
COMPARISONS = [("fcn_imagenet", "fcn_scratch"), ("unet", "fcn_scratch"), ("unet", "fcn_imagenet")]
CLASSES = ["background", *(f"digit {d}" for d in range(10))]


SUMMARY = [("last eval.mean_iou", "mean IoU (%)"), ("accuracy", "pixel accuracy (%)")]
DIFFERENCES = [
    ("last eval.mean_iou", "mean IoU"),
    *((f"last eval.iou_{c}", name) for c, name in enumerate(CLASSES)),
]


def per_class_lines(runs: dict[str, list[dict[str, str]]]) -> list[str]:
  """Each class's IoU per setting, mean ± std over the seeds."""
  lines = ["| class | " + " | ".join(label for _, label in SETTINGS) + " |"]
  lines.append("|---|" + "---|" * len(SETTINGS))
  for c, name in enumerate(CLASSES):
    cells = [
        mean_std_cell(column_values(runs[g], f"last eval.iou_{c}"), len(runs[g]))
        for g, _ in SETTINGS
    ]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return lines


def table_lines(runs: settings_table.Runs) -> list[str]:
  """The table's markdown lines from each setting's finished runs."""
  return [
      "# Semantic segmentation of digit scenes (mnist_scenes, 2,000 test scenes)",
      "",
      "Mean ± std over seeds, in percent; made by experiments/segmentation/table.py.",
      "",
      *settings_table.summary_lines(runs, SETTINGS, SUMMARY),
      "",
      "Differences (mean difference ± its standard error over seeds, in points):",
      "",
      *settings_table.comparison_lines(runs, SETTINGS, COMPARISONS, DIFFERENCES),
      "",
      "IoU of each class:",
      "",
      *per_class_lines(runs),
  ]


if __name__ == "__main__":
  settings_table.write_from_command_line(__doc__.split("\n")[0], SETTINGS, table_lines)
