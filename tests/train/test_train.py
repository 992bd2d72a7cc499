"""The training loop: steps of every family, learning, exact resume, failures."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tensorboardX.proto import event_pb2

from cnn_jax import models
from cnn_jax.saved_runs import CheckpointError, read_state
from cnn_jax.tasks import Classification
from cnn_jax.train import (
    ConfigError,
    NonFiniteLossError,
    Preempted,
    config as config_lib,
    parallel,
    steps,
    train_and_evaluate,
)
from cnn_jax.train import state as state_lib
from cnn_jax.train import train as train_lib

from conftest import abstract_variables, random_variables
from helpers import ROOT, TINY, python, tiny_config, two_processes


def final_state(workdir) -> dict:
  """The newest checkpoint's state, read with orbax's plain checkpointer rather
  than the loop's CheckpointManager (whatever devices wrote it)."""
  directory = pathlib.Path(workdir) / "checkpoints"
  step = max(int(p.name) for p in directory.iterdir() if p.name.isdigit())
  return read_state(str(directory / str(step) / "state"))


def assert_trees_equal(a, b):
  leaves_a, tree_a = jax.tree.flatten(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def read_events(workdir) -> dict[str, list[tuple[int, float]]]:
  """Scalars of the TensorBoard event files, parsed from the TFRecord framing."""
  scalars: dict[str, list] = {}
  for path in pathlib.Path(workdir).glob("events.out.tfevents.*"):
    data, i = path.read_bytes(), 0
    while i < len(data):
      length = int.from_bytes(data[i : i + 8], "little")
      event = event_pb2.Event.FromString(data[i + 12 : i + 12 + length])
      i += 12 + length + 4
      for value in event.summary.value:
        scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
  return scalars


# ---------------------------------------------------------------------------
# Config checks.


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("dtype", "float16", "config.dtype='float16'"),
        ("input_pipeline", "tf.data", "config.input_pipeline='tf.data'"),
        ("batch_size", 0, "config.batch_size=0 must be positive"),
        ("mean", (0.5,), "config.mean has 1 values but config.std has 0"),
        ("ema_decay", 1.0, "config.ema_decay=1.0"),
        ("normalize", "whiten", "config.normalize='whiten'; use one of"),
        ("loss", "hinge", "config.loss='hinge'; use one of"),
        ("map_j", 0.0, "config.map_j=0.0 must be a positive finite number"),
        ("map_j", float("inf"), "config.map_j=inf must be a positive finite number"),
    ],
)
def test_bad_config_values_are_named(field, value, message):
  config = tiny_config()
  config[field] = value
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    config_lib.validate(config)


def test_normalize_standardizes_centers_or_keeps_raw_pixels(tmp_path):
  config = tiny_config()
  config.data_dir = str(tmp_path)
  standardized = config_lib.input_mean_std(config)
  config.normalize = "center"
  centered = config_lib.input_mean_std(config)
  config.normalize = "none"
  assert config_lib.input_mean_std(config) == ([0.0], [1.0])  # digits: one channel
  assert centered == (standardized[0], [1.0])
  # The digits' ink covers a minority of the 8x8 pixels: a mean well inside (0, 0.5).
  assert 0.1 < standardized[0][0] < 0.5 and 0.1 < standardized[1][0] < 0.5
  config.normalize = "center"
  config.mean, config.std = (0.25,), (0.5,)
  assert config_lib.input_mean_std(config) == ([0.25], [1.0])


def test_normalize_lecun1998_puts_background_at_minus_0_1_and_ink_at_1_175(tmp_path):
  config = tiny_config(normalize="lecun1998", data_dir=str(tmp_path))
  mean, std = config_lib.input_mean_std(config)
  # 1.275 x - 0.1 = (x - 0.1 / 1.275) / (1 / 1.275).
  np.testing.assert_allclose([mean, std], [[0.1 / 1.275], [1 / 1.275]])
  pixels = np.array([0, 255], np.uint8).reshape(1, 1, 2, 1)  # background, ink
  x = steps.InputTransform(mean=mean, std=std).model_input(pixels)
  np.testing.assert_allclose(np.asarray(x).ravel(), [-0.1, 1.175], rtol=1e-6)


