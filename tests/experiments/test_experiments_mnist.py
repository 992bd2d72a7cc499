"""The experiments' documented sweeps on MNIST and Fashion-MNIST, in smoke mode.

The other half of tests/experiments/test_experiments.py's smoke test, in its own file so
that the two pytest workers (one file each) share the smoke runs.
"""

import json

import pytest

import test_experiments as experiments


@pytest.mark.parametrize(
    "name", [n for n in experiments.SWEPT if experiments.sweep_commands(n, mnist_like=True)]
)
def test_mnist_sweep_commands_run_in_smoke_mode(name, tmp_path):
  experiments.run_smoke(name, tmp_path, mnist_like=True)


def test_per_pattern_sdlm_runs_in_smoke_mode(tmp_path):
  script = experiments.EXPERIMENTS / "lecun1998" / "first_passes.py"
  (command,) = experiments.documented_commands(script)
  output = experiments._run(
      command,
      tmp_path,
      [
          f"--out={tmp_path}",
          "--etas=5e-4,1e-5",
          "--seeds=2",
          "--patterns=300",
          "--test_images=200",
          "--hessian_samples=20",
      ],
  ).stdout
  assert "| 5e-4 |" in output and "(the paper's)" in output
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
