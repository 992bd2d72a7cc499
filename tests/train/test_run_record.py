"""A run's record never lies: resumes that would redefine a run are refused, the
ones that may change it are recorded, impossible configs are refused, and
damaged records (cut by a kill) are repaired or reported, never crashed on."""

import csv
import json
import math
import os
import pathlib
import re
import shutil
import socket
import subprocess

import numpy as np
import pytest
from PIL import Image

from cnn_jax import records
from cnn_jax.data import sources
from cnn_jax.errors import ConfigError
from cnn_jax.sweep import config_files, curves, runner, tables
from cnn_jax.train import base_config, config as config_lib, optimizers, run_record
from cnn_jax.train import train_and_evaluate
from cnn_jax.train import workdir as workdir_lib

from helpers import ROOT, TINY, assert_one_line_error, cli, python, snapshot, tiny_config

STEPS = ["--config.num_train_steps=20", "--config.eval_every_steps=20"]


def train(workdir, *overrides):
  return cli("cnn_jax.main", f"--config={TINY}", f"--workdir={workdir}", *overrides)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished 20-step tiny run (checkpoints at 10 and 20), made by the CLI."""
  workdir = tmp_path_factory.mktemp("records") / "finished"
  run = train(workdir, *STEPS)
  assert run.returncode == 0, run.stderr[-2000:]
  return workdir


@pytest.fixture
def run_copy(finished, tmp_path):
  """A copy of the finished run that a test may change."""
  return pathlib.Path(shutil.copytree(finished, tmp_path / "run"))


def read(path: pathlib.Path):
  return json.loads(path.read_text())


# ---------------------------------------------------------------------------
# Records cut by a kill: metrics.jsonl and results.json.


def test_a_resume_starts_its_metrics_on_a_fresh_line(run_copy):
  metrics = run_copy / "metrics.jsonl"
  intact = metrics.read_text()
  metrics.write_text(intact + '{"step": 21, "split": "tr')  # killed mid-line
  train_and_evaluate(tiny_config(num_train_steps=30, eval_every_steps=20), str(run_copy))
  text = metrics.read_text()
  assert text.startswith(intact)  # the torn fragment is gone, nothing else
  rows = [json.loads(line) for line in text.splitlines()]
  assert [(r["step"], r["split"]) for r in rows[-2:]] == [(30, "train"), (30, "eval")]


def test_a_finished_run_with_damaged_results_is_re_evaluated(run_copy):
  results = read(run_copy / "results.json")
  (run_copy / "results.json").write_text(json.dumps(results)[:30])
  kept = {k: v for k, v in snapshot(run_copy).items() if k != "results.json"}
  run = train(run_copy, *STEPS)
  assert run.returncode == 0, run.stderr[-2000:]
  assert "the run had finished at step 20" in run.stdout
  repaired = read(run_copy / "results.json")
  assert repaired["re_evaluated"] is True
  assert {k: repaired[k] for k in ("accuracy", "loss", "step", "num_params")} == {
      k: results[k] for k in ("accuracy", "loss", "step", "num_params")
  }
  assert {k: v for k, v in snapshot(run_copy).items() if k != "results.json"} == kept


def test_a_sweep_re_evaluates_a_run_with_damaged_results_and_reads_torn_curves(finished, tmp_path):
  config = tmp_path / "swept.py"
  config.write_text(
      f"import importlib.util\n"
      f"spec = importlib.util.spec_from_file_location('tiny', {str(TINY)!r})\n"
      f"tiny = importlib.util.module_from_spec(spec)\n"
      f"spec.loader.exec_module(tiny)\n"
      f"get_config = tiny.get_config\n\n"
      f"def get_sweep(h):\n  return h.sweep('seed', [0])\n"
  )
  root = tmp_path / "sweep"
  run = pathlib.Path(shutil.copytree(finished, root / "seed=0"))
  (run / "results.json").write_text((run / "results.json").read_text()[:25])
  with open(run / "metrics.jsonl", "a") as f:
    f.write('{"step": 30, "split": "eval", "accur')
  sweep = cli(
      "cnn_jax.sweep",
      f"--config={config}",
      f"--workdir_root={root}",
      "--override=num_train_steps=20",
      "--override=eval_every_steps=20",
      "--curves=eval.accuracy",
      "--last=train.accuracy,eval.loss",  # a column each
  )
  assert sweep.returncode == 0, sweep.stderr[-3000:]
  (row,) = csv.DictReader(open(root / "sweep.csv"))
  assert row["status"] == "ok" and row["step"] == "20"
  assert float(row["accuracy"]) == read(run / "results.json")["accuracy"]
  last = curves.read_curve(str(run), "train.accuracy")[1][-1]
  assert float(row["last train.accuracy"]) == pytest.approx(last, abs=1e-4)
  loss = curves.read_curve(str(run), "eval.loss")[1][-1]
  assert float(row["last eval.loss"]) == pytest.approx(loss, abs=1e-4)
  assert sweep.stderr.count("skipped 1 unreadable line(s)") == 1
  assert (root / "curves_eval_accuracy.png").exists()


def test_readers_skip_torn_lines_and_appends_start_a_fresh_line(tmp_path):
  path = str(tmp_path / "log.jsonl")
  records.append_line(path, {"step": 1})
  with open(path, "a") as f:
    f.write('{"step": 2, "va')
  assert records.read_lines(path) == [{"step": 1}]
  records.append_line(path, {"step": 3})
  assert pathlib.Path(path).read_text() == '{"step": 1}\n{"step": 3}\n'
  with pytest.raises(records.DamagedRecord, match="log.jsonl is damaged"):
    records.read_json(path)


# ---------------------------------------------------------------------------
# Resuming with another config.


def test_the_field_lists_cover_every_config_field_once():
  fields = set(base_config().keys())
  assert set(run_record.RESUMABLE) | set(run_record.IDENTITY) == fields
  assert not set(run_record.RESUMABLE) & set(run_record.IDENTITY)
  assert run_record.is_resumable("num_train_steps")
  assert not run_record.is_resumable("optimizer.learning_rate")
  assert not run_record.is_resumable("a_field_some_config_adds")


def test_a_resume_that_changes_the_batch_size_is_refused_and_changes_nothing(run_copy):
  # Stopped at step 20 of 40 (the fixture's length), resumed with half the batch.
  before = snapshot(run_copy)
  run = train(run_copy, "--config.num_train_steps=40", "--config.batch_size=16")
  assert_one_line_error(
      run,
      f"error: config.batch_size is 16 here but 32 in the run in "
      f"{run_copy} (its config.json); use its value, or a new --workdir",
  )
  assert snapshot(run_copy) == before
  # Several fields, nested ones too: each named with both values, in one line.
  run = train(
      run_copy,
      "--config.num_train_steps=40",
      "--config.seed=3",
      "--config.optimizer.momentum=0.5",
      "--config.augment=",
  )
  assert_one_line_error(
      run,
      "config.augment is '' here but 'translate(pixels=1)', "
      "config.optimizer.momentum is 0.5 here but 0.9, config.seed is 3 "
      "here but 0 in the run",
  )
  assert snapshot(run_copy) == before
  # A config.json cut short cannot vouch for the run: refused too, not overwritten.
  (run_copy / "config.json").write_text('{"augment": "tr')
  before = snapshot(run_copy)
  assert_one_line_error(
      train(run_copy, "--config.num_train_steps=40"), f"{run_copy}/config.json is damaged (15 bytes"
  )
  assert snapshot(run_copy) == before


def test_a_resume_with_more_steps_is_accepted_and_the_record_keeps_its_history(run_copy):
  config_before = (run_copy / "config.json").read_bytes()
  started = read(run_copy / "environment.json")
  run = train(
      run_copy,
      "--config.num_train_steps=30",
      "--config.eval_every_steps=20",
      "--config.log_every_steps=5",
  )
  assert run.returncode == 0, run.stderr[-2000:]
  assert (run_copy / "config.json").read_bytes() == config_before  # the config it started with
  environment = read(run_copy / "environment.json")
  (resume,) = environment.pop("resumes")
  assert environment == started  # how the run started is kept
  assert resume["step"] == 20 and resume["pid"] != started["pid"]
  assert resume["changed"] == {
      "num_train_steps": {"from": 20, "to": 30},
      "log_every_steps": {"from": 10, "to": 5},
  }
  assert "--config.num_train_steps=30" in resume["command"]
  assert read(run_copy / "results.json")["step"] == 30

  # The next resume compares with the settings in force: 30 steps, logs every 5.
  config = tiny_config(num_train_steps=35, eval_every_steps=20, log_every_steps=5)
  assert train_and_evaluate(config, str(run_copy))["step"] == 35
  resumes = read(run_copy / "environment.json")["resumes"]
  assert [(r["step"], r["changed"]) for r in resumes[1:]] == [
      (30, {"num_train_steps": {"from": 30, "to": 35}})
  ]


def test_a_finished_run_re_evaluated_with_another_config_writes_nothing(run_copy):
  # Nothing is trained or written, so the run's record stays true: not refused.
  before = snapshot(run_copy)
  run = train(run_copy, *STEPS, "--config.seed=5")
  assert run.returncode == 0, run.stderr[-2000:]
  assert "differs from the run's record in seed" in run.stdout
  assert snapshot(run_copy) == before
  # Its results.json is damaged: re-evaluating would write them under another
  # config, so the command is refused.
  (run_copy / "results.json").write_text('{"accuracy": 0.7')
  before = snapshot(run_copy)
  assert_one_line_error(
      train(run_copy, *STEPS, "--config.seed=5"), "config.seed is 5 here but 0 in the run in"
  )
  assert snapshot(run_copy) == before


def test_the_lock_names_a_resumed_run_s_process(run_copy):
  # This process holds the workdir, as the resumed run named by the record's last entry.
  lock = workdir_lib.WorkdirLock(str(run_copy))
  try:
    environment = read(run_copy / "environment.json")
    environment["resumes"] = [{"step": 10, "host": socket.gethostname(), "pid": os.getpid()}]
    records.write_json(str(run_copy / "environment.json"), environment)
    assert_one_line_error(
        train(run_copy, *STEPS),
        f"in use by another run (pid {os.getpid()} " f"on host {socket.gethostname()})",
    )
  finally:
    lock.release()


# ---------------------------------------------------------------------------
# Impossible config values.


def test_a_negative_step_count_is_refused_on_a_finished_run(finished):
  before = snapshot(finished)
  assert_one_line_error(
      train(finished, "--config.num_train_steps=-5"),
      "config.num_train_steps=-5 must be >= 0 and finite (0: use " "config.num_epochs)",
  )
  assert snapshot(finished) == before


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("num_epochs", -1.0, "config.num_epochs=-1.0 must be >= 0"),
        ("num_epochs", math.inf, "config.num_epochs=inf must be >= 0 and finite"),
        ("eval_every_steps", -1, "config.eval_every_steps=-1 must be >= 0"),
        (
            "eval_batch_size",
            -8,
            "config.eval_batch_size=-8 must be >= 0 and finite (0: " "config.batch_size)",
        ),
        ("grain_workers", -1, "config.grain_workers=-1"),
        ("unfreeze_after_steps", -3, "config.unfreeze_after_steps=-3"),
        ("aux_loss_weight", math.nan, "config.aux_loss_weight=nan"),
        ("batch_size", 0, "config.batch_size=0 must be positive"),
        ("log_every_steps", -1, "config.log_every_steps=-1 must be positive"),
        ("std", (0.0,), "config.std=(0.0,) must be positive finite numbers"),
        ("mean", (math.nan,), "config.mean=(nan,) must be finite numbers"),
        ("mean", (0.5, 0.5), "config.mean has 2 values but config.std has 1"),
        ("label_smoothing", math.nan, "config.label_smoothing=nan must be in [0, 1)"),
    ],
)
def test_impossible_config_values_are_named(field, value, message):
  config = tiny_config(mean=(0.5,), std=(0.25,))
  config[field] = value
  with pytest.raises(ConfigError, match=re.escape(message)):
    config_lib.validate(config)


def test_unset_is_zero_and_nothing_else():
  config = tiny_config(num_train_steps=0, num_epochs=2.0)  # 0: the length is in epochs
  config_lib.validate(config)
  config.eval_every_steps, config.eval_every_epochs = 0, 0.0
  with pytest.raises(
      ConfigError,
      match="set config.eval_every_steps or " "config.eval_every_epochs to a positive value",
  ):
    config_lib.validate(config)


@pytest.mark.parametrize(
    "section, field, value, message",
    [
        (
            "optimizer",
            "learning_rate",
            math.nan,
            "learning_rate must be positive and finite, " "got nan",
        ),
        ("optimizer", "learning_rate", math.inf, "learning_rate must be positive and finite"),
        ("optimizer", "weight_decay", -1e-4, "weight_decay must be >= 0 and finite"),
        ("optimizer", "momentum", 1.0, "config.optimizer.momentum must be in [0, 1), got 1.0"),
        ("optimizer", "grad_clip_norm", math.nan, "grad_clip_norm must be >= 0"),
        ("schedule", "factor", -0.1, "config.schedule.factor must be >= 0"),
        ("schedule", "warmup_steps", -5, "config.schedule.warmup_steps must be >= 0"),
        ("schedule", "boundaries", (10, -1), "config.schedule.boundaries must be numbers >= 0"),
    ],
)
def test_impossible_optimizer_and_schedule_values_are_named(section, field, value, message):
  optimizer = dict(name="sgd", learning_rate=0.1, momentum=0.9)
  schedule = dict(name="step", boundaries=(10,), factor=0.1)
  (optimizer if section == "optimizer" else schedule)[field] = value
  with pytest.raises(ConfigError, match=re.escape(message)):
    optimizers.make_optimizer(optimizer, schedule, total_steps=20)


# ---------------------------------------------------------------------------
# Image folders whose splits name their classes differently.


def _image_folder(root: pathlib.Path, classes: dict[str, list[str]]) -> None:
  rng = np.random.default_rng(0)
  for split, names in classes.items():
    for name in names:
      (root / split / name).mkdir(parents=True)
      for i in range(4):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(
            root / split / name / f"{i}.png"
        )


def test_a_class_the_training_split_lacks_is_one_line(tmp_path):
  data = tmp_path / "pets"
  _image_folder(data, {"train": ["cat", "dog"], "test": ["cat", "dogs"]})
  run = train(
      tmp_path / "w",
      f"--config.dataset=folder:{data}",
      f"--config.data_dir={tmp_path}",
      "--config.batch_size=4",
  )
  assert_one_line_error(
      run,
      f"image folder '{data}/test' has classes ['dogs'] that the "
      f"training split {data}/train lacks; {data}/train has ['dog'] "
      "that it lacks; rename or move the class folders",
  )
  assert not (tmp_path / "w").exists()


def test_a_split_without_some_training_classes_is_used_whole(tmp_path, caplog):
  _image_folder(tmp_path, {"train": ["cat", "dog"], "test": ["cat"]})
  source = sources.load(f"folder:{tmp_path}", "test", image_size=8)
  assert len(source) == 4 and set(source.labels) == {0}  # "cat" keeps label 0
  assert "no class folder for ['dog']" in caplog.text


# ---------------------------------------------------------------------------
# Visualization galleries and the config.json they read.


def test_visualize_rebuilds_a_damaged_gallery_and_names_a_damaged_config(run_copy, tmp_path):
  out = tmp_path / "gallery"
  out.mkdir()
  Image.new("RGB", (4, 4)).save(out / "saliency.png")  # from an earlier, interrupted run
  (out / "index.json").write_text('[{"method": "saliency", "png": "sali')
  run = cli("cnn_jax.visualize", f"--workdir={run_copy}", "--method=filters", f"--out={out}")
  assert run.returncode == 0, run.stderr[-3000:]
  entries = read(out / "index.json")
  assert [(e["method"], e["png"]) for e in entries] == [
      ("saliency", "saliency.png"),
      ("filters", "filters_conv1_1.png"),
  ]
  assert "caption lost" in entries[0]["caption"]
  assert "saliency.png" in (out / "index.html").read_text()

  (run_copy / "config.json").write_text('{"model": "stan')
  assert_one_line_error(
      cli("cnn_jax.visualize", f"--workdir={run_copy}", "--method=filters", f"--out={out}"),
      f"{run_copy}/config.json is damaged",
  )


# ---------------------------------------------------------------------------
# Config files that fail to load, in every CLI that loads one.


BROKEN = {
    "moved_name": (
        "from launch import config_files\n",
        "ImportError: cannot import name " "'config_files' from 'launch'",
    ),
    "syntax": ("def get_config(:\n", "SyntaxError: syntax error in {file}, line 1"),
    "name": (
        "x = 1\ny = undefined_name\n",
        "NameError: name 'undefined_name' is not " "defined at line 2",
    ),
    "get_config": (
        "def get_config():\n  raise ValueError('no such recipe')\n\n"
        "def get_sweep(h):\n  return h.sweep('seed', [0])\n",
        "ValueError: no such recipe at line 2",
    ),
}


@pytest.mark.parametrize(
    "command, broken",
    [
        ("cnn_jax.main", "moved_name"),
        ("cnn_jax.main", "get_config"),
        ("cnn_jax.sweep", "moved_name"),
        ("cnn_jax.sweep", "syntax"),
        ("cnn_jax.sweep", "name"),
        ("cnn_jax.sweep", "get_config"),
    ],
)
def test_a_config_file_that_fails_to_load_is_one_line(tmp_path, command, broken):
  text, expected = BROKEN[broken]
  file = tmp_path / f"{broken}.py"
  file.write_text(text)
  where = "--workdir" if command == "cnn_jax.main" else "--workdir_root"
  run = cli(command, f"--config={file}", f"{where}={tmp_path / 'w'}")
  assert_one_line_error(
      run, f"error: cannot load the config file {file} (" f"{expected.format(file=file)}"
  )
  assert run.stderr.strip().endswith("; fix the file")
  assert not (tmp_path / "w").exists()


def test_a_bug_in_cnn_jax_while_loading_a_config_keeps_its_traceback(tmp_path):
  file = tmp_path / "config.py"
  file.write_text("def get_config():\n  return None\n")
  # on_mnist_like's own code fails (None has no fields): a bug of ours, not the file's.
  with pytest.raises(AttributeError):
    config_files.call(str(file), lambda: config_files.on_mnist_like(None))
  with pytest.raises(
      config_files.ConfigFileError,
      match=r"\(get_config\(\) is called with " r"the argument '3'\); add or drop",
  ):
    config_files.get_config(str(file), "3")


# ---------------------------------------------------------------------------
# Other records: cached normalization statistics, sweep tables.


def test_damaged_normalization_statistics_are_computed_again(tmp_path):
  _image_folder(tmp_path / "data", {"train": ["a", "b"]})
  config = base_config()
  config.dataset, config.data_dir, config.image_size = (
      f"folder:{tmp_path / 'data'}",
      str(tmp_path),
      8,
  )
  stats = config_lib.input_mean_std(config)
  (cache,) = (tmp_path / "cnn_jax_stats").iterdir()
  cache.write_text('{"mean": [0.4')
  assert config_lib.input_mean_std(config) == stats
  assert read(cache)["mean"] == stats[0]


def test_an_experiment_s_damaged_results_are_one_line_and_kept(tmp_path):
  # Its results.json gathers hours of runs: a damaged one is named, never overwritten.
  (tmp_path / "results.json").write_text('{"model": "efficientnet_lite0", "accu')
  run = subprocess.run(
      [
          python(),
          "experiments/transfer/imagenet_to_fashion_mnist.py",
          "--report_only",
          f"--out={tmp_path}",
      ],
      capture_output=True,
      text=True,
      timeout=300,
      cwd=ROOT,
  )
  assert_one_line_error(run, f"{tmp_path}/results.json is damaged (37 bytes")
  assert (tmp_path / "results.json").read_text() == '{"model": "efficientnet_lite0", "accu'


def test_a_sweep_table_whose_writing_stops_leaves_the_old_one_whole(tmp_path):
  run = runner.Run("seed=0", {"seed": 0}, str(tmp_path), str(tmp_path / "log"), ["python"])
  outcome = runner.Outcome(run, "ok", {"accuracy": 0.5, "loss": 1.0, "step": 1})

  def interrupted(_):  # Ctrl-C while a column's curves are read, after the header is out
    raise KeyboardInterrupt

  column = tables.Column("last train.accuracy", interrupted, 4, "")
  for name, write in [("sweep.csv", tables.write_csv), ("sweep.md", tables.write_markdown)]:
    path = tmp_path / name
    path.write_text("the last complete table\n")
    args = (
        (str(path), [outcome], [column])
        if name.endswith("csv")
        else (str(path), [outcome], "python -m cnn_jax.sweep", [column])
    )
    with pytest.raises(KeyboardInterrupt):
      write(*args)
    assert path.read_text() == "the last complete table\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(name)] == [name]