def test_rbf_losses_need_a_model_with_rbf_outputs():
  config = tiny_config(loss="rbf_map")  # the tiny config's model has a dense output
  with pytest.raises(ConfigError) as error:
    config_lib.validate(config)
  message = str(error.value)
  assert "\n" not in message
  assert message == (
      "config.loss='rbf_map' needs Euclidean RBF output units, which model 'standard' "
      "does not have; use config.loss='cross_entropy' or a model with them: lenet5"
  )
  config.model, config.model_kwargs = "lenet5", {}
  config_lib.validate(config)  # lenet5's output units are Euclidean RBFs
  config.model_kwargs = dict(output="dense")  # its fields decide, not its name
  with pytest.raises(ConfigError, match="which model 'lenet5' does not have"):
    config_lib.validate(config)
  config.model_kwargs, config.label_smoothing = {}, 0.1
  with pytest.raises(ConfigError, match="config.label_smoothing=0.1 smooths cross-entropy"):
    config_lib.validate(config)


def test_batch_must_divide_over_devices():
  with pytest.raises(
      ConfigError,
      match="batch_size=100 does not divide over 8 devices; "
      "use a multiple of 8 such as 96 or 104",
  ):
    config_lib.check_batch_divides(100, 8)
  config_lib.check_batch_divides(96, 8)


def test_run_length_in_epochs_or_steps():
  config = tiny_config(num_train_steps=0, num_epochs=2.5, eval_every_steps=0, eval_every_epochs=1.0)
  assert config_lib.run_length(config, 44) == (110, 44)
  config.num_train_steps = 7
  assert config_lib.run_length(config, 44) == (7, 44)


def test_one_resolver_turns_epochs_into_steps():
  # Steps win when positive; epochs are rounded; tuples (schedule boundaries) map elementwise.
  config = tiny_config(checkpoint_every_steps=0, checkpoint_every_epochs=0.25)
  assert config_lib.in_steps(config, "checkpoint_every_steps", "checkpoint_every_epochs", 44) == 11
  config.checkpoint_every_steps = 5
  assert config_lib.in_steps(config, "checkpoint_every_steps", "checkpoint_every_epochs", 44) == 5
  schedule = {"boundaries": (), "boundaries_epochs": (1, 2.5)}
  assert config_lib.in_steps(schedule, "boundaries", "boundaries_epochs", 10) == [10, 25]
  assert config_lib.in_steps({}, "warmup_steps", "warmup_epochs", 10) == 0
  with pytest.raises(ConfigError, match="checkpoint_every_epochs=-1.0 must be >= 0"):
    config_lib.validate(tiny_config(checkpoint_every_epochs=-1.0))


def test_checkpoints_every_so_many_epochs(tmp_path):
  # 1438 training digits / 32 = 44 steps per epoch: a quarter epoch is 11 steps.
  config = tiny_config(
      num_train_steps=22,
      eval_every_steps=100,
      checkpoint_every_steps=0,
      checkpoint_every_epochs=0.25,
  )
  train_and_evaluate(config, str(tmp_path))
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [11, 22]


