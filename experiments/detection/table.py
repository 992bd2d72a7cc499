"""The three detection settings side by side: writes experiments/detection/table.md.

    python experiments/detection/table.py --sweeps=experiments/detection \
        --table=experiments/detection/table.md

Reads the sweep.csv that each setting's sweep wrote (SWEEPS/<group>/, see
config.py): COCO's AP (IoU 0.50:0.95), AP50, AP75, AP of small objects and
AR with 100 detections on the 2,000 test scenes, mean ± std over the seeds,
then the comparisons as differences ± their standard errors. The scenes'
digits are all COCO-small (under 32x32 pixels), so AP_medium and AP_large
have no objects (pycocotools' -1) and are not shown.
"""

from __future__ import annotations

from cnn_jax.sweep import settings_table

# (group folder, label)
SETTINGS = [
    ("lite0_scratch", "CenterNet, Lite0 from scratch"),
    ("lite0_imagenet", "CenterNet, Lite0 from ImageNet"),
    ("resnet18", "CenterNet, ResNet-18/2 from scratch"),
]
# (a, b): the table shows a - b.
COMPARISONS = [
    ("lite0_imagenet", "lite0_scratch"),
    ("resnet18", "lite0_scratch"),
    ("resnet18", "lite0_imagenet"),
]
METRICS = [
    ("last eval.AP", "AP"),
    ("last eval.AP50", "AP50"),
    ("last eval.AP75", "AP75"),
    ("last eval.AP_small", "AP small"),
    ("last eval.AR100", "AR100"),
]


def table_lines(runs: settings_table.Runs) -> list[str]:
  """The table's markdown lines from each setting's finished runs."""
  return [
      "# Object detection on digit scenes (mnist_scenes, 2,000 test scenes)",
      "",
      "COCO's metrics, mean ± std over seeds, in percent; made by experiments/detection/table.py.",
      "",
      *settings_table.summary_lines(runs, SETTINGS, [(c, f"{h} (%)") for c, h in METRICS]),
      "",
      "Differences (mean difference ± its standard error over seeds, in points):",
      "",
      *settings_table.comparison_lines(runs, SETTINGS, COMPARISONS, METRICS),
  ]


if __name__ == "__main__":
  settings_table.write_from_command_line(__doc__.split("\n")[0], SETTINGS, table_lines)
