"""Everything a run needs to continue exactly: the `TrainState` pytree."""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from cnn_jax import saved_runs


@flax.struct.dataclass
class TrainState:
  """Params, batch-norm statistics, optimizer state, EMA params, step and PRNG key.

  All leaves are arrays, so the state is donated to the step, replicated over
  the mesh and saved by orbax as it is. The PRNG key is stored as raw uint32
  key data; the step derives every random number from (key, step), so a run
  resumed at step s draws exactly what an uninterrupted run draws.
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  ema_params: Any
  rng: jax.Array

  def variables(self, use_ema: bool = False) -> dict[str, Any]:
    """The model variables for `model.apply` (EMA params if asked and kept)."""
    return saved_runs.model_variables(
        self.params, self.batch_stats, self.ema_params if use_ema else None
    )


def create(
    model: nn.Module,
    tx: optax.GradientTransformation,
    input_shape: tuple[int, ...],
    seed: int,
    use_ema: bool,
) -> TrainState:
  """A fresh state: the model's own initializers, step 0 (jit-able).

  Args:
    model: the flax model.
    tx: the optimizer.
    input_shape: (1, H, W, C) of one example batch.
    seed: the config seed.
    use_ema: keep an EMA copy of the params.

  Returns:
    A TrainState.
  """
  key = jax.random.key(seed)
  init_key, run_key = jax.random.split(key)
  variables = model.init(init_key, jnp.zeros(input_shape, jnp.float32), train=False)
  params = variables["params"]
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=variables.get("batch_stats", {}),
      opt_state=tx.init(params),
      ema_params=jax.tree.map(jnp.copy, params) if use_ema else {},
      rng=jax.random.key_data(run_key),
  )
