"""The jitted training and evaluation steps.

The training step does everything on the device: it takes (or receives) its
batch, augments and normalizes it, runs forward and backward, applies the
optimizer, updates the EMA and adds the step's loss and the task's sums
(e.g. top-1 hits) to running totals. The host reads the totals only at
logging intervals, so nothing in the step waits for the host. What is
learned (the targets, the loss, the sums) is the task's
(`cnn_jax.tasks`); nothing here depends on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from cnn_jax.data.preprocess import standardize, to_unit
from cnn_jax.tasks.base import Task
from cnn_jax.tasks.classification import Classification
from cnn_jax.train import parallel
from cnn_jax.train.state import TrainState

# (inputs, step, data key) -> the batch: {"image": uint8 NHWC, and the task's targets}
BatchFn = Callable[[Any, jax.Array, jax.Array], dict[str, jax.Array]]
NO_NONFINITE_STEP = jnp.iinfo(jnp.int32).max
# Bits of totals["nonfinite"]: what became NaN or Inf first. A diverging run
# can keep a finite loss (about 1e35) while its gradients and Adam's moments
# are already Inf, so each is checked.
NONFINITE_LOSS, NONFINITE_GRADIENT, NONFINITE_STATE = 1, 2, 4
NONFINITE_NAMES = {
    NONFINITE_LOSS: "the loss",
    NONFINITE_GRADIENT: "the gradient norm",
    NONFINITE_STATE: "the parameters or optimizer state",
}
# Independent streams of the run key: the data order (per epoch), the
# per-step keys (augmentation, dropout) and the examples SDLM estimates its
# curvature on (per epoch) must never coincide.
_STEP_STREAM, _DATA_STREAM, _CURVATURE_STREAM, _CURVATURE_PROBE_STREAM = 0, 1, 2, 3


def data_key(rng: jax.Array) -> jax.Array:
  """The key a run's data order is drawn from, given `TrainState.rng`."""
  return jax.random.fold_in(jax.random.wrap_key_data(rng), _DATA_STREAM)


def curvature_key(rng: jax.Array) -> jax.Array:
  """The key SDLM's curvature examples are drawn from, given `TrainState.rng`."""
  return jax.random.fold_in(jax.random.wrap_key_data(rng), _CURVATURE_STREAM)


def curvature_probe_key(rng: jax.Array) -> jax.Array:
  """The key SDLM's curvature probes are drawn from, given `TrainState.rng`: a
  stream of its own (the examples' permutation splits `curvature_key`'s keys)."""
  return jax.random.fold_in(jax.random.wrap_key_data(rng), _CURVATURE_PROBE_STREAM)


def given_batch(inputs: dict[str, jax.Array], step, key) -> dict[str, jax.Array]:
  """The batch a host pipeline delivered (`inputs` is that batch)."""
  del step, key
  return inputs


def empty_totals(task: Task = Classification()) -> dict[str, jax.Array]:
  """Running sums the training step adds to; the host resets them after reading.

  Args:
    task: the run's task, whose sums are added under "task".

  Returns:
    The loss, gradient norm, step count and non-finite record at zero, and the task's sums.
  """
  return {
      "loss": jnp.zeros((), jnp.float32),
      "task": task.empty_train_sums(),
      "grad_norm": jnp.zeros((), jnp.float32),
      "steps": jnp.zeros((), jnp.int32),
      "first_nonfinite_step": jnp.full((), NO_NONFINITE_STEP, jnp.int32),
      "nonfinite": jnp.zeros((), jnp.int32),
  }


# Leaves up to this many elements are checked together (see `_all_finite`).
_SMALL_LEAF = 1 << 16