def test_cli_reports_config_mistakes_in_one_line(tmp_path):
  for override, expected in [
      ("--config.model=resnet9", "error: unknown model 'resnet9'"),
      ("--config.batch_size=5000", "exceeds the 1438 training"),
      ("--config.dataset=cifar10", "python -m cnn_jax.data.prepare"),
  ]:
    run = subprocess.run(
        [
            python(),
            "-m",
            "cnn_jax.main",
            f"--config={TINY}",
            f"--workdir={tmp_path / 'w'}",
            override,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last, run.stderr[-2000:]
    assert "Traceback" not in run.stderr


# ---------------------------------------------------------------------------
# One step of every family.

FAMILIES = {
    "lenet5": (32, {}),
    "standard": (16, dict(widths=(4, 8), batch_norm=True, dropout=0.1)),
    "alexnet_tv": (63, dict(fc_width=16, dropout=0.0)),
    "vgg_a": (32, dict(stages=((4,), (8, 8)), fc_width=16, dropout=0.0)),
    "googlenet": (48, dict(aux_logits=True, batch_norm=True, dropout=0.0)),
    "resnet20": (16, dict(width=4)),
    "resnet50": (32, dict(width=4, stage_sizes=(1, 1, 1, 1))),
    "allcnn_c": (16, dict(dropout=0.0, input_dropout=0.0)),
}


def host_state(name, size, tx, **overrides):
  """A TrainState built on the host (compiling a big initializer costs more than the step)."""
  variables = random_variables(abstract_variables(name, size, num_classes=10, **overrides))
  return state_lib.TrainState(
      step=jnp.zeros((), jnp.int32),
      params=variables["params"],
      batch_stats=variables.get("batch_stats", {}),
      opt_state=tx.init(variables["params"]),
      ema_params={},
      rng=jax.random.key_data(jax.random.key(0)),
  )


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_training_steps_of_every_family(name):
  size, overrides = FAMILIES[name]
  channels = models.spec(name).channels
  model = models.create(name, num_classes=10, **overrides)
  tx = optax.sgd(0.003)
  mesh = parallel.make_mesh(jax.devices()[:1])
  # Placed as the loop places it, so that every call reuses one compilation.
  state = parallel.put_replicated(host_state(name, size, tx, **overrides), mesh)
  rng = np.random.default_rng(0)
  batch = {
      "image": rng.integers(0, 256, (4, size, size, channels), dtype=np.uint8),
      "label": np.arange(4, dtype=np.int32),
  }
  step = steps.make_train_step(
      model,
      tx,
      mesh,
      input_transform=steps.InputTransform(mean=(0.5,), std=(0.25,)),
      task=Classification(aux_loss_weight=0.3),
      donate=False,
  )
  losses, current = [], state
  for _ in range(5):  # the same batch five times: the loss must fall
    current, totals = step(current, parallel.put_replicated(steps.empty_totals(), mesh), batch)
    losses.append(float(totals["loss"]))

  assert int(current.step) == 5
  assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
  # On the host: an eager jnp op per leaf would compile a program per shape.
  assert all(np.all(np.isfinite(np.asarray(p))) for p in jax.tree.leaves(current.params))
  if state.batch_stats:  # running statistics moved towards the batch's
    moved = jax.tree.map(
        lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
        state.batch_stats,
        current.batch_stats,
    )
    assert all(jax.tree.leaves(moved))


@pytest.mark.parametrize("kind", ["rbf_mse", "rbf_map"])
def test_train_step_minimizes_the_papers_rbf_loss(kind):
  model = models.create("lenet5")
  tx = optax.sgd(0.003)
  mesh = parallel.make_mesh(jax.devices()[:1])
  state = host_state("lenet5", 32, tx)
  rng = np.random.default_rng(0)
  batch = {
      "image": rng.integers(0, 256, (4, 32, 32, 1), dtype=np.uint8),
      "label": np.arange(4, dtype=np.int32),
  }
  transform = steps.InputTransform(mean=(0.5,), std=(0.25,))
  task = Classification(kind=kind, map_j=10.0)
  # What the first step reports: the batch mean of the per-example loss of
  # the initial parameters' outputs, e.g. rbf_mse: the correct codes' distances.
  logits = model.apply(state.variables(), transform.model_input(batch["image"]))
  expected = float(np.mean(task.per_example(logits, batch["label"])))
  if kind == "rbf_mse":
    np.testing.assert_allclose(expected, -np.mean(np.asarray(logits)[np.arange(4), np.arange(4)]))
  step = steps.make_train_step(model, tx, mesh, input_transform=transform, task=task, donate=False)
  state = parallel.put_replicated(state, mesh)
  losses = []
  for _ in range(5):
    state, totals = step(state, parallel.put_replicated(steps.empty_totals(), mesh), batch)
    losses.append(float(totals["loss"]))
  np.testing.assert_allclose(losses[0], expected, rtol=1e-5)
  assert losses[-1] < losses[0], losses


def test_bfloat16_computes_in_bf16_and_keeps_float32_state():
  model32 = models.create("standard", num_classes=10, widths=(4, 8), batch_norm=True)
  model16 = models.create(
      "standard", num_classes=10, widths=(4, 8), batch_norm=True, dtype=jnp.bfloat16
  )
  tx = optax.sgd(0.1)
  mesh = parallel.make_mesh(jax.devices()[:1])
  state = state_lib.create(model32, tx, (1, 16, 16, 3), seed=0, use_ema=False)
  batch = {
      "image": np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8),
      "label": np.arange(8, dtype=np.int32) % 10,
  }
  results = {}
  for name, model in (("f32", model32), ("bf16", model16)):
    step = steps.make_train_step(
        model, tx, mesh, input_transform=steps.InputTransform(dtype=model.dtype), donate=False
    )
    results[name] = step(state, steps.empty_totals(), batch)
    jaxpr = str(jax.make_jaxpr(step)(state, steps.empty_totals(), batch))
    assert ("bf16[8,16,16,4]" in jaxpr) == (name == "bf16")
  new16, totals16 = results["bf16"]
  for leaf in jax.tree.leaves((new16.params, new16.batch_stats, new16.opt_state)):
    assert leaf.dtype == jnp.float32
  assert totals16["loss"].dtype == jnp.float32
  loss32, loss16 = float(results["f32"][1]["loss"]), float(totals16["loss"])
  assert loss16 != loss32 and abs(loss16 - loss32) < 0.02 * loss32


def test_ema_params_follow_the_moving_average():
  model = models.create("standard", num_classes=10, widths=(4,), fc_widths=())
  tx = optax.sgd(0.1)
  mesh = parallel.make_mesh(jax.devices()[:1])
  state = state_lib.create(model, tx, (1, 8, 8, 1), seed=0, use_ema=True)
  batch = {"image": np.full((4, 8, 8, 1), 128, np.uint8), "label": np.arange(4, dtype=np.int32)}
  step = steps.make_train_step(model, tx, mesh, ema_decay=0.9, donate=False)
  new_state, _ = step(state, steps.empty_totals(), batch)
  expected = jax.tree.map(lambda old, new: 0.9 * old + 0.1 * new, state.params, new_state.params)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new_state.ema_params, expected
  )


