"""Reading what a training run saved: its checkpoints and the weights it evaluates with.

    WORKDIR/checkpoints/<step>/state   one saved TrainState (orbax)

The training loop resumes through `cnn_jax.train.checkpoints`, which builds
on this module; fine-tuning (`config.init_from`) and the visualizations
only need a run's weights, and read them with `load_variables` here, so
neither depends on the training loop.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, TypeVar

import jax
import orbax.checkpoint as ocp
from absl import logging

from cnn_jax.errors import CheckpointError, UserError

T = TypeVar("T")


@contextlib.contextmanager
def quiet_absl():
  """Hides orbax's warning that a checkpoint lacks _CHECKPOINT_METADATA.

  StandardCheckpointer looks for that file one level above the "state" item
  we read, where the manager does not write it; the warning is about nothing.
  """
  level = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(level)


def model_variables(params: Any, batch_stats: Any, ema_params: Any = None) -> dict[str, Any]:
  """The variables a run evaluates with, for `model.apply`.

  Args:
    params: the trained parameters.
    batch_stats: batch-norm running statistics ({} or None for a model without).
    ema_params: the parameters' moving average, if the run kept one ({} or
      None otherwise); it replaces `params`, as the run's evaluations did.

  Returns:
    {"params": ..., "batch_stats": ...} ("batch_stats" only when there are some).
  """
  variables = {"params": ema_params if ema_params else params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  return variables


def read_state(path: str) -> dict[str, Any]:
  """A saved TrainState (".../checkpoints/<step>/state") as a dict of arrays.

  Arrays land on this process's first device, whatever devices wrote them,
  so a run saved on 8 devices or 2 hosts can be read anywhere (for
  visualization and fine-tuning; resuming uses `train.checkpoints.Checkpoints`).

  Args:
    path: the "state" folder of one checkpoint.

  Returns:
    {"params", "batch_stats", "opt_state", "ema_params", "step", "rng"}.
  """
  checkpointer = ocp.StandardCheckpointer()
  here = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  with quiet_absl():
    metadata = checkpointer.metadata(path).item_metadata.tree
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here), metadata)
  return checkpointer.restore(path, target)


def checkpoint_steps(directory: str) -> list[int]:
  """Steps of the checkpoint folders in a checkpoints folder, oldest first ([] if none)."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def newest_readable(
    steps: list[int], read: Callable[[int], T]
) -> tuple[int | None, T | None, list[tuple[int, str]]]:
  """Reads the newest checkpoint that reads, going back one step at a time.

  Args:
    steps: the checkpoints' steps.
    read: reads the checkpoint of one step. A `UserError` it raises (the
      checkpoint does not fit the config) stops the search; any other
      exception (orbax raises many types for damaged files) marks that
      checkpoint unreadable and the one before it is tried.

  Returns:
    (step, what `read` returned, [(step, reason) of each newer unreadable
    one]), or (None, None, failures) when none reads.
  """
  failures = []
  for step in sorted(steps, reverse=True):
    try:
      return step, read(step), failures
    except UserError:
      raise
    except Exception as e:  # noqa: BLE001 -- see the docstring
      first_line = str(e).splitlines()[0][:200] if str(e).strip() else ""
      failures.append((step, f"{type(e).__name__}: {first_line}"))
  return None, None, failures


def newest_readable_state(directory: str) -> tuple[int, dict[str, Any]]:
  """(step, state) of the newest checkpoint in a checkpoints folder that reads.

  Raises:
    CheckpointError: when the folder holds no readable checkpoint.
  """
  step, state, failures = newest_readable(
      checkpoint_steps(directory), lambda s: read_state(os.path.join(directory, str(s), "state"))
  )
  if step is None:
    raise CheckpointError(
        f"no readable checkpoint in {directory}"
        + (
            f" ({', '.join(f'step {s}: {reason}' for s, reason in failures)})"
            if failures
            else "; finish (or resume) the training run first"
        )
    )
  if failures:
    logging.warning(
        "unreadable checkpoints skipped: %s",
        ", ".join(f"step {s}: {reason}" for s, reason in failures),
    )
  return step, state


def load_variables(path: str) -> tuple[int, dict[str, Any]]:
  """The weights a saved run evaluates with (its EMA, if it kept one) and their step.

  Args:
    path: a training workdir (its newest readable checkpoint) or one
      checkpoint folder (".../checkpoints/<step>").

  Returns:
    (step, {"params": ..., "batch_stats": ...}).

  Raises:
    CheckpointError: when `path` holds no readable checkpoint.
  """
  if os.path.isdir(os.path.join(path, "state")):
    state = read_state(os.path.join(path, "state"))
    step = int(state["step"])
  else:
    step, state = newest_readable_state(os.path.join(path, "checkpoints"))
  logging.info(
      "weights of step %d from %s%s", step, path, " (EMA)" if state.get("ema_params") else ""
  )
  return step, model_variables(state["params"], state.get("batch_stats"), state.get("ema_params"))
