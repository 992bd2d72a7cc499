"""Adebayo et al.'s cascading randomization test on a trained run, as a table.

    python -m cnn_jax.main --config=configs/default.py --workdir=/tmp/cnn_jax_default
    python experiments/visualization/sanity_checks.py --workdir=/tmp/cnn_jax_default

For vanilla gradient, Grad-CAM (at C3_act) and guided backprop, prints the
Spearman rank correlation between the trained model's |map| and the map after
re-initializing the layers from the logits down to each layer, averaged over
16 eval images and over the given random draws. About a minute on 2 CPU cores.
"""

import numpy as np
from absl import app, flags

from cnn_jax.visualize import attribution, sanity, trained

_WORKDIR = flags.DEFINE_string("workdir", None, "a trained digits run")
_IMAGES = flags.DEFINE_integer("images", 16, "eval images")
_SEEDS = flags.DEFINE_multi_integer("seed", [1, 2, 3], "random re-initializations")
flags.mark_flag_as_required("workdir")


def main(argv):
  del argv
  run = trained.load(_WORKDIR.value)
  images, labels = run.examples(_IMAGES.value)
  x = run.normalize(images)
  methods = {
      "vanilla gradient": lambda v: attribution.heatmap(
          attribution.vanilla_gradient(run.model, v, x, labels)),
      "Grad-CAM (C3_act)": lambda v: attribution.gradcam(run.model, v, x, labels, "C3_act"),
      "guided backprop": lambda v: attribution.heatmap(
          attribution.guided_backprop(run.model, v, x, labels)),
  }
  layers = None
  rows = []
  for name, explain in methods.items():
    draws = [sanity.cascading_randomization(run.model, run.variables, explain, x[:1], seed=s)
             for s in _SEEDS.value]
    layers = [layer for layer, _ in draws[0]]
    values = np.array([[v for _, v in d] for d in draws])
    rows.append((name, values.mean(axis=0), values.min(axis=0), values.max(axis=0)))
  print("| method | " + " | ".join(f"up to {l}" for l in layers) + " |")
  print("|---|" + "---|" * len(layers))
  for name, mean, low, high in rows:
    cells = [f"{m:.2f} ({lo:.2f}-{hi:.2f})" for m, lo, hi in zip(mean, low, high)]
    print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  app.run(main)
