"""Reading a saved run: its checkpoints' states, the newest that reads, its weights."""

import logging
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import errors, models, saved_runs
from cnn_jax.train import train_and_evaluate

from helpers import tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A finished tiny run: checkpoints at steps 10 and 20."""
  workdir = tmp_path_factory.mktemp("run")
  train_and_evaluate(tiny_config(num_train_steps=20, eval_every_steps=20), str(workdir))
  return workdir


def _copy(run, tmp_path):
  return shutil.copytree(run, tmp_path / "run")


def _damage(checkpoint):
  """Truncates every data file of a checkpoint (its metadata stays whole)."""
  for path in (checkpoint / "state").rglob("*"):
    if path.is_file() and path.stat().st_size > 0 and "metadata" not in path.name:
      path.write_bytes(path.read_bytes()[:5])


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_read_state_gives_the_saved_train_state_on_this_device(run):
  state = saved_runs.read_state(str(run / "checkpoints" / "20" / "state"))
  assert {"params", "batch_stats", "opt_state", "step", "rng"} <= set(state)
  assert int(state["step"]) == 20
  config = tiny_config()
  model = models.create(config.model, num_classes=10, **config.model_kwargs)
  expected = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1))))
  assert jax.tree.map(lambda a: (a.shape, a.dtype), state["params"]) == jax.tree.map(
      lambda a: (a.shape, a.dtype), expected["params"]
  )
  assert set(state["batch_stats"]) == set(expected["batch_stats"])
  here = jax.devices()[0]
  assert all(leaf.devices() == {here} for leaf in jax.tree.leaves(state["params"]))


def test_load_variables_reads_a_workdir_s_newest_or_one_checkpoint(run):
  step, variables = saved_runs.load_variables(str(run))
  assert step == 20 and set(variables) == {"params", "batch_stats"}
  newest = saved_runs.read_state(str(run / "checkpoints" / "20" / "state"))
  _assert_trees_equal(variables, {"params": newest["params"], "batch_stats": newest["batch_stats"]})
  step, older = saved_runs.load_variables(str(run / "checkpoints" / "10"))
  assert step == 10
  assert not np.array_equal(
      older["params"]["conv1_1"]["kernel"], variables["params"]["conv1_1"]["kernel"]
  )


def test_a_damaged_newest_checkpoint_is_skipped_and_named(run, tmp_path, caplog):
  copy = _copy(run, tmp_path)
  _damage(copy / "checkpoints" / "20")
  with caplog.at_level(logging.WARNING):
    step, state = saved_runs.newest_readable_state(str(copy / "checkpoints"))
  assert step == 10 and int(state["step"]) == 10
  assert "unreadable checkpoints skipped: step 20: " in caplog.text
  assert saved_runs.load_variables(str(copy))[0] == 10


def test_no_readable_checkpoint_is_one_line_that_says_what_to_do(run, tmp_path):
  with pytest.raises(saved_runs.CheckpointError) as empty:
    saved_runs.load_variables(str(tmp_path))
  assert str(empty.value) == (
      f"no readable checkpoint in {tmp_path}/checkpoints; "
      "finish (or resume) the training run first"
  )
  assert isinstance(empty.value, errors.UserError)
  copy = _copy(run, tmp_path)
  for step in ("10", "20"):
    _damage(copy / "checkpoints" / step)
  with pytest.raises(saved_runs.CheckpointError) as damaged:
    saved_runs.load_variables(str(copy))
  message = str(damaged.value)
  assert message.startswith(f"no readable checkpoint in {copy}/checkpoints (step 20: ")
  assert ", step 10: " in message and "\n" not in message


def test_newest_readable_goes_back_past_failures_and_stops_at_a_user_error():
  def read(step):
    if step == 30:
      raise ValueError("truncated\nsecond line")
    if step == 20:
      raise OSError("")
    return f"state {step}"

  assert saved_runs.newest_readable([10, 30, 20], read) == (
      10,
      "state 10",
      [(30, "ValueError: truncated"), (20, "OSError: ")],
  )
  assert saved_runs.newest_readable([], read) == (None, None, [])
  assert saved_runs.newest_readable([20, 30], read)[:2] == (None, None)

  def does_not_fit(step):
    raise errors.UserError(f"checkpoint {step} does not fit the config")

  with pytest.raises(errors.UserError, match="checkpoint 30 does not fit"):
    saved_runs.newest_readable([10, 30], does_not_fit)


def test_checkpoint_steps_are_the_numbered_folders_in_step_order(tmp_path):
  assert saved_runs.checkpoint_steps(str(tmp_path / "none")) == []
  for name in ("9", "10", "100", "10.orbax-checkpoint-tmp-3", "best"):
    (tmp_path / name).mkdir()
  assert saved_runs.checkpoint_steps(str(tmp_path)) == [9, 10, 100]


def test_model_variables_take_the_moving_average_when_the_run_kept_one():
  params, ema, stats = {"w": 1}, {"w": 2}, {"bn": {"mean": 0}}
  assert saved_runs.model_variables(params, stats, ema) == {"params": ema, "batch_stats": stats}
  assert saved_runs.model_variables(params, stats, {}) == {"params": params, "batch_stats": stats}
  assert saved_runs.model_variables(params, stats) == {"params": params, "batch_stats": stats}
  # A model without batch norm gets no "batch_stats" collection.
  assert saved_runs.model_variables(params, {}, None) == {"params": params}
  assert saved_runs.model_variables(params, None, ema) == {"params": ema}