# ---------------------------------------------------------------------------
# Whole runs.


def test_run_learns_digits_and_writes_its_records(tmp_path):
  config = tiny_config(
      num_train_steps=200, eval_every_steps=100, log_every_steps=25, checkpoint_every_steps=0
  )
  result = train_and_evaluate(config, str(tmp_path))
  assert result["accuracy"] > 0.9, result
  assert result["step"] == 200 and result["top5_accuracy"] >= result["accuracy"]

  saved = json.loads((tmp_path / "results.json").read_text())
  assert {k: saved[k] for k in ("accuracy", "loss", "step")} == {
      k: result[k] for k in ("accuracy", "loss", "step")
  }
  assert saved["wall_seconds"] > 0
  # widths (8, 16), 3x3 convs with batch norm (no bias), fc 32 with batch norm, 10 classes.
  assert saved["num_params"] == (9 * 8 + 2 * 8) + (9 * 8 * 16 + 2 * 16) + (
      2 * 2 * 16 * 32 + 2 * 32
  ) + (32 * 10 + 10)
  assert json.loads((tmp_path / "config.json").read_text())["model"] == "standard"
  environment = json.loads((tmp_path / "environment.json").read_text())
  assert environment["cnn_jax_version"] and environment["git_commit"]

  events = read_events(tmp_path)
  for tag in (
      "train/loss",
      "train/accuracy",
      "train/learning_rate",
      "train/images_per_s",
      "train/grad_norm",
      "eval/accuracy",
      "eval/loss",
      "eval/top5_accuracy",
  ):
    assert tag in events, tag
  assert [s for s, _ in events["train/loss"]] == list(range(25, 201, 25))
  assert events["eval/accuracy"][-1] == (200, pytest.approx(result["accuracy"]))
  # The loss logged at step 200 is the mean over steps 176..200: it fell.
  assert events["train/loss"][-1][1] < 0.5 * events["train/loss"][0][1]
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [100, 200]


def test_run_trains_lenet5_with_the_papers_loss_and_input(tmp_path):
  config = tiny_config(
      model="lenet5",
      image_size=32,
      augment="",
      loss="rbf_map",
      normalize="lecun1998",
      num_train_steps=4,
      eval_every_steps=4,
      log_every_steps=2,
      checkpoint_every_steps=0,
  )
  config.model_kwargs = {}
  config.optimizer.learning_rate = 0.01
  result = train_and_evaluate(config, str(tmp_path))
  assert result["step"] == 4 and np.isfinite(result["loss"])
  # The logged training loss is the MAP criterion, about the correct code's
  # squared distance (tens: 84 pixels off by about 1 at the start) less j;
  # cross-entropy over 10 classes would start near ln 10 = 2.3.
  first = read_events(tmp_path)["train/loss"][0][1]
  assert first > 10.0, first
  assert json.loads((tmp_path / "config.json").read_text())["loss"] == "rbf_map"


