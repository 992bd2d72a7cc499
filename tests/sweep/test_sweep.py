"""Sweeps (cnn_jax/sweep, run by python -m launch.sweep) and the launch scripts."""

import csv
import json
import os
import subprocess

import numpy as np
import pytest

from cnn_jax.models import names
from cnn_jax.sweep import config_files, curves, hyper, runner, tables
from cnn_jax.sweep.hyper import SweepError

from helpers import ROOT, python, sweep_config

LR = "optimizer.learning_rate"


def test_product_varies_the_last_axis_fastest():
  runs = hyper.product(
      [hyper.sweep(LR, [0.1, 0.01]), hyper.sweep("seed", [0, 1, 2]), hyper.fixed("num_epochs", 3)]
  )
  assert len(runs) == 6
  assert runs[:4] == [
      {LR: 0.1, "seed": 0, "num_epochs": 3},
      {LR: 0.1, "seed": 1, "num_epochs": 3},
      {LR: 0.1, "seed": 2, "num_epochs": 3},
      {LR: 0.01, "seed": 0, "num_epochs": 3},
  ]


def test_zip_pairs_values_and_refuses_unequal_axes():
  runs = hyper.zip(
      [hyper.sweep("model", ["resnet20", "resnet56"]), hyper.sweep("batch_size", [128, 64])]
  )
  assert runs == [{"model": "resnet20", "batch_size": 128}, {"model": "resnet56", "batch_size": 64}]
  with pytest.raises(SweepError, match="equal length"):
    hyper.zip([hyper.sweep("seed", [0, 1]), hyper.sweep(LR, [0.1])])
  with pytest.raises(SweepError, match="two axes set 'seed'"):
    hyper.product([hyper.sweep("seed", [0]), hyper.fixed("seed", 1)])
  with pytest.raises(SweepError, match="non-empty list"):
    hyper.sweep("seed", [])


def test_run_names_use_short_keys_unless_they_clash():
  assert runner.run_names([{LR: 0.001, "seed": 1}, {LR: 3e-05, "seed": 0}]) == [
      "learning_rate=0.001,seed=1",
      "learning_rate=3e-05,seed=0",
  ]
  clash = runner.run_names([{"optimizer.name": "sgd", "schedule.name": "cosine"}])
  assert clash == ["optimizer.name=sgd,schedule.name=cosine"]
  assert runner.run_names([{"augment": "flip()|crop(size=32, padding=4)"}]) == [
      "augment=flip_crop_size=32,_padding=4_"
  ]


def test_load_sweep_checks_keys_against_the_config(tmp_path):
  good = sweep_config(
      tmp_path,
      "def get_sweep(h):\n"
      "  return h.product(["
      "h.sweep('optimizer.learning_rate', [0.1, 0.05]),"
      " h.sweep('seed', [0, 1])])",
  )
  spec, runs = runner.load_sweep(good)
  assert spec == good and len(runs) == 4
  typo = sweep_config(
      tmp_path, "def get_sweep(h):\n" "  return h.sweep('optimizer.learning_rat', [0.1])"
  )
  with pytest.raises(SweepError, match="no field 'learning_rat'.*'optimizer.learning_rate'"):
    runner.load_sweep(typo)
  with pytest.raises(SweepError, match="defines no get_sweep"):
    runner.load_sweep(sweep_config(tmp_path, ""))
  with pytest.raises(SweepError, match="same run twice"):
    runner.load_sweep(
        sweep_config(tmp_path, "def get_sweep(h):\n" "  return h.sweep('seed', [1, 1])")
    )
  with pytest.raises(config_files.ConfigFileError, match="missing.py .no such file"):
    runner.load_sweep(str(tmp_path / "missing.py"))


def test_config_argument_reaches_get_sweep(tmp_path):
  path = sweep_config(
      tmp_path, "def get_sweep(h, arg):\n" "  return h.sweep('seed', range(int(arg)))"
  )
  _, runs = runner.load_sweep(path + ":3")
  assert runs == [{"seed": 0}, {"seed": 1}, {"seed": 2}]


