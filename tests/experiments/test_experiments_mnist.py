"""The experiments' documented sweeps on MNIST and Fashion-MNIST, in smoke mode.

The other half of tests/experiments/test_experiments.py's smoke test, in its own file so
that the two pytest workers (one file each) share the smoke runs.
"""

import json
import re
import shlex
import subprocess

import numpy as np
import pytest

import test_experiments as experiments


@pytest.mark.parametrize(
    "name", [n for n in experiments.SWEPT if experiments.sweep_commands(n, mnist_like=True)]
)
def test_mnist_sweep_commands_run_in_smoke_mode(name, tmp_path):
  experiments.run_smoke(name, tmp_path, mnist_like=True)


PER_PATTERN_SCRIPT = experiments.EXPERIMENTS / "lecun1998" / "paper_recipe.py"
SMALL = ["--patterns=320", "--test_images=200", "--hessian_samples=20"]  # 320: whole batches of 16


def test_per_pattern_sdlm_runs_in_smoke_mode(tmp_path):
  command = experiments.documented_commands(PER_PATTERN_SCRIPT)[0]
  # gemm: the curvature estimate compiles in a fraction of the default's time.
  extra = [f"--out={tmp_path}", "--etas=5e-4,1e-5", "--seeds=2", "--conv_impl=gemm", *SMALL]
  output = experiments._run(command, tmp_path, extra).stdout
  assert "| 5e-4 |" in output and "(the first)" in output
  results = json.loads((tmp_path / "results.json").read_text())
  assert list(results) == ["5e-4", "1e-5"] and all(len(runs) == 2 for runs in results.values())
  assert (tmp_path / "loss.png").stat().st_size > 5_000
  # What the full runs show (experiments/lecun1998/README.md): the paper's
  # initialization leaves F6's outputs near 0 (rms 0.0004-0.0006, seeds 0-2);
  # 10 updates at the paper's eta saturate them towards the scaled tanh's
  # 1.7159 (rms 1.45-1.67), at eta 1e-5 they stay small (0.0004-0.0006).
  for paper, small in zip(results["5e-4"], results["1e-5"]):
    assert paper["rms_at_init"]["F6_act"] < 0.01
    assert paper["rms_after_first_updates"]["F6_act"] > 1.0
    assert small["rms_after_first_updates"]["F6_act"] < 0.1


def test_per_pattern_sdlm_with_the_papers_schedule_runs_in_smoke_mode(tmp_path):
  command = experiments.documented_commands(PER_PATTERN_SCRIPT)[1]
  assert "--schedule=paper" in command
  # Flags given again: the last value counts.
  extra = [f"--out={tmp_path}", "--seeds=1", "--passes=2", *SMALL]
  output = experiments._run(command, tmp_path, extra).stdout
  assert "2 pass(es) over 320 MNIST patterns, 1 per update" in output
  (run,) = json.loads((tmp_path / "results.json").read_text())["1e-5"]
  first_pass, second_pass = run["loss_per_chunk"]  # one chunk per pass
  # At 1e-5 the MAP loss falls from its 74 at init (full run: 29 to 30 over
  # the first 2,000 patterns, seeds 0-2); the second pass sees lower losses.
  assert second_pass < first_pass < 74, run["loss_per_chunk"]


def _batch16_command(folder: str) -> str:
  (command,) = [
      c
      for c in experiments.documented_commands(PER_PATTERN_SCRIPT)
      if f"/paper_recipe_batch16/{folder} " in c
  ]
  return command


