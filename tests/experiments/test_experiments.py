"""Every experiment's documented command still runs, in smoke mode (a few steps).

The commands are read from each experiment's config docstring, so the
documentation cannot drift from the code; the full runs are not in CI.
"""

import csv
import json
import pathlib
import re
import shlex
import subprocess
import time

import pytest

from cnn_jax import models
from cnn_jax.sweep import config_files, hyper

from helpers import ROOT, python

EXPERIMENTS = ROOT / "experiments"
SWEPT = sorted(p.parent.name for p in EXPERIMENTS.glob("*/config.py"))


def documented_commands(path: pathlib.Path) -> list[str]:
  """The `python ...` commands of a file's docstring, continuation lines joined."""
  text = re.sub(r"\\\n\s*", " ", path.read_text().split('"""')[1])
  return [line.strip() for line in text.splitlines() if line.strip().startswith("python ")]


def workdir_root(command: str, tmp_path: pathlib.Path) -> pathlib.Path:
  """Where a sweep command's runs go in the test: tmp_path/<its root's last folder>."""
  root = re.search(r"--workdir_root=(\S+)", command).group(1)
  return tmp_path / pathlib.Path(root).name


def _run(command: str, tmp_path: pathlib.Path, extra=()) -> subprocess.CompletedProcess:
  # The experiment's own folders move under tmp_path; nothing committed is written.
  args = [a for a in shlex.split(command) if not a.startswith(("--out=", "--results_dir="))]
  args = [
      f"--workdir_root={workdir_root(command, tmp_path)}" if a.startswith("--workdir_root=") else a
      for a in args
  ]
  result = subprocess.run(
      [python(), *args[1:], *extra],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
  return result


def swept_settings(command: str) -> set[tuple]:
  """The settings (overrides other than the seed) of a sweep command's config."""
  path, _, arg = re.search(r"--config=(\S+)", command).group(1).partition(":")
  module = config_files.load_module(str(ROOT / path))
  runs = module.get_sweep(hyper, arg) if arg else module.get_sweep(hyper)
  return {tuple(sorted((k, repr(v)) for k, v in run.items() if k != "seed")) for run in runs}


def dataset_of(command: str) -> str:
  """The dataset of a sweep command's config."""
  path, _, arg = re.search(r"--config=(\S+)", command).group(1).partition(":")
  return config_files.load_config(path, arg).dataset


def test_every_swept_experiment_is_found():
  assert {
      "fc_vs_conv",
      "parameter_sharing",
      "activations",
      "downsampling",
      "regularization",
      "preprocessing",
      "depth",
      "lecture_backward",
      "lecun1998",
      "segmentation",
      "detection",
  } <= set(SWEPT)


MNIST_LIKE = ("mnist", "fashion_mnist")
SCENES = ("mnist_scenes", "fashion_mnist_scenes")  # built from MNIST's digits: slices too


def sweep_commands(name: str, mnist_like: bool) -> list[str]:
  """An experiment's documented sweep commands on MNIST-like data, or on the others."""
  commands = documented_commands(EXPERIMENTS / name / "config.py")
  return [
      c for c in commands if "-m launch.sweep" in c and (dataset_of(c) in MNIST_LIKE) == mnist_like
  ]


def run_smoke(name: str, tmp_path: pathlib.Path, mnist_like: bool) -> None:
  """Runs an experiment's sweeps of one kind in smoke mode, then, if they were all
  its sweeps, its other documented scripts on their results.

  tests/experiments/test_experiments_mnist.py runs the MNIST-like half, so that the two
  pytest workers (one test file each) share the smoke runs.
  """
  commands = documented_commands(EXPERIMENTS / name / "config.py")
  sweeps = sweep_commands(name, mnist_like)
  assert sweeps, commands
  for sweep in sweeps:  # one per group of rows or per dataset
    # MNIST runs would load 70,000 images per smoke run; slices show as well
    # that the command works (and halve this test's time). The networks on
    # scenes take a few scenes per step: at the tests' LLVM level 0 their
    # 3 steps of 32 scenes took longer than compiling them.
    slices = (
        ["--override=train_split=train[:2048]", "--override=eval_split=test[:512]"]
        if mnist_like
        else [
            "--override=train_split=train[:64]",
            "--override=eval_split=test[:16]",
            "--override=batch_size=4",
            "--override=eval_batch_size=16",
        ]
        if dataset_of(sweep) in SCENES
        else []
    )
    _run(sweep, tmp_path, ["--smoke", *slices])
    folder = workdir_root(sweep, tmp_path)
    rows = list(csv.DictReader(open(folder / "sweep.csv")))
    # Smoke mode: one seed of the first two settings.
    assert len(rows) == min(2, len(swept_settings(sweep))), rows
    assert len({r["seed"] for r in rows}) == 1, rows
    assert all(r["status"] == "ok" and int(r["step"]) == 3 for r in rows), rows
    for flag in re.findall(r"--curves=(\S+)", sweep):
      name_png = "curves_" + "_".join(n.replace(".", "_") for n in flag.split(",")) + ".png"
      assert (folder / name_png).stat().st_size > 5_000, name_png
  if sweep_commands(name, not mnist_like):
    return
  # The sweeps' documented folders, as the test moved them.
  moved = {
      re.search(r"--workdir_root=(\S+)", sweep).group(1): str(workdir_root(sweep, tmp_path))
      for sweep in sweeps
  }
  for command in commands:  # the experiment's other scripts, on the smoke runs
    if "-m launch.sweep" not in command:
      extra = {
          "compare.py": ["--seeds=0"],
          "table.py": [f"--sweeps={tmp_path}", f"--table={tmp_path / 'table.md'}"],
          "errors.py": [f"--table={tmp_path / 'errors.md'}"],
      }
      for documented, root in moved.items():
        command = command.replace(f"={documented}/", f"={root}/")
      _run(command, tmp_path, next((v for k, v in extra.items() if k in command), []))


def on_scenes(name: str) -> bool:
  """Whether an experiment's sweeps other than MNIST-like ones are all on digit scenes."""
  sweeps = sweep_commands(name, mnist_like=False)
  return bool(sweeps) and all(dataset_of(c) in SCENES for c in sweeps)


@pytest.mark.parametrize(
    "name", [n for n in SWEPT if sweep_commands(n, mnist_like=False) and not on_scenes(n)]
)
def test_experiment_commands_run_in_smoke_mode(name, tmp_path):
  run_smoke(name, tmp_path, mnist_like=False)


def test_every_sweep_command_is_smoke_tested():
  for name in SWEPT:
    documented = [
        c for c in documented_commands(EXPERIMENTS / name / "config.py") if "-m launch.sweep" in c
    ]
    assert sorted(sweep_commands(name, False) + sweep_commands(name, True)) == sorted(
        documented
    ), name


def test_counts_scripts_print_the_lectures_numbers(tmp_path):
  fc = _run("python experiments/fc_vs_conv/counts.py", tmp_path).stdout
  assert "3,073 parameters" in fc and "120,001 parameters" in fc and "30,720,256" in fc
  sharing = _run("python experiments/parameter_sharing/counts.py", tmp_path).stdout
  assert "105,705,600" in sharing and "34,944" in sharing and "55x55x96 = 290,400" in sharing


def test_zoo_table_lists_counts_and_speed(tmp_path):
  command = documented_commands(EXPERIMENTS / "model_zoo" / "zoo_table.py")[0]
  start = time.monotonic()
  _run(command, tmp_path, ["--models=lenet5_modern,resnet1202", "--steps=1", f"--out={tmp_path}"])
  seconds = time.monotonic() - start
  rows = list(csv.DictReader(open(tmp_path / "zoo.csv")))
  assert [r["model"] for r in rows] == ["lenet5_modern", "resnet1202"]
  assert int(rows[0]["params"]) == 61_706 and int(rows[0]["batch"]) == 32
  # The untimed and the timed step of batch 32 ran within the command's time
  # (a rate off by a unit, e.g. steps/s or ms for s, would not fit in it).
  images_per_s = float(rows[0]["images_per_s"])
  assert 2 * 32 / images_per_s < seconds, (images_per_s, seconds)
  assert f"| 32 | {images_per_s:,.1f} |" in (tmp_path / "zoo.md").read_text()
  assert rows[1]["images_per_s"] == ""  # not timed
  assert (tmp_path / "zoo.png").exists()
  assert set(models.names()) >= {r["model"] for r in rows}


def test_index_and_readme_link_every_experiment():
  index = (EXPERIMENTS / "README.md").read_text()
  readme = (ROOT / "README.md").read_text()
  for folder in sorted(p.parent.name for p in EXPERIMENTS.glob("*/README.md")):
    assert f"({folder}/README.md)" in index, folder
    assert f"(experiments/{folder}/README.md)" in readme, folder


def test_transfer_experiment_runs_in_smoke_mode(tmp_path):
  command = documented_commands(EXPERIMENTS / "transfer" / "few_shot_digits.py")[0]
  output = _run(
      command,
      tmp_path,
      [
          "--seeds=1",
          "--steps=3",
          "--pretrain_steps=3",
          "--methods=scratch,head only",
          f"--out={tmp_path}",
      ],
  ).stdout
  assert "seed 0 scratch:" in output and "seed 0 head only:" in output
  results = json.loads((tmp_path / "results.json").read_text())
  assert set(results["accuracy"]) == {"scratch", "head only"}
  assert (tmp_path / "results.png").exists()


def test_transfer_from_mnist_runs_in_smoke_mode(tmp_path):
  command = documented_commands(EXPERIMENTS / "transfer" / "few_shot_digits.py")[1]
  assert "--source=mnist" in command
  output = _run(
      command,
      tmp_path,
      [
          "--seeds=1",
          "--steps=3",
          "--pretrain_steps=3",
          "--source_images=200",
          "--methods=convs frozen",
          f"--out={tmp_path}",
      ],
  ).stdout
  assert "pretrained on mnist" in output and "seed 0 convs frozen:" in output
  assert json.loads((tmp_path / "results.json").read_text())["source"] == "mnist"


def test_visualization_sanity_checks_run_in_smoke_mode(tmp_path):
  train, check = documented_commands(EXPERIMENTS / "visualization" / "sanity_checks.py")
  workdir = tmp_path / "run"
  _run(
      train.replace("/tmp/cnn_jax_default", str(workdir)),
      tmp_path,
      ["--config.num_train_steps=3", "--config.schedule.name=constant"],
  )
  output = _run(
      check.replace("/tmp/cnn_jax_default", str(workdir)), tmp_path, ["--images=2", "--seed=1"]
  ).stdout
  assert "| vanilla gradient |" in output and "| occluder |" in output