def test_default_config_defines_the_learning_rate_sweep():
  _, runs = runner.load_sweep(str(ROOT / "configs" / "default.py"))
  assert len(runs) == 6
  commands = runner.make_runs("configs/default.py", runs, "/tmp/root")
  assert commands[0].command[2:] == [
      "cnn_jax.main",
      "--config=configs/default.py",
      "--workdir=/tmp/root/learning_rate=0.001,seed=0",
      "--config.optimizer.learning_rate=0.001",
      "--config.seed=0",
  ]


def _outcome(lr, seed, accuracy, loss, status="ok"):
  run = runner.Run(f"lr={lr},seed={seed}", {LR: lr, "seed": seed}, "/w", "/w/log", ["python"])
  results = {"accuracy": accuracy, "loss": loss, "step": 10, "wall_seconds": 3.0}
  return runner.Outcome(
      run,
      status,
      results if status == "ok" else {"error": "exit status 1"},
      "" if status == "ok" else "Traceback\nValueError: boom",
  )


def test_tables_average_over_seeds(tmp_path):
  outcomes = [
      _outcome(0.1, 0, 0.90, 0.5),
      _outcome(0.1, 1, 0.94, 0.3),
      _outcome(0.01, 0, 0.80, 0.9),
      _outcome(0.01, 1, 0.0, 0.0, status="failed"),
  ]
  tables.write_markdown(tmp_path / "sweep.md", outcomes, "python -m launch.sweep ...")
  text = (tmp_path / "sweep.md").read_text()
  spread = np.std([0.90, 0.94], ddof=1)
  assert f"| 0.1 | 2 | 0.9200 ± {spread:.4f} |" in text
  assert "| 0.01 | 1 | 0.8000 ± 0.0000 |" in text  # the failed seed is left out
  assert "## lr=0.01,seed=1: failed" in text and "ValueError: boom" in text
  tables.write_csv(tmp_path / "sweep.csv", outcomes)
  rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
  assert [r["status"] for r in rows] == ["ok", "ok", "ok", "failed"]
  assert rows[3]["error"] == "exit status 1 / ValueError: boom"
  assert rows[1][LR] == "0.1" and float(rows[1]["accuracy"]) == 0.94
  assert tables.plot(tmp_path / "sweep.png", outcomes)
  assert (tmp_path / "sweep.png").stat().st_size > 10_000


def test_tables_of_runs_without_an_accuracy_leave_its_cells_empty(tmp_path):
  # A detection run's results: COCO's metrics and a loss, no accuracy.
  outcomes = [_outcome(lr, seed, 0.0, 0.5 + seed) for lr in (0.1, 0.01) for seed in (0, 1)]
  for outcome in outcomes:
    del outcome.results["accuracy"]
    outcome.results["AP"] = 0.25
  tables.write_markdown(
      tmp_path / "sweep.md", outcomes, "python -m launch.sweep ...", baselines=[(LR, "0.01")]
  )
  text = (tmp_path / "sweep.md").read_text()
  spread = np.std([0.5, 1.5], ddof=1)
  assert f"| 0.1 | 2 |  | 1.0000 ± {spread:.4f} |" in text
  assert "| 0.1 | n/a (a run has no value) |" in text
  tables.write_csv(tmp_path / "sweep.csv", outcomes)
  assert {r["accuracy"] for r in csv.DictReader(open(tmp_path / "sweep.csv"))} == {""}
  assert not tables.plot(tmp_path / "sweep.png", outcomes)