def test_papers_recipe_rows_run_in_smoke_mode(tmp_path):
  lenet5, probed, distortions = map(_batch16_command, ("lenet5", "lenet5_probes", "distortions"))
  # The distortion row's command is the probed LeNet-5 row's with --distort,
  # and that one the exact LeNet-5 row's with probes.
  lenet5_args, probed_args, distortion_args = (
      {a for a in shlex.split(c) if not a.startswith("--out=")}
      for c in (lenet5, probed, distortions)
  )
  assert distortion_args - probed_args == {"--distort"} and probed_args <= distortion_args
  assert probed_args - lenet5_args == {"--hessian_probes=4"} and lenet5_args <= probed_args
  documented = re.search(r"--etas=(\S+)", distortions).group(1)
  assert sum(int(part.split("x")[1]) for part in documented.split("+")) == 20
  extra = [f"--out={tmp_path}", "--etas=1e-5x1+2e-5x1", "--passes=2", "--seeds=1", *SMALL]
  output = experiments._run(distortions, tmp_path, extra).stdout
  assert "lenet5, sdlm, loss rbf_map, input lecun1998, distorted, 2 pass(es)" in output
  assert "before each pass (4 Rademacher probes each)" in output
  (run,) = json.loads((tmp_path / "results.json").read_text())["1e-5x1+2e-5x1"]
  assert run["pass_etas"] == [1e-5, 2e-5] and run["parameters"] == 60_000


@pytest.mark.parametrize("step", ["ablation_updates", "ablation_input", "ablation_loss"])
def test_papers_recipe_ablation_runs_in_smoke_mode(step, tmp_path):
  (command,) = [c for c in experiments.documented_commands(PER_PATTERN_SCRIPT) if f"/{step} " in c]
  extra = [f"--out={tmp_path}", "--etas=3e-4", "--passes=1", "--seeds=1", *SMALL]
  output = experiments._run(command, tmp_path, extra).stdout
  described = {
      "ablation_updates": "lenet5, adam, loss cross_entropy, input standardize",
      "ablation_input": "lenet5, adam, loss cross_entropy, input lecun1998",
      "ablation_loss": "lenet5, adam, loss rbf_map, input lecun1998",
  }[step]
  assert f"{described}, undistorted, 1 pass(es) over 320 MNIST patterns, 16 per update" in output
  (run,) = json.loads((tmp_path / "results.json").read_text())["3e-4"]
  # 20 updates teach Adam little (91.5% test error with the MAP loss): the
  # smoke test asks that the step runs and stays finite.
  assert run["parameters"] == 60_000 and np.isfinite(run["loss_per_chunk"]).all(), run


@pytest.mark.parametrize("model, parameters", [("lenet1", 2_578), ("lenet4", 18_098)])
def test_papers_recipe_smaller_lenets_run_in_smoke_mode(model, parameters, tmp_path):
  commands = [
      c for c in experiments.documented_commands(PER_PATTERN_SCRIPT) if f"--model={model}" in c
  ]
  # LeNet-4's row runs at 16 patterns per update and at one: one command but
  # for its folder, batch and step sizes.
  varying = ("--out=", "--batch=", "--etas=")
  same = [{a for a in shlex.split(c) if not a.startswith(varying)} for c in commands]
  assert commands and all(args == same[0] for args in same), commands
  command = commands[0]
  # One pass at the row's own first eta (16 times the per-pattern one at 16
  # per update).
  etas = re.search(r"--etas=([^x\s]+)x", command).group(1) + "x1"
  extra = [f"--out={tmp_path}", f"--etas={etas}", "--passes=1", "--seeds=1", *SMALL]
  output = experiments._run(command, tmp_path, extra).stdout
  assert f"{model}, sdlm, loss cross_entropy, input lecun1998, undistorted" in output
  (run,) = json.loads((tmp_path / "results.json").read_text())[etas]
  assert run["parameters"] == parameters and run["test_error"] < 90, run["test_error"]


def test_papers_recipe_rejects_a_bad_schedule_in_one_line(tmp_path):
  command = [experiments.python(), str(PER_PATTERN_SCRIPT), f"--out={tmp_path / 'out'}"]
  result = subprocess.run([*command, "--etas=1e-5x"], capture_output=True, text=True, timeout=120)
  message = "--etas entry '1e-5x' is neither a number nor a schedule like 1e-5x2+2e-5x18"
  assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
  assert not (tmp_path / "out").exists()
