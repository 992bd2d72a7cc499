"""A run's record never lies: resumes that would redefine a run are refused, the
ones that may change it are recorded, impossible configs are refused, and
damaged records (cut by a kill) are repaired or reported, never crashed on."""

import csv
import json
import pathlib
import shutil

import pytest

from cnn_jax import records
from cnn_jax.sweep import curves
from cnn_jax.train import train_and_evaluate

from test_reliability import cli, snapshot
from test_train import TINY, tiny_config

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
      k: results[k] for k in ("accuracy", "loss", "step", "num_params")}
  assert {k: v for k, v in snapshot(run_copy).items() if k != "results.json"} == kept


def test_a_sweep_re_evaluates_a_run_with_damaged_results_and_reads_torn_curves(finished,
                                                                               tmp_path):
  config = tmp_path / "swept.py"
  config.write_text(f"import importlib.util\n"
                    f"spec = importlib.util.spec_from_file_location('tiny', {str(TINY)!r})\n"
                    f"tiny = importlib.util.module_from_spec(spec)\n"
                    f"spec.loader.exec_module(tiny)\n"
                    f"get_config = tiny.get_config\n\n"
                    f"def get_sweep(h):\n  return h.sweep('seed', [0])\n")
  root = tmp_path / "sweep"
  run = pathlib.Path(shutil.copytree(finished, root / "seed=0"))
  (run / "results.json").write_text((run / "results.json").read_text()[:25])
  with open(run / "metrics.jsonl", "a") as f:
    f.write('{"step": 30, "split": "eval", "accur')
  sweep = cli("cnn_jax.sweep", f"--config={config}", f"--workdir_root={root}",
              "--override=num_train_steps=20", "--override=eval_every_steps=20",
              "--curves=eval.accuracy", "--last=train.accuracy")
  assert sweep.returncode == 0, sweep.stderr[-3000:]
  (row,) = csv.DictReader(open(root / "sweep.csv"))
  assert row["status"] == "ok" and row["step"] == "20"
  assert float(row["accuracy"]) == read(run / "results.json")["accuracy"]
  last = curves.read_curve(str(run), "train.accuracy")[1][-1]
  assert float(row["last train.accuracy"]) == pytest.approx(last, abs=1e-4)
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
