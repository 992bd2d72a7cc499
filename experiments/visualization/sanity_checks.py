"""Sanity checks of the maps on a trained run, as tables.

1. Adebayo et al.'s cascading randomization test.
2. Occlusion: how much the true class's probability drops when the square
   covers strokes vs empty border, for each occluder value.

    python -m cnn_jax.main --config=configs/default.py --workdir=/tmp/cnn_jax_default
    python experiments/visualization/sanity_checks.py --workdir=/tmp/cnn_jax_default

For vanilla gradient, Grad-CAM (at C3_act) and guided backprop, prints the
Spearman rank correlation between the trained model's |map| and the map after
re-initializing the layers from the logits down to each layer, averaged over
16 eval images and over the given random draws, and the same for two
independently initialized networks (the floor), on the whole map and
without its 4-pixel border. Then, for 8x8 squares at
stride 4, the mean drop of P(true class) over positions whose square covers at
least 30% ink (pixels > 0.5) vs no ink at all. About two minutes on 2 CPU cores.
"""

import numpy as np
from absl import app, flags

from cnn_jax.visualize import attribution, sanity, trained
from cnn_jax.visualize.occlusion import occlusion

_WORKDIR = flags.DEFINE_string("workdir", None, "a trained digits run")
_IMAGES = flags.DEFINE_integer("images", 16, "eval images")
_SEEDS = flags.DEFINE_multi_integer("seed", [1, 2, 3], "random re-initializations")
flags.mark_flag_as_required("workdir")


def main(argv):
  del argv
  run = trained.load(_WORKDIR.value)
  images, labels = run.examples(_IMAGES.value)
  x = run.network_input(images)
  methods = {
      "vanilla gradient": lambda v: attribution.heatmap(
          attribution.vanilla_gradient(run.model, v, x, labels)
      ),
      "Grad-CAM (C3_act)": lambda v: attribution.gradcam(run.model, v, x, labels, "C3_act"),
      "guided backprop": lambda v: attribution.heatmap(
          attribution.guided_backprop(run.model, v, x, labels)
      ),
  }
  layers = None
  rows = []
  for name, explain in methods.items():
    draws = [
        sanity.cascading_randomization(run.model, run.variables, explain, x[:1], seed=s)
        for s in _SEEDS.value
    ]
    layers = [layer for layer, _ in draws[0]]
    values = np.array([[v for _, v in d] for d in draws])
    rows.append((name, values.mean(axis=0), values.min(axis=0), values.max(axis=0)))
  print("| method | " + " | ".join(f"up to {layer}" for layer in layers) + " |")
  print("|---|" + "---|" * len(layers))
  for name, mean, low, high in rows:
    cells = [f"{m:.2f} ({lo:.2f}-{hi:.2f})" for m, lo, hi in zip(mean, low, high)]
    print(f"| {name} | " + " | ".join(cells) + " |")

  # What is left once every layer is random, against what two random
  # networks share, on the whole map and without a 4-pixel border.
  print(
      "\n| method | trained vs all random | random vs random | same, 4-pixel border left out |"
      "\n|---|---|---|---|"
  )
  for (name, explain), (_, mean, _, _) in zip(methods.items(), rows):
    floors = [
        sanity.random_baseline(
            run.model, run.variables, explain, x[:1], seeds=(100 + s, 200 + s), margin=m
        )
        for m in (0, 4)
        for s in _SEEDS.value
    ]
    inner = np.mean(
        [
            sanity.cascading_randomization(
                run.model, run.variables, explain, x[:1], seed=s, margin=4
            )[-1][1]
            for s in _SEEDS.value
        ]
    )
    half = len(floors) // 2
    print(
        f"| {name} | {mean[-1]:.2f} | {np.mean(floors[:half]):.2f} | "
        f"{inner:.2f} vs {np.mean(floors[half:]):.2f} |"
    )

  window, stride = 8, 4
  ink = run.to_display(x)[..., 0] > 0.5
  print("\n| occluder | drop on strokes | drop on empty border |\n|---|---|---|")
  for name, pixel in (
      ("black (background)", 0.0),
      ("dataset mean", run.mean[0]),
      ("gray 0.5", 0.5),
  ):
    maps = occlusion(
        run.model,
        run.variables,
        x,
        labels,
        window=window,
        stride=stride,
        fill=(pixel - run.mean[0]) / run.std[0],
    )
    drop = np.asarray(maps.unoccluded)[:, None, None] - np.asarray(maps.probability)
    positions = drop.shape[1]
    covered = np.array(
        [
            [
                [
                    ink[
                        n, r * stride : r * stride + window, c * stride : c * stride + window
                    ].mean()
                    for c in range(positions)
                ]
                for r in range(positions)
            ]
            for n in range(len(x))
        ]
    )
    print(f"| {name} | {drop[covered >= 0.3].mean():.3f} | {drop[covered == 0].mean():.3f} |")


if __name__ == "__main__":
  app.run(main)