def test_grain_run_resumes_exactly_where_it_stopped(tmp_path):
  # A constant learning rate makes a 20-step run the first half of a 40-step one.
  reference = train_and_evaluate(tiny_config("grain"), str(tmp_path / "reference"))
  train_and_evaluate(tiny_config("grain", num_train_steps=20), str(tmp_path / "split"))
  resumed = train_and_evaluate(tiny_config("grain"), str(tmp_path / "split"))
  assert resumed == reference
  assert_trees_equal(final_state(tmp_path / "split"), final_state(tmp_path / "reference"))


def test_best_checkpoint_is_the_best_eval_and_ema_is_evaluated(tmp_path):
  config = tiny_config(
      num_train_steps=40, eval_every_steps=10, keep_best=True, ema_decay=0.5, keep_checkpoints=1
  )
  train_and_evaluate(config, str(tmp_path))
  evals = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  evals = [e for e in evals if e["split"] == "eval"]
  best = max(evals, key=lambda e: e["accuracy"])  # the first of equals, as orbax keeps
  assert [p.name for p in (tmp_path / "best").iterdir() if p.name.isdigit()] == [str(best["step"])]
  assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["40"]
  state = final_state(tmp_path)
  restored = state_lib.TrainState(**state)
  assert restored.variables(use_ema=True)["params"] is restored.ema_params
  assert restored.variables()["params"] is restored.params


def test_unreadable_latest_checkpoint_falls_back_to_the_previous(tmp_path, capfd, caplog):
  config = tiny_config(num_train_steps=20, eval_every_steps=20)
  train_and_evaluate(config, str(tmp_path))
  # Damage every data file of the newest checkpoint (a truncated copy).
  for path in (tmp_path / "checkpoints" / "20" / "state").rglob("*"):
    if path.is_file() and path.stat().st_size > 0 and "metadata" not in path.name:
      path.write_bytes(path.read_bytes()[:5])
  capfd.readouterr()
  train_and_evaluate(tiny_config(num_train_steps=30, eval_every_steps=30), str(tmp_path))
  out, _ = capfd.readouterr()
  assert "resumed from" in out and "at step 10" in out
  assert "checkpoint at step 20 is unreadable" in caplog.text
  assert (tmp_path / "checkpoints_unreadable" / "20" / "state").is_dir()  # kept, not deleted
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [10, 20, 30]


def test_changed_model_does_not_restore_and_says_why(tmp_path):
  train_and_evaluate(tiny_config(num_train_steps=10, eval_every_steps=10), str(tmp_path))
  config = tiny_config(num_train_steps=10)
  config.model_kwargs.widths = (6, 8)
  with pytest.raises(CheckpointError, match="use a new --workdir"):
    train_and_evaluate(config, str(tmp_path))
  assert (tmp_path / "checkpoints" / "10").is_dir()  # nothing moved or deleted


