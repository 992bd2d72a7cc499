"""The paper's SDLM as the paper runs it: one update per pattern, a curvature before each pass.

    python experiments/lecun1998/first_passes.py --out=experiments/lecun1998/first_passes
    python experiments/lecun1998/first_passes.py --out=experiments/lecun1998/paper_schedule \
        --etas=1e-5 --passes=20 --schedule=paper --conv_impl=gemm

The faithful `lenet5` (the paper's ±2.4/F_i initialization), the paper's
input scale (`normalize="lecun1998"`) and MAP loss (Eq. 9, j = 10), and
stochastic diagonal Levenberg-Marquardt (`cnn_jax.train.sdlm`, mu = 0.02)
with the curvature re-estimated on 500 training patterns before each pass,
as in Appendix C. Each update reads one pattern, as the paper's do; the
patterns of a pass are one permutation of MNIST's 60,000 per seed and pass.
The first command's runs differ only in the constant step size eta: the
paper's first (5e-4) and smaller ones. The second runs the paper's 20
passes with its schedule of eta (PAPER_SCHEDULE) scaled to start at 1e-5.

Writes results.json, table.md (test and training error after the passes,
mean ± std over the seeds, each eta against the first as a difference ±
its standard error; the activations at init and after the first 10
updates) and
loss.png (the MAP loss per 2,000 patterns, mean over the seeds).
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from absl import app, flags  # noqa: E402

from cnn_jax import models  # noqa: E402
from cnn_jax.data import preprocess, sources  # noqa: E402
from cnn_jax.sweep.tables import difference, mean_std  # noqa: E402
from cnn_jax.train import metrics, sdlm  # noqa: E402

_OUT = flags.DEFINE_string("out", None, "folder for results.json, table.md and loss.png")
_ETAS = flags.DEFINE_list(
    "etas",
    ["5e-4", "5e-5", "1e-5"],
    "step sizes eta (the paper's is 5e-4); the others are compared with the first",
)
_SEEDS = flags.DEFINE_integer("seeds", 3, "seeds 0, 1, ... per eta")
_PASSES = flags.DEFINE_integer("passes", 1, "passes over the training patterns")
_SCHEDULE = flags.DEFINE_enum(
    "schedule",
    "constant",
    ["constant", "paper"],
    "constant: eta in every pass; paper: eta scaled by the paper's schedule (PAPER_SCHEDULE)",
)
_CONV_IMPL = flags.DEFINE_string("conv_impl", "auto", "LeNet-5's convolutions (models.lenet.LeNet)")
_PATTERNS = flags.DEFINE_integer(
    "patterns", 60_000, "training patterns (the first of MNIST's train)"
)
_TEST_IMAGES = flags.DEFINE_integer("test_images", 10_000, "test images scored")
_HESSIAN_SAMPLES = flags.DEFINE_integer(
    "hessian_samples", sdlm.DEFAULT_HESSIAN_SAMPLES, "patterns per curvature estimate"
)
# Appendix C: eta 5e-4 for 2 passes, 2e-4 for 3, 1e-4 for 3, 5e-5 for 4, then
# 1e-5: (first pass of each eta, eta / 5e-4).
PAPER_SCHEDULE = ((0, 1.0), (2, 0.4), (5, 0.2), (8, 0.1), (12, 0.02))
CHUNK = 2_000  # patterns per jitted scan, and per point of the loss curve
FIRST_UPDATES = 10  # the activations are reported after this many updates
PROBED_LAYERS = ("C1_act", "C3_act", "C5_act", "F6_act")


def mnist(split: str, count: int) -> tuple[jax.Array, jax.Array]:
  """The first `count` images of an MNIST split at the paper's scale (32x32, -0.1 to 1.175)."""
  source = sources.load("mnist", split)
  arrays = sources.read_all(source, range(min(count, len(source))))
  mean, std = preprocess.input_mean_std("lecun1998", [0.0], [1.0], None)
  images = preprocess.resize_uint8(arrays["image"], 32, "pad")
  return preprocess.standardize_uint8(jnp.asarray(images), mean, std), jnp.asarray(arrays["label"])


