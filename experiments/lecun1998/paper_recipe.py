"""LeCun et al. 1998's own training, as the paper runs it: SDLM, a few patterns per update.

    python experiments/lecun1998/paper_recipe.py --out=experiments/lecun1998/first_passes
    python experiments/lecun1998/paper_recipe.py --out=experiments/lecun1998/paper_schedule \
        --etas=1e-5 --passes=20 --schedule=paper --conv_impl=gemm
    python experiments/lecun1998/paper_recipe.py \
        --out=experiments/lecun1998/paper_recipe_batch16/lenet5 --batch=16 \
        --etas=1.6e-4x2+3.2e-4x3+1.6e-4x3+8e-5x4+1.6e-5x8 --passes=20 --conv_impl=gemm
    python experiments/lecun1998/paper_recipe.py \
        --out=experiments/lecun1998/paper_recipe_batch16/lenet5_probes --batch=16 \
        --hessian_probes=4 \
        --etas=1.6e-4x2+3.2e-4x3+1.6e-4x3+8e-5x4+1.6e-5x8 --passes=20 --conv_impl=gemm
    python experiments/lecun1998/paper_recipe.py \
        --out=experiments/lecun1998/paper_recipe_batch16/distortions --batch=16 --distort \
        --hessian_probes=4 \
        --etas=1.6e-4x2+3.2e-4x3+1.6e-4x3+8e-5x4+1.6e-5x8 --passes=20 --conv_impl=gemm
    python experiments/lecun1998/paper_recipe.py \
        --out=experiments/lecun1998/paper_recipe_batch16/ablation_updates --batch=16 \
        --optimizer=adam --loss=cross_entropy --normalize=standardize \
        --etas=3e-4 --schedule=paper --passes=20 --conv_impl=gemm
    python experiments/lecun1998/paper_recipe.py \
        --out=experiments/lecun1998/paper_recipe_batch16/ablation_input --batch=16 \
        --optimizer=adam --loss=cross_entropy \
        --etas=3e-4 --schedule=paper --passes=20 --conv_impl=gemm
    python experiments/lecun1998/paper_recipe.py \
        --out=experiments/lecun1998/paper_recipe_batch16/ablation_loss --batch=16 \
        --optimizer=adam --etas=3e-4 --schedule=paper --passes=20 --conv_impl=gemm
    python experiments/lecun1998/paper_recipe.py \
        --out=experiments/lecun1998/paper_recipe_batch16/lenet4 --batch=16 \
        --model=lenet4 --loss=cross_entropy \
        --etas=1.6e-3x2+3.2e-3x3+1.6e-3x3+8e-4x4+1.6e-4x8 --passes=20 --conv_impl=gemm
    python experiments/lecun1998/paper_recipe.py --out=experiments/lecun1998/paper_recipe/lenet1 \
        --model=lenet1 --loss=cross_entropy \
        --etas=1e-4x2+2e-4x3+1e-4x3+5e-5x4+1e-5x8 --passes=20 --conv_impl=gemm
    python experiments/lecun1998/paper_recipe.py --out=experiments/lecun1998/paper_recipe/lenet4 \
        --model=lenet4 --loss=cross_entropy \
        --etas=1e-4x2+2e-4x3+1e-4x3+5e-5x4+1e-5x8 --passes=20 --conv_impl=gemm
    python experiments/lecun1998/paper_recipe.py --out=experiments/lecun1998/paper_recipe/lenet5 \
        --etas=1e-5x2+2e-5x3+1e-5x3+5e-6x4+1e-6x8 --passes=20 --conv_impl=gemm
    python experiments/lecun1998/paper_recipe.py \
        --out=experiments/lecun1998/paper_recipe/distortions --distort \
        --etas=1e-5x2+2e-5x3+1e-5x3+5e-6x4+1e-6x8 --passes=20 --conv_impl=gemm

The faithful `lenet5` (the paper's ±2.4/F_i initialization), the paper's
input scale (`normalize="lecun1998"`) and MAP loss (Eq. 9, j = 10), and
stochastic diagonal Levenberg-Marquardt (`cnn_jax.train.sdlm`, mu = 0.02)
with the curvature re-estimated on 500 training patterns before each pass,
as in Appendix C: exactly, or (`--hessian_probes`) estimated without bias
from that many Rademacher probes per pattern, which the distortion row's
command uses to stay under 20 minutes. Each update reads `--batch` patterns (the paper: one; its
Appendix B allows a few), the mean of their gradients, so eta is the
per-pattern eta times the batch; the patterns of a pass are one permutation
of MNIST's 60,000 per seed and pass.
`--model`, `--loss`, `--optimizer`, `--normalize` and `--distort` change one
piece at a time (the ablation: the three ablation_* commands). The seeds run one after the
other, or `--processes` at a time.

Each entry of `--etas` is one run of all seeds: a constant step size, the
paper's schedule (PAPER_SCHEDULE) scaled to start at it, or an explicit
per-pass schedule such as "1e-5x2+2e-5x18" (eta 1e-5 for 2 passes, then
2e-5 for 18). The rows' commands above are the README's. Writes results.json,
table.md (test and training error after the passes, mean ± std over the
seeds, each entry against the first as a difference ± its standard error;
the activations at init and after the first 10 updates) and loss.png (the
loss per 2,000 patterns, mean over the seeds).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import multiprocessing
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
from cnn_jax.data import augment, preprocess, sources  # noqa: E402
from cnn_jax.sweep.tables import difference, mean_std  # noqa: E402
from cnn_jax.tasks import metrics  # noqa: E402
from cnn_jax.train import sdlm  # noqa: E402

_OUT = flags.DEFINE_string("out", None, "folder for results.json, table.md and loss.png")
_ETAS = flags.DEFINE_list(
    "etas",
    ["5e-4", "5e-5", "1e-5"],
    "step sizes eta (the paper's first is 5e-4), or per-pass schedules '1e-5x2+2e-5x18'; "
    "the others are compared with the first",
)
_SEEDS = flags.DEFINE_integer("seeds", 3, "seeds 0, 1, ... per entry of --etas")
_PROCESSES = flags.DEFINE_integer("processes", 1, "seeds trained at once, one process each")
_PASSES = flags.DEFINE_integer("passes", 1, "passes over the training patterns")
_SCHEDULE = flags.DEFINE_enum(
    "schedule",
    "constant",
    ["constant", "paper"],
    "for a number in --etas: constant, or the paper's schedule scaled to start at it",
)
_MODEL = flags.DEFINE_enum("model", "lenet5", ["lenet5", "lenet1", "lenet4"], "the network")
_LOSS = flags.DEFINE_enum("loss", "rbf_map", metrics.LOSSES, "the loss (rbf_* need lenet5)")
_OPTIMIZER = flags.DEFINE_enum("optimizer", "sdlm", ["sdlm", "adam"], "the update rule")
_NORMALIZE = flags.DEFINE_enum(
    "normalize", "lecun1998", ["lecun1998", "standardize"], "the input scale"
)
_DISTORT = flags.DEFINE_bool("distort", False, "a fresh paper-style distortion per update")
_BATCH = flags.DEFINE_integer("batch", 1, "patterns per update (the paper: 1)")
_CONV_IMPL = flags.DEFINE_string("conv_impl", "auto", "LeNet's convolutions (models.lenet.LeNet)")
_PATTERNS = flags.DEFINE_integer(
    "patterns", 60_000, "training patterns (the first of MNIST's train)"
)
_TEST_IMAGES = flags.DEFINE_integer("test_images", 10_000, "test images scored")
_HESSIAN_SAMPLES = flags.DEFINE_integer(
    "hessian_samples", sdlm.DEFAULT_HESSIAN_SAMPLES, "patterns per curvature estimate"
)
_HESSIAN_PROBES = flags.DEFINE_integer(
    "hessian_probes",
    0,
    "Rademacher probes per pattern for an unbiased curvature estimate; 0: the exact one",
    lower_bound=0,
)
# Appendix C: eta 5e-4 for 2 passes, 2e-4 for 3, 1e-4 for 3, 5e-5 for 4, then
# 1e-5: (first pass of each eta, eta / 5e-4).
PAPER_SCHEDULE = ((0, 1.0), (2, 0.4), (5, 0.2), (8, 0.1), (12, 0.02))
# The paper's distortions (Section III-C.3): translations, scaling, squeezing
# and horizontal shear; it gives no ranges, these are ours.
PAPER_DISTORTIONS = {"pixels": 2.0, "scale": 0.1, "squeeze": 0.1, "shear": 10.0}
CHUNK = 2_000  # patterns per jitted scan, and per point of the loss curve
FIRST_UPDATES = 10  # the activations are reported after this many updates
PROBED_LAYERS = ("C1_act", "C3_act", "C5_act", "F6_act")
# fold_in data of the curvature probes' keys: the passes use 1, 2, ...
PROBE_STREAM = 1_000_000
INPUT_SIZE = {"lenet5": 32, "lenet1": 28, "lenet4": 32}


@dataclasses.dataclass(frozen=True)
class Spec:
  """Everything one seed's run needs: its process sees no flags."""

  pass_etas: tuple[float, ...]
  model: str
  loss: str
  optimizer: str
  normalize: str
  distort: bool
  batch: int
  conv_impl: str
  patterns: int
  test_images: int
  hessian_samples: int
  hessian_probes: int = 0


