"""Saving and restoring runs with orbax: the last K checkpoints, and the best.

    WORKDIR/checkpoints/<step>/   the most recent `keep` checkpoints
    WORKDIR/best/<step>/          the one with the highest eval accuracy
    WORKDIR/checkpoints_unreadable/<step>/  a checkpoint that failed to restore

A checkpoint holds the `TrainState` (params, batch stats, optimizer state,
EMA, step, PRNG key) and, for streamed data, each process's Grain iterator
state. Orbax writes a checkpoint to a temporary folder and renames it when
complete, so a run killed while saving leaves the previous checkpoints
intact; a checkpoint that is complete but unreadable (a damaged disk, a
truncated copy) is moved aside and the one before it is used.
"""

from __future__ import annotations

import os
import shutil

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from cnn_jax import interrupts, saved_runs
from cnn_jax.saved_runs import CheckpointError
from cnn_jax.train.state import TrainState


def _saved_shapes(path: str) -> dict[str, tuple[tuple[int, ...], str]]:
  """{array path: (shape, dtype)} of a saved state, read from its metadata only."""
  with saved_runs.quiet_absl():  # orbax warns that a file it does not need is missing
    tree = ocp.StandardCheckpointer().metadata(path).item_metadata.tree
  return _shape_table(tree)


def _shape_table(tree) -> dict[str, tuple[tuple[int, ...], str]]:
  flat = ocp.tree.to_flat_dict(tree, sep="/")
  return {
      name: (tuple(leaf.shape), np.dtype(leaf.dtype).name)
      for name, leaf in flat.items()
      if hasattr(leaf, "shape")
  }


def _check_fits(saved: dict, abstract_state: TrainState, step: int) -> None:
  """Raises CheckpointError naming the first array the config makes differently."""
  wanted = _shape_table(ocp.tree.serialize_tree(abstract_state, keep_empty_nodes=True))
  for name in sorted(set(saved) | set(wanted)):
    if saved.get(name) != wanted.get(name):

      def describe(entry):
        return "no such array" if entry is None else f"shape {entry[0]} {entry[1]}"

      raise CheckpointError(
          f"the config does not fit the checkpoint at step {step}: {name} is "
          f"{describe(saved.get(name))} there and {describe(wanted.get(name))} in this config; "
          "use a new --workdir, or the run's own config (its config.json)"
      )


class _IteratorState:
  """Carries a Grain iterator state through grain's checkpoint handler.

  The loader runs a few batches ahead of the step, so the state to save is
  the one recorded after the last batch trained on, not the live iterator's.
  """

  def __init__(self, state: bytes | None = None):
    self.value = state

  def get_state(self) -> bytes:
    return self.value

  def set_state(self, state: bytes) -> None:
    self.value = state

  def start_prefetch(self) -> None:
    pass


def _save_args(state: TrainState, data_state: bytes | None) -> ocp.args.Composite:
  items = {"state": ocp.args.StandardSave(state)}
  if data_state is not None:
    items["data"] = grain.checkpoint.CheckpointSave(_IteratorState(data_state))
  return ocp.args.Composite(**items)


def _restore_args(abstract_state: TrainState, with_data: bool) -> ocp.args.Composite:
  items = {"state": ocp.args.StandardRestore(abstract_state)}
  if with_data:
    items["data"] = grain.checkpoint.CheckpointRestore(_IteratorState())
  return ocp.args.Composite(**items)