def learning_rate(eta: float, patterns: int) -> optax.ScalarOrSchedule:
  """eta, or the paper's schedule scaled to start at eta (one update per pattern)."""
  if _SCHEDULE.value == "constant":
    return eta
  return optax.piecewise_constant_schedule(
      eta,
      {
          first_pass * patterns: ratio / previous
          for (first_pass, ratio), (_, previous) in zip(PAPER_SCHEDULE[1:], PAPER_SCHEDULE)
      },
  )


class Recipe:
  """The jitted pieces of one run: loss, curvature estimate, a scan of updates, scores."""

  def __init__(self, eta: float, patterns: int):
    self.model = models.create("lenet5", conv_impl=_CONV_IMPL.value)
    self.tx = sdlm.sdlm(learning_rate(eta, patterns), sdlm.DEFAULT_MU)
    self.variables = self.model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)))
    self.split = sdlm.split_model(self.model, self.variables, (1, 32, 32, 1), ("output",))
    self.curvature = jax.jit(self._curvature)
    self.updates = jax.jit(self._updates)
    self.errors = jax.jit(self._errors)
    self.activations = jax.jit(self._activations)

  def _loss(self, params, x, y):
    logits = self.model.apply({"params": params}, x)
    return metrics.rbf_map_per_example(logits, y).mean()

  def _curvature(self, params, x, y):
    def outputs_fn(p, one):
      return self.split.outputs({"params": p}, one[None])[0]

    def loss_fn(outputs, label):
      return metrics.rbf_map_per_example(self.split.logits(outputs[None]), label[None])[0]

    return sdlm.gauss_newton_diagonal(outputs_fn, loss_fn, params, x, y)

  def _updates(self, params, opt_state, x, y):
    """One SDLM update per pattern, in order; returns the new state and the mean loss."""

    def one(carry, pattern):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(self._loss)(params, pattern[0][None], pattern[1][None])
      updates, opt_state = self.tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(one, (params, opt_state), (x, y))
    return params, opt_state, losses.mean()

  def _errors(self, params, x, y):
    logits = self.model.apply({"params": params}, x)
    return jnp.sum(jnp.argmax(logits, -1) != y)

  def _activations(self, params, x):
    _, state = self.model.apply(
        {"params": params}, x, capture_intermediates=True, mutable=["intermediates"]
    )
    found = state["intermediates"]
    return {k: jnp.sqrt(jnp.mean(jnp.square(found[k]["__call__"][0]))) for k in PROBED_LAYERS}


def error_percent(recipe: Recipe, params, x, y) -> float:
  """Error rate in percent, scored 2,000 images at a time."""
  wrong = sum(
      int(recipe.errors(params, x[i : i + CHUNK], y[i : i + CHUNK]))
      for i in range(0, len(y), CHUNK)
  )
  return 100.0 * wrong / len(y)


def train_one(recipe: Recipe, seed: int, train, test) -> dict:
  """One seed's run: passes of per-pattern SDLM, curvature before each pass."""
  x, y = train
  key = jax.random.key(seed)
  params = recipe.model.init(jax.random.fold_in(key, 0), x[:1])["params"]
  opt_state = recipe.tx.init(params)
  at_init = {k: float(v) for k, v in recipe.activations(params, test[0][:CHUNK]).items()}
  losses, first = [], None
  start = time.monotonic()
  for epoch in range(_PASSES.value):
    order = jax.random.permutation(jax.random.fold_in(key, 1 + epoch), len(y))
    sample = order[: _HESSIAN_SAMPLES.value]
    opt_state = sdlm.with_curvature(opt_state, recipe.curvature(params, x[sample], y[sample]))
    for i in range(0, len(y), CHUNK):
      chunk = order[i : i + CHUNK]
      if first is None:  # the first updates alone, to see what they do to the activations
        params, opt_state, loss = recipe.updates(
            params, opt_state, x[chunk[:FIRST_UPDATES]], y[chunk[:FIRST_UPDATES]]
        )
        first = {k: float(v) for k, v in recipe.activations(params, test[0][:CHUNK]).items()}
        chunk = chunk[FIRST_UPDATES:]
      params, opt_state, loss = recipe.updates(params, opt_state, x[chunk], y[chunk])
      losses.append(float(loss))
  return {
      "seed": seed,
      "test_error": error_percent(recipe, params, *test),
      "train_error": error_percent(recipe, params, x, y),
      "loss_per_chunk": losses,
      "rms_at_init": at_init,
      "rms_after_first_updates": first,
      "seconds": time.monotonic() - start,
  }