def pass_etas(entry: str, passes: int, schedule: str) -> tuple[float, ...]:
  """The eta of each pass, from one entry of --etas."""
  try:
    if "x" not in entry:
      eta = float(entry)
      if schedule == "constant":
        return (eta,) * passes
      return tuple(
          eta * next(r for first, r in reversed(PAPER_SCHEDULE) if first <= p)
          for p in range(passes)
      )
    etas = []
    for part in entry.split("+"):
      eta, count = part.split("x")
      etas += [float(eta)] * int(count)
  except ValueError:
    raise app.UsageError(
        f"--etas entry {entry!r} is neither a number nor a schedule like 1e-5x2+2e-5x18"
    ) from None
  if len(etas) != passes:
    raise app.UsageError(f"--etas {entry!r} covers {len(etas)} passes, not --passes={passes}")
  return tuple(etas)


def load(split: str, count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
  """The first `count` images of an MNIST split as float [0, 1] (count, size, size, 1)."""
  source = sources.load("mnist", split)
  arrays = sources.read_all(source, range(min(count, len(source))))
  images = preprocess.resize_uint8(arrays["image"], size, "pad")
  return images.astype(np.float32) / 255.0, np.asarray(arrays["label"])


class Recipe:
  """The jitted pieces of one run: loss, curvature estimate, a scan of updates, scores."""

  def __init__(self, spec: Spec, mean: float, std: float):
    self.spec, self.mean, self.std = spec, mean, std
    self.model = models.create(spec.model, conv_impl=spec.conv_impl)
    size = INPUT_SIZE[spec.model]
    self.variables = self.model.init(jax.random.key(0), jnp.zeros((1, size, size, 1)))
    # eta is a value in the state, set before each pass: one compiled program
    # serves every schedule.
    if spec.optimizer == "sdlm":
      self.tx = optax.inject_hyperparams(sdlm.sdlm)(learning_rate=0.0, mu=sdlm.DEFAULT_MU)
    else:
      self.tx = optax.inject_hyperparams(optax.adam)(learning_rate=0.0)
    self.split = sdlm.split_model(self.model, self.variables, (1, size, size, 1), ("output",))
    self.curvature = jax.jit(self._curvature)
    self.updates = jax.jit(self._updates)
    self.errors = jax.jit(self._errors)
    self.activations = jax.jit(self._activations)

  def _scaled(self, x):
    return (x - self.mean) / self.std

  def _loss(self, params, x, y):
    logits = self.model.apply({"params": params}, self._scaled(x))
    return metrics.per_example_loss(self.spec.loss, logits, y).mean()

  def _curvature(self, params, x, y, probe_key):
    def outputs_fn(p, one):
      return self.split.outputs({"params": p}, self._scaled(one)[None])[0]

    def loss_fn(outputs, label):
      logits = self.split.logits(outputs[None])
      return metrics.per_example_loss(self.spec.loss, logits, label[None])[0]

    # Exact: one column of the loss Hessian's factor per vmapped pass over 32
    # examples (vmapping over all of them as well made the estimate 2.5x
    # slower: README); probed: all of an example's probes at once.
    probes = self.spec.hessian_probes
    return sdlm.gauss_newton_diagonal(
        outputs_fn,
        loss_fn,
        params,
        x,
        y,
        examples_per_chunk=32,
        columns_per_chunk=probes or 1,
        probes=probes,
        probe_key=probe_key,
    )

  def _distorted(self, key, x):
    keys = jax.random.split(key, x.shape[0])
    return jax.vmap(lambda k, image: augment.affine(k, image, **PAPER_DISTORTIONS))(keys, x)

  def _updates(self, params, opt_state, key, x, y):
    """One update per batch of patterns, in order; returns the new state and the mean loss."""

    def one(carry, batch):
      params, opt_state = carry
      images, labels = batch
      loss, grads = jax.value_and_grad(self._loss)(params, images, labels)
      updates, opt_state = self.tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    batches = x.shape[0] // self.spec.batch
    x = x.reshape(batches, self.spec.batch, *x.shape[1:])
    y = y.reshape(batches, self.spec.batch)
    if self.spec.distort:
      # All of the chunk's distortions in one vmapped resampling before the
      # scan, each batch with the key it would get inside it: resampling 16
      # images per update made the distortion row's updates 1.25x slower.
      x = jax.vmap(self._distorted)(jax.random.split(key, batches), x)
    (params, opt_state), losses = jax.lax.scan(one, (params, opt_state), (x, y))
    return params, opt_state, losses.mean()

  def _errors(self, params, x, y):
    logits = self.model.apply({"params": params}, self._scaled(x))
    return jnp.sum(jnp.argmax(logits, -1) != y)

  def _activations(self, params, x):
    _, state = self.model.apply(
        {"params": params}, self._scaled(x), capture_intermediates=True, mutable=["intermediates"]
    )
    found = state["intermediates"]
    return {
        k: jnp.sqrt(jnp.mean(jnp.square(found[k]["__call__"][0])))
        for k in PROBED_LAYERS
        if k in found
    }


def error_percent(recipe: Recipe, params, x, y) -> float:
  """Error rate in percent, scored 2,000 images at a time."""
  wrong = sum(
      int(recipe.errors(params, x[i : i + CHUNK], y[i : i + CHUNK]))
      for i in range(0, len(y), CHUNK)
  )
  return 100.0 * wrong / len(y)


def input_scale(spec: Spec, train_images: np.ndarray) -> tuple[float, float]:
  """(mean, std) in [0, 1] units: the paper's map, or the training set's own statistics."""
  if spec.normalize == "lecun1998":
    mean, std = preprocess.input_mean_std("lecun1998", [0.0], [1.0], None)
    return float(mean[0]), float(std[0])
  return float(train_images.mean()), float(train_images.std())


@functools.cache
def recipe_for(spec: Spec, mean: float, std: float) -> Recipe:
  """One Recipe per process and spec (its etas aside): later runs reuse its compiled programs."""
  return Recipe(spec, mean, std)


def run_seed(spec: Spec, seed: int) -> dict:
  """One seed's run, in its own process: the passes, then the errors on test and train."""
  size = INPUT_SIZE[spec.model]
  x, y = (jnp.asarray(a) for a in load("train", spec.patterns, size))
  test = tuple(jnp.asarray(a) for a in load("test", spec.test_images, size))
  recipe = recipe_for(dataclasses.replace(spec, pass_etas=()), *input_scale(spec, np.asarray(x)))
  key = jax.random.key(seed)
  params = recipe.model.init(jax.random.fold_in(key, 0), x[:1])["params"]
  opt_state = recipe.tx.init(params)
  at_init = {k: float(v) for k, v in recipe.activations(params, test[0][:CHUNK]).items()}
  losses, first = [], None
  start = time.monotonic()
  for epoch in range(len(spec.pass_etas)):
    epoch_key = jax.random.fold_in(key, 1 + epoch)
    order = jax.random.permutation(epoch_key, len(y))
    eta = jnp.asarray(spec.pass_etas[epoch], jnp.float32)
    opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": eta})
    if spec.optimizer == "sdlm":
      sample = order[: spec.hessian_samples]
      probe_key = sdlm.probe_key(jax.random.fold_in(key, PROBE_STREAM), epoch)
      curvature = recipe.curvature(params, x[sample], y[sample], probe_key)
      opt_state = sdlm.with_curvature(opt_state, curvature)
    for i in range(0, len(y), CHUNK):
      chunk, chunk_key = order[i : i + CHUNK], jax.random.fold_in(epoch_key, i)
      if first is None:  # the first updates alone, to see what they do to the activations
        head, head_key = chunk[: FIRST_UPDATES * spec.batch], jax.random.fold_in(chunk_key, 1)
        params, opt_state, _ = recipe.updates(params, opt_state, head_key, x[head], y[head])
        first = {k: float(v) for k, v in recipe.activations(params, test[0][:CHUNK]).items()}
        chunk = chunk[len(head) :]
      params, opt_state, loss = recipe.updates(params, opt_state, chunk_key, x[chunk], y[chunk])
      losses.append(float(loss))
    print(f"seed {seed}, pass {epoch + 1}: loss {losses[-1]:.3g}", flush=True)
  return {
      "seed": seed,
      "test_error": error_percent(recipe, params, *test),
      "train_error": error_percent(recipe, params, x, y),
      "pass_etas": list(spec.pass_etas),
      "parameters": sum(p.size for p in jax.tree.leaves(params)),
      "loss_per_chunk": losses,
      "rms_at_init": at_init,
      "rms_after_first_updates": first,
      "seconds": time.monotonic() - start,
  }


def describe(spec: Spec) -> str:
  """One line saying what the runs were."""
  return (
      f"{spec.model}, {spec.optimizer}, loss {spec.loss}, input {spec.normalize}, "
      f"{'distorted' if spec.distort else 'undistorted'}, {len(spec.pass_etas)} pass(es) over "
      f"{spec.patterns:,} MNIST patterns, {spec.batch} per update"
      + (
          f"; mu = {sdlm.DEFAULT_MU}, curvature on {spec.hessian_samples} patterns before each pass"
          + (f" ({spec.hessian_probes} Rademacher probes each)" if spec.hessian_probes else "")
          if spec.optimizer == "sdlm"
          else ""
      )
  )


def rms_text(runs: list[dict], when: str) -> str:
  """The mean rms of each probed layer's output over the seeds, e.g. "C1 0.12, C3 0.034"."""
  return ", ".join(
      f"{layer.removesuffix('_act')} {np.mean([r[when][layer] for r in runs]):.2g}"
      for layer in runs[0][when]
  )


def table(spec: Spec, results: dict[str, list[dict]]) -> str:
  """table.md: per entry of --etas the errors (mean ± std), the difference to the first."""
  entries = list(results)
  lines = [
      f"# {describe(spec)}",
      "",
      f"Mean ± std over {len(results[entries[0]])} seeds. "
      "Made by `python experiments/lecun1998/paper_recipe.py`.",
      "",
      "| eta | test error | training error | test error - the first entry's (± SE) | "
      "rms of the layers' outputs at init | after 10 updates | minutes per run |",
      "|---|---|---|---|---|---|---|",
  ]
  first = [r["test_error"] for r in results[entries[0]]]
  for entry in entries:
    runs = results[entry]
    test, train = (mean_std([r[k] for r in runs]) for k in ("test_error", "train_error"))
    diff, error = difference([r["test_error"] for r in runs], first)
    compared = "(the first)" if entry == entries[0] else f"{diff:+.2f} ± {error:.2f} points"
    minutes = np.mean([r["seconds"] for r in runs]) / 60
    lines.append(
        f"| {entry} | {test[0]:.2f} ± {test[1]:.2f}% | {train[0]:.2f} ± {train[1]:.2f}% | "
        f"{compared} | {rms_text(runs, 'rms_at_init')} | "
        f"{rms_text(runs, 'rms_after_first_updates')} | {minutes:.1f} |"
    )
  return "\n".join(lines) + "\n"


def plot(spec: Spec, results: dict[str, list[dict]], path: str) -> None:
  """loss.png: the loss per 2,000 patterns, mean over seeds, one line per entry."""
  figure, axis = plt.subplots(figsize=(6, 4))
  for entry, runs in results.items():
    curve = np.mean([r["loss_per_chunk"] for r in runs], axis=0)
    axis.plot(CHUNK * np.arange(1, len(curve) + 1), curve, label=f"eta {entry}")
  axis.set(xlabel="patterns", ylabel=f"training loss ({spec.loss})", yscale="log")
  axis.legend()
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)


