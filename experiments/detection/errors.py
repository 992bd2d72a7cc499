"""Where a trained detector misses on the test scenes: small digits, touching digits, and
which digits it takes for which.

    python experiments/detection/errors.py --table=experiments/detection/errors.md \
        --workdir=/tmp/detection/lite0_scratch/seed=0 \
        --workdir=/tmp/detection/lite0_imagenet/seed=0 --workdir=/tmp/detection/resnet18/seed=0

For each workdir (a run of config.py's sweeps) the run's model detects the
digits of its eval scenes. A digit counts as found when a detection scoring
at least --min_score covers it with IoU >= 0.5 and has its class; as
confused when no such detection has its class but one of another class
covers it so (the most confident of those is what the digit was taken for);
otherwise as missed. The digits are split by box area (in thirds over the
test digits) and by whether their box meets another digit's box.
"""

from __future__ import annotations

import argparse
import collections

import jax
import numpy as np

from cnn_jax import data, records
from cnn_jax.data import scenes
from cnn_jax.tasks import boxes as box_conventions
from cnn_jax.visualize import trained

CHUNK = 250
MATCH_IOU = 0.5


def detections(run: trained.TrainedModel, images: np.ndarray) -> np.ndarray:
  """The run's top 100 detections per image: (N, 100, 6) of normalized box, score, class."""
  detect = jax.jit(lambda x: run.task.predict(run.model.apply(run.variables, x, train=False)))
  return np.concatenate(
      [
          np.asarray(detect(run.network_input(images[i : i + CHUNK])))
          for i in range(0, len(images), CHUNK)
      ]
  )


def digit_records(objects: dict, found: np.ndarray, size: int, min_score: float) -> list[dict]:
  """One record per true digit: its class, box area, whether it touches, what covered it.

  Args:
    objects: the scenes' "boxes" (N, K, 4 normalized), "box_labels", "box_valid".
    found: their detections (N, 100, 6).
    size: the scenes' side in pixels.
    min_score: the lowest score of a detection that counts.

  Returns:
    Records with "label", "area" (pixels), "touching", "outcome" ("found",
    "confused" or "missed") and "as" (the class taken, when confused).
  """
  digits = []
  for i in range(len(found)):
    valid = objects["box_valid"][i].astype(bool)
    truth = box_conventions.normalized_to_pixels(objects["boxes"][i][valid], size, size)
    labels = objects["box_labels"][i][valid].astype(int)
    kept = found[i][found[i][:, 4] >= min_score]
    covering = (
        box_conventions.pairwise_iou(
            truth, box_conventions.normalized_to_pixels(kept[:, :4], size, size)
        )
        >= MATCH_IOU
    )
    touching = scenes.box_ious(truth, truth) > 0
    for k, label in enumerate(labels):
      classes = kept[covering[k], 5].astype(int)  # by score, highest first
      outcome = "found" if label in classes else "confused" if len(classes) else "missed"
      digits.append(
          {
              "label": int(label),
              "area": float(box_conventions.area(truth[k])),
              "touching": bool(touching[k].sum() > 1),
              "outcome": outcome,
              "as": int(classes[0]) if outcome == "confused" else None,
          }
      )
  return digits


def summary_lines(name: str, digits: list[dict], min_score: float) -> list[str]:
  """The share of digits found by size and by touching, and the most frequent confusions."""
  area = np.array([d["area"] for d in digits])
  outcome = np.array([d["outcome"] for d in digits])
  low, high = np.quantile(area, [1 / 3, 2 / 3])
  touching = np.array([d["touching"] for d in digits])
  groups = [
      ("all", np.ones(len(digits), bool)),
      (f"small (box < {low:.0f} pixels)", area < low),
      (f"medium ({low:.0f}-{high:.0f})", (area >= low) & (area < high)),
      (f"large (>= {high:.0f})", area >= high),
      ("isolated (its box meets no other)", ~touching),
      ("touching (its box meets another's)", touching),
  ]
  lines = [
      f"## {name}",
      "",
      f"Detections scoring at least {min_score:g}; a digit is found by one of its class with"
      f" IoU >= {MATCH_IOU}.",
      "",
      "| digits | count | found (%) | confused (%) | missed (%) |",
      "|---|---|---|---|---|",
  ]
  for label, chosen in groups:
    shares = [100 * np.mean(outcome[chosen] == o) for o in ("found", "confused", "missed")]
    lines.append(
        f"| {label} | {int(chosen.sum())} | " + " | ".join(f"{s:.1f}" for s in shares) + " |"
    )
  confusions = collections.Counter((d["label"], d["as"]) for d in digits if d["as"] is not None)
  per_class = collections.Counter(d["label"] for d in digits)
  lines += ["", "Digits taken for another digit, most frequent first (share of that digit):", ""]
  lines += [
      f"- {true} as {other}: {count} ({100 * count / per_class[true]:.1f}%)"
      for (true, other), count in confusions.most_common(6)
  ]
  return lines + [""]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", action="append", required=True, help="a detection run")
  parser.add_argument("--table", required=True, help="the markdown file to write")
  parser.add_argument("--min_score", type=float, default=0.3, help="the lowest score that counts")
  args = parser.parse_args()
  lines = [
      "# Where the detectors miss (test scenes)",
      "",
      "Made by experiments/detection/errors.py.",
      "",
  ]
  for workdir in args.workdir:
    run = trained.load(workdir)
    config = run.config
    arrays = data.as_numpy(
        config.dataset,
        config.eval_split,
        config.image_size,
        config.data_dir or None,
        targets=run.task.targets,
    )
    found = detections(run, arrays["image"])
    digits = digit_records(arrays, found, config.image_size, args.min_score)
    lines += summary_lines(f"{workdir} (step {run.step})", digits, args.min_score)
  records.write_text(args.table, "\n".join(lines))
  print(f"wrote {args.table}")


if __name__ == "__main__":
  main()