def table(results: dict[str, list[dict]]) -> str:
  """table.md: per eta the errors (mean ± std), the difference to the paper's eta, activations."""
  etas = list(results)
  n = len(results[etas[0]])
  lines = [
      f"# Per-pattern SDLM, {_PASSES.value} pass(es) over {_PATTERNS.value:,} MNIST patterns, "
      f"{_SCHEDULE.value} eta",
      "",
      "Faithful LeNet-5, the paper's input, MAP loss and initialization; "
      f"mu = {sdlm.DEFAULT_MU}; curvature on {_HESSIAN_SAMPLES.value} patterns before each pass; "
      f"mean ± std over {n} seeds.",
      "Made by `python experiments/lecun1998/first_passes.py`.",
      "",
      "| eta | test error | training error | test error - the first eta's (± SE) | "
      "rms of C1, C3, C5, F6 outputs at init | after 10 updates | minutes per run |",
      "|---|---|---|---|---|---|---|",
  ]
  paper = [r["test_error"] for r in results[etas[0]]]
  for eta in etas:
    runs = results[eta]
    test, train = (mean_std([r[k] for r in runs]) for k in ("test_error", "train_error"))
    diff, error = difference([r["test_error"] for r in runs], paper)
    compared = "(the first)" if eta == etas[0] else f"{diff:+.2f} ± {error:.2f} points"
    rms = [
        ", ".join(f"{np.mean([r[when][k] for r in runs]):.2g}" for k in PROBED_LAYERS)
        for when in ("rms_at_init", "rms_after_first_updates")
    ]
    minutes = np.mean([r["seconds"] for r in runs]) / 60
    lines.append(
        f"| {eta} | {test[0]:.2f} ± {test[1]:.2f}% | {train[0]:.2f} ± {train[1]:.2f}% | "
        f"{compared} | {rms[0]} | {rms[1]} | {minutes:.1f} |"
    )
  return "\n".join(lines) + "\n"


def plot(results: dict[str, list[dict]], path: str) -> None:
  """loss.png: the MAP loss per 2,000 patterns, mean over seeds, one line per eta."""
  figure, axis = plt.subplots(figsize=(6, 4))
  for eta, runs in results.items():
    curve = np.mean([r["loss_per_chunk"] for r in runs], axis=0)
    axis.plot(CHUNK * np.arange(1, len(curve) + 1), curve, label=f"eta {eta}")
  axis.set(xlabel="patterns (updates)", ylabel="MAP loss (Eq. 9)", yscale="log")
  axis.legend()
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)


def main(argv):
  del argv
  os.makedirs(_OUT.value, exist_ok=True)
  train = mnist("train", _PATTERNS.value)
  test = mnist("test", _TEST_IMAGES.value)
  results = {}
  for eta in _ETAS.value:
    recipe = Recipe(float(eta), len(train[1]))
    results[eta] = []
    for seed in range(_SEEDS.value):
      run = train_one(recipe, seed, train, test)
      print(
          f"eta {eta} seed {seed}: test error {run['test_error']:.2f}%, "
          f"training error {run['train_error']:.2f}% ({run['seconds']:.0f} s)",
          flush=True,
      )
      results[eta].append(run)
  with open(os.path.join(_OUT.value, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  text = table(results)
  with open(os.path.join(_OUT.value, "table.md"), "w") as f:
    f.write(text)
  plot(results, os.path.join(_OUT.value, "loss.png"))
  print(text)


if __name__ == "__main__":
  flags.mark_flag_as_required("out")
  app.run(main)