def test_differences_from_a_baseline_have_their_standard_errors(tmp_path):
  accuracies = {
      (0.1, "a"): [0.90, 0.94],
      (0.01, "a"): [0.80, 0.86, 0.83],
      (0.1, "b"): [0.70, 0.72],
  }  # no 0.01 run for "b": no row
  outcomes = []
  for (lr, data), values in accuracies.items():
    for seed, accuracy in enumerate(values):
      outcome = _outcome(lr, seed, accuracy, 0.1)
      outcome.run.overrides = {LR: lr, "data": data, "seed": seed}
      outcomes.append(outcome)
  lines = tables.difference_lines(outcomes, LR, "0.01")
  # 0.92 - 0.83 = 9 points; SE = sqrt(s_a^2 / 2 + s_b^2 / 3) in points.
  error = 100 * np.sqrt(np.var([0.90, 0.94], ddof=1) / 2 + np.var([0.80, 0.86, 0.83], ddof=1) / 3)
  assert lines[2] == f"| data | {LR} | accuracy |"
  assert lines[4:] == [f"| a | 0.1 | +9.00 ± {error:.2f} |"]
  runs = [o.run.overrides for o in outcomes]
  assert tables.parse_baseline(f"{LR}=0.01", runs) == (LR, "0.01")
  for spec, message in [
      ("seed=0", "write KEY=VALUE with a swept key"),
      (f"{LR}=0.5", f"{LR} takes the values 0.01, 0.1"),
      ("lr", "write KEY=VALUE"),
  ]:
    with pytest.raises(SweepError, match=message):
      tables.parse_baseline(spec, runs)
  tables.write_markdown(
      tmp_path / "sweep.md", outcomes, "python -m launch.sweep ...", baselines=[(LR, "0.01")]
  )
  assert f"Differences from {LR}=0.01" in (tmp_path / "sweep.md").read_text()


def _run_sweep_cli(config, root, *extra):
  return subprocess.run(
      [
          python(),
          "-m",
          "launch.sweep",
          f"--config={config}",
          f"--workdir_root={root}",
          "--override=num_train_steps=6",
          "--override=eval_every_steps=6",
          "--override=log_every_steps=3",
          "--override=checkpoint_every_steps=3",
          *extra,
      ],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=400,
  )


def test_sweep_runs_records_failures_and_skips_finished_runs(tmp_path):
  # A negative learning rate fails in the trainer's config check: the sweep
  # must record it and go on.
  config = sweep_config(
      tmp_path, "def get_sweep(h):\n" "  return h.sweep('optimizer.learning_rate', [0.1, -1.0])"
  )
  root = tmp_path / "sweep"
  dry = _run_sweep_cli(config, root, "--dry_run")
  assert dry.returncode == 0 and not root.exists()
  assert "--config.optimizer.learning_rate=-1" in dry.stdout

  first = _run_sweep_cli(config, root, "--parallel=2")
  assert first.returncode == 1, first.stderr[-2000:]
  assert "1 of 2 runs failed: learning_rate=-1" in first.stderr
  rows = list(csv.DictReader(open(root / "sweep.csv")))
  assert [(r["run"], r["status"]) for r in rows] == [
      ("learning_rate=0.1", "ok"),
      ("learning_rate=-1", "failed"),
  ]
  assert "learning_rate must be positive" in rows[1]["error"]
  assert "learning_rate must be positive" in (root / "sweep.md").read_text()
  results = json.loads((root / "learning_rate=0.1" / "results.json").read_text())
  assert float(rows[0]["accuracy"]) == results["accuracy"] and int(rows[0]["step"]) == 6

  # Again: the finished run is not run again, the failed one is retried.
  second = _run_sweep_cli(config, root)
  rows = list(csv.DictReader(open(root / "sweep.csv")))
  assert [r["status"] for r in rows] == ["ok (earlier)", "failed"]
  assert second.returncode == 1

  # A run that stopped after its last checkpoint resumes from it.
  os.remove(root / "learning_rate=0.1" / "results.json")
  _run_sweep_cli(config, root)
  log = (root / "logs" / "learning_rate=0.1.txt").read_text()
  assert "the run had finished at step 6" in log


def _launch_local(tmp_path, processes, *args):
  env = dict(os.environ, LOG_DIR=str(tmp_path / "logs"), GRACE_SECONDS="20")
  return subprocess.run(
      ["bash", str(ROOT / "launch" / "local_multiprocess.sh"), str(processes), "--", *args],
      cwd=ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=400,
  )


