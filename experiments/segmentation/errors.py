"""Where a trained segmentation run errs on the test scenes: small digits, touching digits,
and which digits it takes for which.

    python experiments/segmentation/errors.py --table=experiments/segmentation/errors.md \
        --workdir=/tmp/segmentation/fcn_scratch/seed=0 \
        --workdir=/tmp/segmentation/fcn_imagenet/seed=0 --workdir=/tmp/segmentation/unet/seed=0

For each workdir (a run of config.py's sweeps) the run's model labels every
pixel of its eval scenes. Each digit of a scene is scored by its recall:
the share of its pixels (those of its class inside its box) that got its
class. The digits are split by size (ink pixels, in thirds over the test
digits) and by whether their box meets another digit's box; the pixels of
digits labelled as another digit give the confusions, the most frequent
first.
"""

from __future__ import annotations

import argparse
import collections

import jax
import numpy as np

from cnn_jax import data, records
from cnn_jax.data import scenes, sources
from cnn_jax.visualize import trained

CHUNK = 250


def predicted_masks(run: trained.TrainedModel, images: np.ndarray) -> np.ndarray:
  """The run's class per pixel, int (N, H, W)."""
  apply = jax.jit(lambda x: run.model.apply(run.variables, x, train=False).argmax(-1))
  return np.concatenate(
      [
          np.asarray(apply(run.network_input(images[i : i + CHUNK])))
          for i in range(0, len(images), CHUNK)
      ]
  )


def _other_digits(predicted: np.ndarray, own: int) -> collections.Counter:
  """How many of a digit's pixels got each other digit's class (background and its own aside)."""
  classes, counts = np.unique(predicted, return_counts=True)
  return collections.Counter({int(c): int(n) for c, n in zip(classes, counts) if c not in (0, own)})


def digit_records(config, masks: np.ndarray, predicted: np.ndarray) -> list[dict]:
  """One record per digit of the eval scenes: its class, ink pixels, recall, whether it touches."""
  source = sources.load(config.dataset, config.eval_split, config.data_dir or None)
  found = []
  for i in range(len(masks)):
    objects = source[i]["objects"]
    size = masks.shape[1]
    boxes = np.array([np.round(np.asarray(b) * size) for b in objects["bbox"]], np.int64)
    touching = scenes.box_ious(boxes, boxes) > 0
    for k, (box, label) in enumerate(zip(boxes, objects["label"])):
      ymin, xmin, ymax, xmax = box
      region = masks[i, ymin:ymax, xmin:xmax] == int(label) + 1
      got = predicted[i, ymin:ymax, xmin:xmax][region]
      found.append(
          {
              "label": int(label),
              "ink": int(region.sum()),
              "recall": float(np.mean(got == int(label) + 1)) if got.size else float("nan"),
              "touching": bool(touching[k].sum() > 1),
              "as": _other_digits(got, int(label) + 1),
          }
      )
  return found


def summary_lines(name: str, digits: list[dict]) -> list[str]:
  """Mean recall by size and by touching, and the most frequent confusions."""
  ink = np.array([d["ink"] for d in digits])
  recall = np.array([d["recall"] for d in digits])
  low, high = np.quantile(ink, [1 / 3, 2 / 3])
  groups = [
      (f"small (< {low:.0f} ink pixels)", ink < low),
      (f"medium ({low:.0f}-{high:.0f})", (ink >= low) & (ink < high)),
      (f"large (>= {high:.0f})", ink >= high),
      ("isolated (its box meets no other)", np.array([not d["touching"] for d in digits])),
      ("touching (its box meets another's)", np.array([d["touching"] for d in digits])),
  ]
  lines = [f"## {name}", "", "| digits | count | mean recall (%) |", "|---|---|---|"]
  lines += [f"| all | {len(digits)} | {100 * np.nanmean(recall):.1f} |"]
  lines += [
      f"| {label} | {int(chosen.sum())} | {100 * np.nanmean(recall[chosen]):.1f} |"
      for label, chosen in groups
  ]
  confusions = collections.Counter()
  pixels = collections.Counter()
  for d in digits:
    pixels[d["label"]] += d["ink"]
    for predicted, count in d["as"].items():
      confusions[(d["label"], predicted - 1)] += count
  lines += [
      "",
      "Digit pixels labelled as another digit, most frequent first (share of the digit's pixels):",
      "",
  ]
  lines += [
      f"- {true} as {other}: {count:,} pixels ({100 * count / pixels[true]:.1f}%)"
      for (true, other), count in confusions.most_common(6)
  ]
  return lines + [""]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", action="append", required=True, help="a segmentation run")
  parser.add_argument("--table", required=True, help="the markdown file to write")
  args = parser.parse_args()
  lines = [
      "# Where the segmentation runs err (test scenes)",
      "",
      "Made by experiments/segmentation/errors.py.",
      "",
  ]
  for workdir in args.workdir:
    run = trained.load(workdir)
    arrays = data.as_numpy(
        run.config.dataset,
        run.config.eval_split,
        run.config.image_size,
        run.config.data_dir or None,
        targets=("segmentation_mask",),
    )
    predicted = predicted_masks(run, arrays["image"])
    digits = digit_records(run.config, arrays["segmentation_mask"].astype(np.int64), predicted)
    lines += summary_lines(f"{workdir} (step {run.step})", digits)
  records.write_text(args.table, "\n".join(lines))
  print(f"wrote {args.table}")


if __name__ == "__main__":
  main()