def _all_finite(tree: Any) -> jax.Array:
  # A reduction per leaf is a kernel per leaf for XLA to compile: hundreds for
  # the parameters and optimizer state of a deep network, more compile time
  # than the network's own forward and backward pass. The small leaves (biases,
  # batch-norm scales, depthwise filters) are checked in one concatenation,
  # whose copy costs little memory; the large ones one by one, uncopied.
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  small = [x.ravel() for x in leaves if x.size <= _SMALL_LEAF]
  checks = [jnp.all(jnp.isfinite(x)) for x in leaves if x.size > _SMALL_LEAF]
  if small:
    checks.append(jnp.all(jnp.isfinite(jnp.concatenate(small))))
  return jnp.all(jnp.stack(checks)) if checks else jnp.array(True)


def _nonfinite_kinds(loss: jax.Array, grad_norm: jax.Array, state_tree: Any) -> jax.Array:
  """The NONFINITE_* bits of what became NaN or Inf in a step (0: all finite)."""
  return (
      jnp.where(jnp.isfinite(loss), 0, NONFINITE_LOSS)
      | jnp.where(jnp.isfinite(grad_norm), 0, NONFINITE_GRADIENT)
      | jnp.where(_all_finite(state_tree), 0, NONFINITE_STATE)
  )


def _added_totals(
    totals: dict[str, jax.Array],
    step: jax.Array,
    loss: jax.Array,
    task_sums: dict[str, jax.Array],
    grad_norm: jax.Array,
    kinds: jax.Array,
) -> dict[str, jax.Array]:
  """The running sums of the training step with one step's values added."""
  return {
      "loss": totals["loss"] + loss,
      "task": jax.tree.map(jnp.add, totals["task"], task_sums),
      "grad_norm": totals["grad_norm"] + grad_norm,
      "steps": totals["steps"] + 1,
      "first_nonfinite_step": jnp.where(
          kinds == 0,
          totals["first_nonfinite_step"],
          jnp.minimum(totals["first_nonfinite_step"], step),
      ),
      # What went wrong at the first bad step (later steps add nothing).
      "nonfinite": jnp.where(totals["nonfinite"] == 0, kinds, totals["nonfinite"]),
  }


