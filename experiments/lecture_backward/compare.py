"""How far training with the lecture's backward pass strays from XLA's, seed by seed.

    python experiments/lecture_backward/compare.py --workdir_root=/tmp/lecture_backward \
        --out=experiments/lecture_backward

Reads the sweep's runs (conv_impl=xla,seed=S and conv_impl=lecture,seed=S)
and writes compare.md: the largest difference of the logged training loss
over the run, the final eval losses and accuracies, and the training speed
(median images/s over the logged intervals after the first, which holds the
compilation).
"""

import os
import sys

import numpy as np
from absl import app, flags

from cnn_jax.sweep import curves

_ROOT = flags.DEFINE_string("workdir_root", None, "the sweep's folder")
_OUT = flags.DEFINE_string("out", None, "where to write compare.md (default: workdir_root)")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "the sweep's seeds")


def compare(root: str, seed: str) -> dict:
  """The numbers of one seed's pair of runs."""
  runs = {impl: os.path.join(root, f"conv_impl={impl},seed={seed}") for impl in ("xla", "lecture")}
  for impl, workdir in runs.items():
    if not os.path.exists(os.path.join(workdir, "results.json")):
      sys.exit(f"error: {workdir} has no results.json; run the sweep first (see this file)")
  loss = {impl: curves.read_curve(w, "train.loss") for impl, w in runs.items()}
  if not np.array_equal(loss["xla"][0], loss["lecture"][0]):
    sys.exit(f"error: seed {seed}: the two runs logged different steps; compare equal configs")
  gap = np.abs(loss["xla"][1] - loss["lecture"][1])
  speed = {
      impl: float(np.median(curves.read_curve(w, "train.images_per_s")[1][1:]))
      for impl, w in runs.items()
  }
  final = {
      impl: (curves.read_curve(w, "eval.loss")[1][-1], curves.read_curve(w, "eval.accuracy")[1][-1])
      for impl, w in runs.items()
  }
  return {
      "seed": seed,
      "max_gap": gap.max(),
      "gap_step": int(loss["xla"][0][gap.argmax()]),
      "loss_at_gap": loss["xla"][1][gap.argmax()],
      "final": final,
      "speed": speed,
  }


def main(argv):
  del argv
  rows = [compare(_ROOT.value, seed) for seed in _SEEDS.value]
  lines = [
      "| seed | max train-loss gap (step, XLA loss there) | eval loss XLA / lecture | "
      "eval accuracy XLA / lecture | images/s XLA / lecture |",
      "|---|---|---|---|---|",
  ]
  for r in rows:
    (xla_loss, xla_acc), (lec_loss, lec_acc) = r["final"]["xla"], r["final"]["lecture"]
    lines.append(
        f"| {r['seed']} | {r['max_gap']:.2e} (step {r['gap_step']}, {r['loss_at_gap']:.4f}) | "
        f"{xla_loss:.4f} / {lec_loss:.4f} | {xla_acc:.4f} / {lec_acc:.4f} | "
        f"{r['speed']['xla']:,.0f} / {r['speed']['lecture']:,.0f} |"
    )
  out = _OUT.value or _ROOT.value
  with open(os.path.join(out, "compare.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  flags.mark_flag_as_required("workdir_root")
  app.run(main)
