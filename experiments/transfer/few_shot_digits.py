"""Transfer learning on the digits: does a net trained on 0-4 help learn 5-9 from 10 examples?

    python experiments/transfer/few_shot_digits.py --out=experiments/transfer
    python experiments/transfer/few_shot_digits.py --source=mnist \
        --out=experiments/transfer/mnist_source

1. Pretrain `lenet5_modern` on every training digit 0-4 (about 720 images),
   or, with --source=mnist, on all 60,000 MNIST training images (28x28
   digits of all ten classes: a source 80 times bigger, and in another
   form, since scikit-learn's digits are 8x8 with 17 grey levels).
2. For each seed, draw 10 training images of each digit 5-9 (50 in all) and
   train three ways for the same number of steps:
   - scratch: random initialization, every layer trained;
   - head only: the pretrained network, only the new output layer trained
     (`freeze="all_but_head"`, batch norms and body fixed);
   - fine-tune: the pretrained network, new output layer, every layer trained;
   - fine-tune, body lr x0.1: the same with the pretrained layers' learning
     rate 10x smaller (`lr_mults`);
   - head first, then all: only the new output layer for the first third of
     the steps, then every layer (`unfreeze_after_steps`);
   - convs frozen / convs fine-tuned: only the conv layers C1-C3 come from
     the pretrained network (C5, F6 and the output are re-initialized), kept
     fixed or trained.
3. Evaluate on every test digit 5-9 (about 180 images) and write results.md
   (a table) and results.png (accuracy per method and seed).

The digits are written as PNG image folders, so the runs use the same
`folder:` datasets a user's own images would. About 6 minutes on 2 CPU cores;
--augment= runs the few-shot stage without augmentation.
"""

from __future__ import annotations

import json
import os
import tempfile

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402
from image_folders import subset, write_folder  # noqa: E402

from cnn_jax import cli, data, errors, records  # noqa: E402
from cnn_jax.data import preprocess  # noqa: E402
from cnn_jax.train import base_config, train_and_evaluate  # noqa: E402

_OUT = flags.DEFINE_string("out", "experiments/transfer", "folder for results.md and results.png")
_SEEDS = flags.DEFINE_integer("seeds", 3, "random draws of the 10-example training sets")
_SHOTS = flags.DEFINE_integer("shots", 10, "training examples per class")
_STEPS = flags.DEFINE_integer("steps", 150, "training steps of each few-shot run")
_SOURCE = flags.DEFINE_enum(
    "source", "digits", ["digits", "mnist"], "pretraining data: the digits 0-4 or all of MNIST"
)
_SOURCE_IMAGES = flags.DEFINE_integer(
    "source_images",
    0,
    "pretrain on the first so many " "source images (0: all; fewer only for smoke tests)",
)
_PRETRAIN_STEPS = flags.DEFINE_integer(
    "pretrain_steps",
    None,
    "pretraining steps (default: 600 on the digits 0-4, 1875 = 2 " "epochs on MNIST)",
)
_METHODS = flags.DEFINE_list(
    "methods",
    None,
    "these methods only, e.g. scratch,head only (default: all seven; names "
    "with a comma cannot be listed)",
)
_AUGMENT = flags.DEFINE_string(
    "augment",
    "translate(pixels=2)|rotate(degrees=10)",
    'augmentation of the few-shot runs ("" for none)',
)

PRETRAIN_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)


