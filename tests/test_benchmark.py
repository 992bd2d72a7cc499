"""The training-step benchmark: its numbers are consistent, its errors one line."""

import subprocess
import sys

import pytest

from cnn_jax import models, summary
from cnn_jax.train.throughput import train_step_benchmark


def test_train_step_benchmark_reports_consistent_numbers():
  result = train_step_benchmark(
      "lenet5_modern",
      batch_size=8,
      image_size=32,
      dtype="float32",
      num_steps=2,
      warmup_steps=1,
      peak_tflops=1.0,
  )
  macs = summary.summarize(models.create("lenet5_modern"), (32, 32, 1)).total_macs
  assert result["model_tflops_per_step"] == pytest.approx(6 * macs * 8 / 1e12, rel=1e-3)
  seconds = result["ms_per_step"] / 1000
  assert result["images_per_s"] == pytest.approx(8 / seconds, rel=1e-2)
  assert result["mfu"] == pytest.approx(6 * macs * 8 / seconds / 1e12, rel=2e-2)
  assert result["compile_seconds"] > 0 and result["devices"].startswith("1 x ")


def test_benchmark_cli_errors_are_one_line():
  run = subprocess.run(
      [sys.executable, "-m", "cnn_jax.benchmark", "--model=resnet9"],
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert run.returncode != 0
  assert run.stderr.strip().splitlines() == [run.stderr.strip()]  # one line
  assert run.stderr.startswith("error: unknown model 'resnet9'; did you mean 'resnet")
  assert "Traceback" not in run.stderr