@dataclasses.dataclass(frozen=True)
class InputTransform:
  """How a step turns the uint8 batch it is given into the model's input.

  Attributes:
    batch_fn: picks the batch (uint8 "image" and the task's targets) from
      the step's `inputs` (see `given_batch`, or
      `cnn_jax.data.on_device.take_batch` for a split held on the device);
      the eval step reads `batch["image"]` itself.
    augment_fn: on-device augmentation of (key, float NHWC in [0, 1]), or
      None; training only. With `moves_targets`, a function of (key, batch
      dict) that moves the task's targets with the image
      (`augment.from_spec_with_targets`).
    moves_targets: whether augment_fn takes and returns the whole batch.
    mean: per-channel mean for normalization, [0, 1] units.
    std: per-channel standard deviation.
    dtype: compute dtype of the model's input.
  """

  batch_fn: BatchFn = given_batch
  augment_fn: Callable[[jax.Array, Any], Any] | None = None
  mean: Sequence[float] = (0.0,)
  std: Sequence[float] = (1.0,)
  dtype: Any = jnp.float32
  moves_targets: bool = False

  def model_input(self, images: jax.Array, augment_key: jax.Array | None = None) -> jax.Array:
    """uint8 NHWC -> the model's normalized input (augmented when a key is given)."""
    return self.model_batch({"image": images}, augment_key)[0]

  def model_batch(
      self, batch: dict[str, jax.Array], augment_key: jax.Array | None = None
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(the model's normalized input, the batch with its targets moved as the image was)."""
    x = to_unit(batch["image"])
    if augment_key is not None and self.augment_fn is not None:
      if self.moves_targets:
        moved = self.augment_fn(augment_key, {**batch, "image": x})
        x, batch = moved["image"], {**batch, **moved}
      else:
        x = self.augment_fn(augment_key, x)
    return standardize(x, self.mean, self.std).astype(self.dtype), batch


def make_train_step(
    model: nn.Module,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    *,
    input_transform: InputTransform = InputTransform(),
    task: Task = Classification(),
    ema_decay: float = 0.0,
    interceptor: Callable | None = None,
    donate: bool = True,
) -> Callable:
  """The jitted `step(state, totals, inputs) -> (state, totals)`.

  Args:
    model: the flax model (called with train=True).
    tx: the optimizer.
    mesh: the data-parallel mesh; the batch is split over its data axis.
    input_transform: how the step's inputs become the model's input.
    task: what is learned: the batch's targets, the loss, the sums.
    ema_decay: decay of the params' moving average (0: no EMA).
    interceptor: a flax method interceptor around the training forward pass
      (frozen fine-tuning's batch norms, see `transfer.finetune.FineTuning`), or None.
    donate: reuse the state's and totals' buffers for the outputs.

  Returns:
    The jitted step. `state.step` selects the batch and the random numbers.
  """
  data_sharding = parallel.batch_sharding(mesh)
  replicated = parallel.replicated(mesh)

  def step(state: TrainState, totals: dict[str, jax.Array], inputs: Any):
    run_key = jax.random.wrap_key_data(state.rng)
    step_key = jax.random.fold_in(jax.random.fold_in(run_key, _STEP_STREAM), state.step)
    augment_key, dropout_key = jax.random.split(step_key)
    batch = input_transform.batch_fn(inputs, state.step, data_key(state.rng))
    batch = jax.lax.with_sharding_constraint(batch, data_sharding)
    x, batch = input_transform.model_batch(batch, augment_key)

    def loss_fn(params):
      variables = {**state.variables(), "params": params}
      with nn.intercept_methods(interceptor) if interceptor else contextlib.nullcontext():
        logits, updates = model.apply(
            variables,
            x,
            train=True,
            rngs={"dropout": dropout_key},
            mutable=["batch_stats", "aux_logits"],
        )
      value = task.loss(logits, updates.get("aux_logits", {}), batch)
      return value, (logits, updates.get("batch_stats", {}))

    (value, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema_params = state.ema_params
    if ema_decay:
      ema_params = jax.tree.map(
          lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, ema_params, params
      )
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        batch_stats=batch_stats,
        opt_state=opt_state,
        ema_params=ema_params,
    )
    grad_norm = optax.tree.norm(grads)
    kinds = _nonfinite_kinds(value, grad_norm, (params, opt_state, batch_stats, ema_params))
    task_sums = task.train_sums(logits, batch)
    return new_state, _added_totals(totals, state.step, value, task_sums, grad_norm, kinds)

  return jax.jit(
      step, donate_argnums=(0, 1) if donate else (), out_shardings=(replicated, replicated)
  )


def make_eval_step(
    model: nn.Module,
    mesh: Mesh,
    *,
    input_transform: InputTransform = InputTransform(),
    task: Task = Classification(),
) -> Callable:
  """The jitted `eval_step(variables, batch, totals) -> totals` for masked eval batches.

  Each batch's sums are added to the totals inside the step. Besides saving
  a dispatch per batch, this chains the steps: XLA:CPU runs computations
  that do not depend on each other concurrently, and two steps' cross-process
  all-reduces could then meet in different orders on different processes
  and deadlock (seen with 2 CPU processes under load).

  Args:
    model: the flax model (called with train=False).
    mesh: the data-parallel mesh.
    input_transform: how a batch's images become the model's input (no augmentation).
    task: whose sums the step adds (`task.add_eval_sums`).

  Returns:
    The jitted step (totals donated); the totals are the task's sums over
    the valid examples, starting from `task.empty_eval_sums(split size)`.
  """
  replicated = parallel.replicated(mesh)

  def eval_step(variables, batch, totals):
    x = input_transform.model_input(batch["image"])
    logits = model.apply(variables, x, train=False)
    return task.add_eval_sums(totals, logits, batch)

  return jax.jit(eval_step, out_shardings=replicated, donate_argnums=2)