@pytest.mark.parametrize("where", ["small", "large", "bfloat16"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_the_state_check_finds_a_nonfinite_value_in_any_leaf(where, bad):
  # Small leaves are checked in one concatenation, large ones one by one.
  large = steps._SMALL_LEAF + 1
  tree = {
      "small": np.zeros(7, np.float32),
      "large": np.zeros(large, np.float32),
      "bfloat16": jnp.zeros(5, jnp.bfloat16),
      "steps": np.arange(3),  # integers have no NaN: not checked
  }
  check = jax.jit(steps._all_finite)
  assert bool(check(tree))
  leaf = np.array(tree[where], np.float32)
  leaf[-1] = bad
  assert not bool(check({**tree, where: jnp.asarray(leaf, tree[where].dtype)}))
  assert bool(check({"steps": np.arange(3)}))


def test_nan_loss_stops_with_the_step_and_keeps_the_good_checkpoint(tmp_path):
  # A sane rate for 10 steps, then one that blows the weights up.
  config = tiny_config(
      num_train_steps=40, log_every_steps=5, checkpoint_every_steps=10, eval_every_steps=100
  )
  config.schedule = dict(name="step", boundaries=(10,), factor=1e12)
  with pytest.raises(
      NonFiniteLossError,
      match=r"NaN or Inf at step (1[0-4]);.*" r"last good checkpoint \(step 10\)",
  ):
    train_and_evaluate(config, str(tmp_path))
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [10]
  state = final_state(tmp_path)
  assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(state["params"]))
  assert not (tmp_path / "results.json").exists()


# ---------------------------------------------------------------------------
# Kill and SIGTERM: real processes, resumed by re-running the same command.

LONG_RUN = [
    "--config.num_train_steps=800",
    "--config.checkpoint_every_steps=200",
    "--config.eval_every_steps=800",
    "--config.log_every_steps=100",
]


# The training CLI, held before its step HOLD_AT_STEP (the file MARKERS/held
# says so) until a SIGTERM has reached the run's handler (MARKERS/sigterm):
# a signal sent while it is held lands in a run that is still going, at a
# known step.
HELD_RUN = r"""
import os, pathlib, runpy, sys, time
from cnn_jax.train import steps, train

markers, hold_at = pathlib.Path(os.environ["MARKERS"]), int(os.environ["HOLD_AT_STEP"])
make_train_step, handle = steps.make_train_step, train._TerminationSignal._handle
calls = 0

def marked_handle(self, signum, frame):
  handle(self, signum, frame)
  (markers / "sigterm").touch()

def held_make_train_step(*args, **kwargs):
  step = make_train_step(*args, **kwargs)

  def held_step(*step_args):
    global calls
    calls += 1
    if calls == hold_at:
      (markers / "held").touch()
      while not (markers / "sigterm").exists():
        time.sleep(0.01)
    return step(*step_args)

  return held_step

steps.make_train_step = held_make_train_step
train._TerminationSignal._handle = marked_handle
sys.argv[0] = "cnn_jax.main"
runpy.run_module("cnn_jax.main", run_name="__main__", alter_sys=True)
"""
HOLD_AT_STEP = 300  # after the checkpoint of step 200, before the next one


def _start_held(workdir, markers):
  markers.mkdir()
  return subprocess.Popen(
      [sys.executable, "-c", HELD_RUN, f"--config={TINY}", f"--workdir={workdir}", *LONG_RUN],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      cwd=ROOT,
      env={**os.environ, "MARKERS": str(markers), "HOLD_AT_STEP": str(HOLD_AT_STEP)},
  )


def _wait_for(path: pathlib.Path, process: subprocess.Popen, limit_s: float = 240) -> None:
  """Waits until `path` exists; fails at once if the run ended first."""
  deadline = time.monotonic() + limit_s
  while not path.exists():
    assert process.poll() is None, process.communicate()
    assert time.monotonic() < deadline, f"no {path} within {limit_s} s"
    time.sleep(0.02)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("uninterrupted")
  config = tiny_config(
      num_train_steps=800, checkpoint_every_steps=200, eval_every_steps=800, log_every_steps=100
  )
  return train_and_evaluate(config, str(workdir)), final_state(workdir)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_killed_run_resumes_bit_exactly(tmp_path, uninterrupted, how):
  workdir, markers = tmp_path / "w", tmp_path / "markers"
  process = _start_held(workdir, markers)
  _wait_for(markers / "held", process)
  _wait_for(workdir / "checkpoints" / "200", process)  # orbax renames it when complete
  process.send_signal(getattr(signal, how))
  out, err = process.communicate(timeout=120)
  if how == "SIGKILL":
    assert process.returncode == -signal.SIGKILL
    assert sorted(os.listdir(workdir / "checkpoints")) == ["200"]
  else:  # saved where it stood, said so, and exited with 128 + SIGTERM
    assert process.returncode == 143, err[-2000:]
    assert f"SIGTERM: saved a checkpoint at step {HOLD_AT_STEP} in" in out, out[-2000:]
    assert sorted(os.listdir(workdir / "checkpoints")) == ["200", str(HOLD_AT_STEP)]
  assert not (workdir / "results.json").exists()

  rerun = subprocess.run(
      [
          python(),
          "-m",
          "cnn_jax.main",
          f"--config={TINY}",
          f"--workdir={workdir}",
          *LONG_RUN,
      ],
      capture_output=True,
      text=True,
      timeout=300,
      cwd=ROOT,
  )
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  resumed_at = 200 if how == "SIGKILL" else HOLD_AT_STEP
  assert "resumed from" in rerun.stdout and f"at step {resumed_at}" in rerun.stdout, rerun.stdout
  result, state = uninterrupted
  saved = json.loads((workdir / "results.json").read_text())
  assert {k: saved[k] for k in result} == result
  assert_trees_equal(final_state(workdir), state)


def test_sigterm_in_process_raises_preempted(tmp_path):
  config = tiny_config(num_train_steps=1000, checkpoint_every_steps=0, eval_every_steps=1000)
  signal_at = {"armed": True}
  original = steps.make_train_step

  def make_step(*args, **kwargs):
    step = original(*args, **kwargs)

    def step_then_signal(state, totals, inputs):
      out = step(state, totals, inputs)
      if signal_at["armed"] and int(out[0].step) == 7:
        signal_at["armed"] = False
        os.kill(os.getpid(), signal.SIGTERM)
      return out

    return step_then_signal

  handler_before = signal.getsignal(signal.SIGTERM)
  steps.make_train_step = make_step
  try:
    with pytest.raises(Preempted) as stop:
      train_and_evaluate(config, str(tmp_path))
  finally:
    steps.make_train_step = original
  assert stop.value.code == 143
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [7]
  assert signal.getsignal(signal.SIGTERM) is handler_before  # restored


# ---------------------------------------------------------------------------
# Devices and processes (each in its own Python, with its own device count).


def _python(code_or_args, devices: int, **kwargs):
  env = dict(os.environ)
  env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
  return subprocess.run(
      [python(), *code_or_args],
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
      **kwargs,
  )


def test_eight_devices_give_the_one_device_loss_gradients_and_batch_norm():
  run = _python([str(ROOT / "tests" / "scripts" / "compare_devices.py")], devices=8)
  assert run.returncode == 0, run.stderr[-3000:]
  report = json.loads(run.stdout.strip().splitlines()[-1])
  assert report["devices"] == 8
  assert report["loss_rel_diff"] < 1e-5
  assert report["update_max_rel_diff"] < 1e-4
  assert report["batch_stats_max_rel_diff"] < 1e-5
  # Per-device statistics (what pmap without a cross-device mean gives) would
  # differ by far more: the check above can fail.
  assert report["per_device_bn_loss_rel_diff"] > 1e-3


def test_two_processes_match_one_process_with_four_devices(tmp_path):
  args = [
      f"--config={TINY}",
      "--config.num_train_steps=12",
      "--config.log_every_steps=1",
      "--config.eval_every_steps=12",
      "--config.checkpoint_every_steps=6",
  ]
  single = _python(["-m", "cnn_jax.main", *args, f"--workdir={tmp_path / 'one'}"], devices=4)
  assert single.returncode == 0, single.stderr[-3000:]

  outputs = two_processes(["-m", "cnn_jax.main", *args, f"--workdir={tmp_path / 'two'}"], tmp_path)
  # Only process 0 reports (Gloo itself may print connection lines on any process).
  assert "on 4 device(s)" in outputs[0][0]
  assert "steps/s" not in outputs[1][0] and "eval at step" not in outputs[1][0]
  # ...but every process ends with its own copy of the final eval.
  finals = [
      next(line for line in out.splitlines() if "finished at step 12" in line) for out, _ in outputs
  ]
  assert finals[0].split(":", 1)[1] == finals[1].split(":", 1)[1]

  def losses(workdir):
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["split"] == "train"]

  one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
  assert len(one) == 12
  np.testing.assert_allclose(two, one, rtol=1e-5)
  result_one = json.loads((tmp_path / "one" / "results.json").read_text())
  result_two = json.loads((tmp_path / "two" / "results.json").read_text())
  assert result_two["accuracy"] == pytest.approx(result_one["accuracy"], abs=1e-9)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
      final_state(tmp_path / "two")["params"],
      final_state(tmp_path / "one")["params"],
  )


def test_grey_images_with_per_rgb_channel_statistics_feed_a_3_channel_model():
  # ImageNet networks on grey digits: the normalization broadcasts the channel.
  imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
  assert train_lib.model_input_shape((64, 64, 1), *imagenet) == (64, 64, 3)
  assert train_lib.model_input_shape((32, 32, 1), (0.5,), (0.25,)) == (32, 32, 1)
  assert train_lib.model_input_shape((32, 32, 3), (0.5,), (0.25,)) == (32, 32, 3)