def test_two_local_processes_train_the_default_config_and_agree(tmp_path):
  run = _launch_local(
      tmp_path,
      2,
      "--config=configs/default.py",
      f"--workdir={tmp_path / 'w'}",
      "--config.num_train_steps=6",
      "--config.eval_every_steps=6",
      "--config.schedule.warmup_epochs=0",
  )
  assert run.returncode == 0, run.stderr[-3000:]
  finals = []
  for i in range(2):
    log = (tmp_path / "logs" / f"process_{i}.txt").read_text()
    finals.append(next(line for line in log.splitlines() if "finished at step 6" in line))
  assert finals[0].startswith("process 0 of 2") and finals[1].startswith("process 1 of 2")
  assert finals[0].split(":", 1)[1] == finals[1].split(":", 1)[1]  # same loss and accuracy
  results = json.loads((tmp_path / "w" / "results.json").read_text())
  assert f"eval loss {results['loss']:.6f}" in finals[1]
  # Only process 0 reports progress and writes the results.
  assert "eval at step" not in (tmp_path / "logs" / "process_1.txt").read_text()


def test_local_launch_stops_and_fails_when_a_process_fails(tmp_path):
  run = _launch_local(
      tmp_path,
      2,
      "--config=configs/default.py",
      f"--workdir={tmp_path / 'w'}",
      "--config.model=lenet6",
  )
  assert run.returncode == 1
  assert "exited with status 1" in run.stderr
  # Each process checks the config before the processes wait for each other,
  # and is given time to say so before it is stopped (it was killed with an
  # empty log before): every log holds its own error, and process 0's is shown.
  for i in range(2):
    log = (tmp_path / "logs" / f"process_{i}.txt").read_text()
    assert log.strip().splitlines()[-1] == (
        "error: unknown model 'lenet6'; did you mean "
        "'lenet5'? known models: " + ", ".join(names())
    ), log
  assert "error: unknown model 'lenet6'" in run.stdout


# ---------------------------------------------------------------------------
# Learning curves and the columns computed from them.