def spec_for(entry: str) -> Spec:
  """The Spec of one entry of --etas under the other flags."""
  if CHUNK % _BATCH.value or _PATTERNS.value % _BATCH.value:
    raise app.UsageError(f"--batch must divide {CHUNK} and --patterns")
  if _LOSS.value.startswith("rbf") and _MODEL.value != "lenet5":
    raise app.UsageError(f"--loss={_LOSS.value} needs the RBF output of --model=lenet5")
  return Spec(
      pass_etas=pass_etas(entry, _PASSES.value, _SCHEDULE.value),
      model=_MODEL.value,
      loss=_LOSS.value,
      optimizer=_OPTIMIZER.value,
      normalize=_NORMALIZE.value,
      distort=_DISTORT.value,
      batch=_BATCH.value,
      conv_impl=_CONV_IMPL.value,
      patterns=_PATTERNS.value,
      test_images=_TEST_IMAGES.value,
      hessian_samples=_HESSIAN_SAMPLES.value,
      hessian_probes=_HESSIAN_PROBES.value,
  )


def finished_runs(specs: dict[str, Spec]):
  """Yields (entry, seed, run) for every entry and seed, in order.

  With --processes=1 in this process; otherwise one process per seed, that
  many at a time (on 2 cores more than one at a time gained nothing: README).
  """
  jobs = [(entry, seed) for entry in specs for seed in range(_SEEDS.value)]
  if _PROCESSES.value == 1:
    for entry, seed in jobs:
      yield entry, seed, run_seed(specs[entry], seed)
    return
  context = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(_PROCESSES.value, mp_context=context) as pool:
    futures = [(entry, seed, pool.submit(run_seed, specs[entry], seed)) for entry, seed in jobs]
    for entry, seed, future in futures:
      yield entry, seed, future.result()


def main(argv):
  del argv
  specs = {entry: spec_for(entry) for entry in _ETAS.value}
  os.makedirs(_OUT.value, exist_ok=True)
  results = {entry: [] for entry in specs}
  for entry, seed, run in finished_runs(specs):
    print(
        f"{entry} seed {seed}: test error {run['test_error']:.2f}%, "
        f"training error {run['train_error']:.2f}% ({run['seconds']:.0f} s)",
        flush=True,
    )
    results[entry].append(run)
  with open(os.path.join(_OUT.value, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  first_spec = specs[_ETAS.value[0]]
  text = table(first_spec, results)
  with open(os.path.join(_OUT.value, "table.md"), "w") as f:
    f.write(text)
  plot(first_spec, results, os.path.join(_OUT.value, "loss.png"))
  print(text)


if __name__ == "__main__":
  flags.mark_flag_as_required("out")
  app.run(main)