def run_config(
    dataset: str,
    seed: int,
    steps: int,
    batch_size: int,
    augment: str = "translate(pixels=2)|rotate(degrees=10)",
    **changes,
):
  config = base_config()
  config.model = "lenet5_modern"
  config.dataset = dataset
  config.image_size = 32
  config.seed = seed
  config.batch_size = batch_size
  config.num_train_steps = steps
  config.eval_every_steps = steps
  config.log_every_steps = steps
  config.augment = augment
  config.optimizer = dict(name="adam", learning_rate=3e-3, weight_decay=0.0)
  config.schedule = dict(name="cosine", warmup_steps=steps // 20)
  for key, value in changes.items():
    config[key] = tuple(value) if isinstance(value, list) else value
  return config


def main(argv):
  del argv
  root = tempfile.mkdtemp(prefix="few_shot_digits_")
  train = data.as_numpy("digits", "train", image_size=32)
  test = data.as_numpy("digits", "test", image_size=32)

  if _SOURCE.value == "mnist":
    source_train = data.as_numpy("mnist", "train", image_size=32)
    source_test = data.as_numpy("mnist", "test", image_size=32)
    limit = _SOURCE_IMAGES.value or None
    source_train = source_train["image"][:limit], source_train["label"][:limit]
    source_test = source_test["image"][:limit], source_test["label"][:limit]
  else:
    source_train = subset(train, PRETRAIN_CLASSES)
    source_test = subset(test, PRETRAIN_CLASSES)
  pretrain_dir = os.path.join(root, _SOURCE.value)
  write_folder(pretrain_dir, "train", *source_train)
  write_folder(pretrain_dir, "test", *source_test)
  # Every run normalizes as the pretraining did (as one uses ImageNet's
  # statistics with ImageNet weights), so the pretrained filters see the
  # input they were trained on; scratch gets the same.
  mean, std = preprocess.channel_stats(np.repeat(source_train[0], 3, -1))
  pretrained = os.path.join(root, "runs", "pretrain")
  methods = {
      "scratch": {},
      "head only": dict(init_from=pretrained, freeze="all_but_head"),
      "fine-tune": dict(init_from=pretrained),
      # Two recipes that keep more of the pretrained net: a 10x smaller
      # learning rate for the pretrained layers, and the head trained alone
      # for the first third of the steps (linear probe, then fine-tune).
      "fine-tune, body lr x0.1": dict(init_from=pretrained, lr_mults=[("^(C1|C3|C5|F6)/", 0.1)]),
      "head first, then all": dict(
          init_from=pretrained, freeze="all_but_head", unfreeze_after_steps=_STEPS.value // 3
      ),
      # The conv layers' stroke detectors are the generic part; C5 and F6 are
      # as specific to 0-4 as the output layer, so they are re-learned too.
      "convs frozen": dict(init_from=pretrained, init_skip="^(C5|F6|output)/", freeze="up_to:C3"),
      "convs fine-tuned": dict(init_from=pretrained, init_skip="^(C5|F6|output)/"),
  }
  # Checked before the pretraining, so that a misspelt name costs nothing.
  if _METHODS.value:
    unknown = sorted(set(_METHODS.value) - set(methods))
    if unknown:
      raise errors.UserError(f"unknown method(s) {unknown}; choose from {list(methods)}")
    methods = {name: methods[name] for name in _METHODS.value}
  pretrain_steps = _PRETRAIN_STEPS.value or (1875 if _SOURCE.value == "mnist" else 600)
  base = train_and_evaluate(
      run_config(f"folder:{pretrain_dir}", 0, pretrain_steps, 64, mean=mean, std=std), pretrained
  )
  print(f"pretrained on {_SOURCE.value}: test accuracy {base['accuracy']:.4f}")

  results = {name: [] for name in methods}
  shots = _SHOTS.value
  for seed in range(_SEEDS.value):
    folder = os.path.join(root, f"digits5-9_{shots}shot_seed{seed}")
    write_folder(
        folder, "train", *subset(train, TARGET_CLASSES, shots, np.random.default_rng(seed))
    )
    write_folder(folder, "test", *subset(test, TARGET_CLASSES))
    for name, changes in methods.items():
      workdir = os.path.join(root, "runs", f"{name.replace(' ', '_')}_seed{seed}")
      config = run_config(
          f"folder:{folder}",
          seed,
          _STEPS.value,
          shots * len(TARGET_CLASSES),
          augment=_AUGMENT.value,
          mean=mean,
          std=std,
          **changes,
      )
      accuracy = train_and_evaluate(config, workdir)["accuracy"]
      results[name].append(accuracy)
      print(f"seed {seed} {name}: {accuracy:.4f}")

  os.makedirs(_OUT.value, exist_ok=True)
  records.write_text(
      os.path.join(_OUT.value, "results.json"),
      json.dumps(  # atomic
          {
              "source": _SOURCE.value,
              "pretrain_steps": pretrain_steps,
              "pretrain_accuracy": base["accuracy"],
              "shots": shots,
              "steps": _STEPS.value,
              "augment": _AUGMENT.value,
              "accuracy": results,
          },
          indent=1,
      ),
  )
  lines = [
      "| method | " + " | ".join(f"seed {s}" for s in range(_SEEDS.value)) + " | mean |",
      "|---|" + "---|" * (_SEEDS.value + 1),
  ]
  for name, values in results.items():
    lines.append(
        f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {np.mean(values):.3f} |"
    )
  with open(os.path.join(_OUT.value, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))

  figure, axis = plt.subplots(figsize=(7.5, 3.4))
  for x, (name, values) in enumerate(results.items()):
    axis.bar(x, np.mean(values), color="#bbbbbb")
    axis.scatter([x] * len(values), values, color="black", zorder=3, s=12)
  axis.set_xticks(range(len(results)), list(results), fontsize=8, rotation=20, ha="right")
  axis.set_ylabel("test accuracy, digits 5-9")
  axis.set_ylim(0, 1)
  axis.set_title(
      f"pretrained on {_SOURCE.value}; {shots} per class, {_SEEDS.value} seeds, "
      f"augment: {_AUGMENT.value or 'none'}",
      fontsize=9,
  )
  figure.tight_layout()
  figure.savefig(os.path.join(_OUT.value, "results.png"), dpi=90)


if __name__ == "__main__":
  cli.run(main)