class Checkpoints:
  """The checkpoints of one workdir.

  Args:
    workdir: the run's folder.
    keep: how many recent checkpoints to keep.
    keep_best: also keep the checkpoint with the best eval accuracy.
    async_save: write in the background while training goes on.
  """

  def __init__(
      self, workdir: str, *, keep: int = 2, keep_best: bool = False, async_save: bool = True
  ):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    if async_save and jax.process_count() > 1 and jax.default_backend() == "cpu":
      # Several CPU processes talk through gloo, and a background save's
      # cross-process sync could then interleave with the training step's
      # collectives in a different order on each process and deadlock (seen
      # under load). Accelerator runs keep the background saves.
      async_save = False
    # create=False: opening the managers writes nothing (a rejected command
    # leaves the workdir as it was); the first save creates the folders.
    self._options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=False, enable_async_checkpointing=async_save
    )
    self._manager = ocp.CheckpointManager(self.directory, options=self._options)
    self._best = None
    if keep_best:
      self._best = ocp.CheckpointManager(
          os.path.join(os.path.abspath(workdir), "best"),
          options=ocp.CheckpointManagerOptions(
              max_to_keep=1,
              create=False,
              best_fn=lambda metrics: metrics["accuracy"],
              best_mode="max",
              enable_async_checkpointing=async_save,
          ),
      )

  def steps(self) -> list[int]:
    """Steps of the complete checkpoints, oldest first."""
    return sorted(self._manager.all_steps())

  def save(self, state: TrainState, data_state: bytes | None = None) -> None:
    """Starts saving `state` at its step (returns before the write ends if async).

    Args:
      state: the train state.
      data_state: this process's Grain iterator state, or None.
    """
    step = int(state.step)
    if step in self._manager.all_steps():
      return  # e.g. the final save right after a periodic one
    with interrupts.deferred():  # orbax would swallow a Ctrl-C while it waits
      self._manager.save(step, args=_save_args(state, data_state))

  def save_best(self, state: TrainState, accuracy: float) -> None:
    """Offers `state` as the best checkpoint; kept if its accuracy is the highest."""
    if self._best is not None and int(state.step) not in self._best.all_steps():
      with interrupts.deferred():
        self._best.save(
            int(state.step), args=_save_args(state, None), metrics={"accuracy": float(accuracy)}
        )

  def restore_latest(
      self, abstract_state: TrainState, with_data: bool
  ) -> tuple[TrainState, bytes | None] | None:
    """The newest checkpoint that restores; unreadable newer ones are moved aside.

    Args:
      abstract_state: the state's structure (`jax.eval_shape` of its
        creation, with shardings).
      with_data: restore a Grain iterator state too.

    Returns:
      (state, data iterator state or None), or None when there is no checkpoint.

    Raises:
      CheckpointError: when checkpoints exist but none restores (for example
        after the model or optimizer was changed in the config).
    """

    def restore(step):
      saved = _saved_shapes(os.path.join(self.directory, str(step), "state"))
      # Checked before orbax restores (a CheckpointError ends the search): a
      # restore that fails leaves orbax's threads printing tracebacks, and
      # the user needs the array's name.
      _check_fits(saved, abstract_state, step)
      return self._manager.restore(step, args=_restore_args(abstract_state, with_data))

    with interrupts.deferred():
      step, restored, failures = saved_runs.newest_readable(self.steps(), restore)
    if step is None:
      if failures:
        bad_step, reason = failures[0]
        raise CheckpointError(
            f"no checkpoint in {self.directory} restores (newest, step {bad_step}: {reason}); "
            "if the config's model or optimizer changed since, use a new --workdir"
        )
      return None
    for bad_step, reason in failures:
      self._move_aside(bad_step, reason, good_step=step)
    data = restored["data"].value if with_data else None
    return restored["state"], data

  def _move_aside(self, step: int, reason: str, good_step: int) -> None:
    target = os.path.join(os.path.dirname(self.directory), "checkpoints_unreadable", str(step))
    logging.warning(
        "checkpoint at step %d is unreadable (%s); moved it to %s and resumed " "from step %d",
        step,
        reason,
        target,
        good_step,
    )
    if jax.process_index() == 0:
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.move(os.path.join(self.directory, str(step)), target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"moved checkpoint {step} aside")
    self._manager.reload()  # it caches its list of steps

  def wait(self) -> None:
    """Blocks until every background write has finished."""
    with interrupts.deferred():  # orbax catches a Ctrl-C while it waits, and goes on
      self._manager.wait_until_finished()
      if self._best is not None:
        self._best.wait_until_finished()

  def remove_partial(self) -> None:
    """Deletes half-written checkpoints (orbax's *.orbax-checkpoint-tmp folders).

    A failed save (a full disk) leaves one behind; it never restores, and it
    holds space the user needs back. Call after `close`, on process 0.
    """
    for folder in (self.directory, os.path.join(os.path.dirname(self.directory), "best")):
      if os.path.isdir(folder):
        for name in os.listdir(folder):
          if name.endswith(".orbax-checkpoint-tmp"):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)

  def close(self) -> None:
    """Finishes pending writes and releases the managers."""
    with interrupts.deferred():
      self.wait()
      self._manager.close()
      if self._best is not None:
        self._best.close()