def _metrics_workdir(path, records):
  path.mkdir(parents=True)
  (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
  return str(path)


def _eval(step, accuracy):
  return {"step": step, "split": "eval", "accuracy": accuracy, "loss": 1 - accuracy}


def test_curves_read_average_and_find_the_first_step_to_a_target(tmp_path):
  # A resumed run logs step 20 twice; the later record counts.
  one = _metrics_workdir(
      tmp_path / "one",
      [
          _eval(10, 0.5),
          {"step": 10, "split": "train", "loss": 2.0},
          _eval(20, 0.7),
          _eval(20, 0.8),
          _eval(30, 0.96),
          _eval(40, 0.97),
      ],
  )
  two = _metrics_workdir(tmp_path / "two", [_eval(10, 0.6), _eval(20, 0.9), _eval(40, 0.99)])
  steps, values = curves.read_curve(one, "eval.accuracy")
  assert steps.tolist() == [10, 20, 30, 40] and values.tolist() == [0.5, 0.8, 0.96, 0.97]
  assert curves.read_curve(one, "train.loss")[1].tolist() == [2.0]
  assert curves.read_curve(one, "train.grad_norm")[0].size == 0
  assert curves.steps_to_reach(steps, values, ">=", 0.95) == 30
  assert curves.steps_to_reach(steps, values, "<=", 0.5) == 10
  assert np.isnan(curves.steps_to_reach(steps, values, ">=", 0.99))
  common, mean, std = curves.mean_curve([curves.read_curve(w, "eval.accuracy") for w in (one, two)])
  assert common.tolist() == [10, 20, 40]  # the steps both runs logged
  np.testing.assert_allclose(mean, [0.55, 0.85, 0.98])
  np.testing.assert_allclose(std, np.std([[0.5, 0.8, 0.97], [0.6, 0.9, 0.99]], axis=0, ddof=1))
  assert curves.parse_target("train.loss <= 0.1") == ("train.loss", "<=", 0.1)
  with pytest.raises(curves.SweepError, match="write e.g. eval.accuracy>=0.95"):
    curves.parse_target("accuracy>0.9")
  with pytest.raises(curves.SweepError, match="SPLIT train or eval"):
    curves.parse_curve("test.accuracy")
  path = tmp_path / "curves.png"
  curves.plot_curves(str(path), [("", "a", [one, two])], ["eval.accuracy", "eval.loss"])
  assert path.stat().st_size > 10_000


def test_curve_panels_keep_groups_that_share_a_label(tmp_path):
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  workdirs = [
      _metrics_workdir(tmp_path / str(i), [_eval(10, 0.1 * i), _eval(20, 0.1 * i + 0.05)])
      for i in range(4)
  ]
  outcomes = []
  for i, (shortcut, depth) in enumerate([("none", 8), ("none", 20), ("A", 8), ("A", 20)]):
    outcome = _outcome(0.1, 0, 0.9, 0.1)
    outcome.run.overrides = {"shortcut": shortcut, "depth": depth, "seed": 0}
    outcome.run.workdir = workdirs[i]
    outcomes.append(outcome)
  drawn = []
  original = plt.Figure.savefig
  try:
    plt.Figure.savefig = lambda figure, *a, **k: drawn.append(
        [[(line.get_label(), line.get_ydata()[0]) for line in ax.get_lines()] for ax in figure.axes]
    )
    tables.plot_sweep_curves(str(tmp_path / "c.png"), outcomes, ["eval.accuracy"], "shortcut")
  finally:
    plt.Figure.savefig = original
  # Two panels, each with both depths: "depth=8" in one panel is not lost to the other.
  assert [[label for label, _ in panel] for panel in drawn[0]] == [["depth=8", "depth=20"]] * 2
  assert [[y for _, y in panel] for panel in drawn[0]] == [[0.0, 0.1], [0.2, pytest.approx(0.3)]]


def test_tables_tabulate_steps_to_a_target_and_last_values(tmp_path):
  outcomes = []
  for seed, accuracies in enumerate([(0.5, 0.96), (0.7, 0.97), (0.6, 0.8)]):
    outcome = _outcome(0.1, seed, accuracies[-1], 0.1)
    outcome.run.workdir = _metrics_workdir(
        tmp_path / f"seed{seed}", [_eval(10, accuracies[0]), _eval(20, accuracies[1])]
    )
    outcomes.append(outcome)
  columns = [tables.reach_column("eval.accuracy>=0.95"), tables.last_column("eval.loss")]
  tables.write_markdown(tmp_path / "sweep.md", outcomes, "python -m launch.sweep ...", columns)
  text = (tmp_path / "sweep.md").read_text()
  losses = [1 - 0.96, 1 - 0.97, 1 - 0.8]
  # Two of three seeds reach 95% at step 20; the mean loss is over all three.
  assert (
      f"| 20 ± 0 (1 of 3 never) | {np.mean(losses):.4f} ± " f"{np.std(losses, ddof=1):.4f} |"
  ) in text
  assert "| 20 | 0.0400 | ok |" in text and "| never | 0.2000 | ok |" in text
  tables.write_csv(tmp_path / "sweep.csv", outcomes, columns)
  rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
  assert [r["steps to eval.accuracy>=0.95"] for r in rows] == ["20", "20", "never"]
  outcomes[0].run.workdir = str(tmp_path / "gone")  # a run that logged nothing
  assert tables.reach_column("eval.accuracy>=0.95").value(outcomes[0]) is None
  tables.write_csv(tmp_path / "sweep.csv", outcomes, columns)
  assert next(csv.DictReader(open(tmp_path / "sweep.csv")))["last eval.loss"] == "no curve"
  assert runner.smoke_runs(
      [{LR: 1, "seed": 0}, {LR: 1, "seed": 1}, {LR: 2, "seed": 0}, {LR: 3, "seed": 0}]
  ) == [{LR: 1, "seed": 0}, {LR: 2, "seed": 0}]


def test_sweep_cli_names_bad_curve_flags_in_one_line(tmp_path):
  config = str(ROOT / "configs" / "default.py")
  for flag, message in [
      ("--reach=accuracy>0.9", "write e.g. eval.accuracy>=0.95"),
      ("--curves=test.loss", "SPLIT train or eval"),
      (
          "--panels=model",
          "--panels='model' is not a swept key; the sweep's " "keys: optimizer.learning_rate, seed",
      ),
  ]:
    result = subprocess.run(
        [
            python(),
            "-m",
            "launch.sweep",
            f"--config={config}",
            f"--workdir_root={tmp_path}",
            "--dry_run",
            flag,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        result.returncode == 1
        and result.stderr.strip().splitlines()[-1].startswith("error: ")
        and message in result.stderr
    ), (flag, result.stderr)
