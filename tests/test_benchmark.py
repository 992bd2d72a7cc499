"""The training-step benchmark: its numbers are consistent, its errors one line."""

import subprocess

import numpy as np
import pytest

from cnn_jax import models, summary
from cnn_jax.train import throughput
from helpers import python


class _Clock:
  """A perf_counter that advances by given seconds per reading."""

  def __init__(self, *advances):
    self.now, self.advances = 100.0, list(advances)

  def perf_counter(self):
    self.now += self.advances.pop(0)
    return self.now


def test_train_step_benchmark_turns_its_timings_into_the_reported_numbers(monkeypatch):
  # The real steps run; the clock reports compilation as 3 s and the 2 timed
  # steps as 0.5 s, so every derived number is known exactly.
  clock = _Clock(0.0, 3.0, 10.0, 0.5)
  monkeypatch.setattr(throughput, "time", clock)
  result = throughput.train_step_benchmark(
      "lenet5_modern",
      batch_size=8,
      image_size=32,
      dtype="float32",
      num_steps=2,
      warmup_steps=1,
      peak_tflops=1e-3,
  )
  assert not clock.advances  # compile start and end, timed steps' start and end
  # lenet5_modern's multiply-accumulates per 32x32 image (the model zoo table's).
  macs = summary.summarize(models.create("lenet5_modern"), (32, 32, 1)).total_macs
  assert macs == 416_520
  flops = 6 * macs * 8
  assert result["model_tflops_per_step"] == pytest.approx(flops / 1e12, rel=1e-3)
  assert result["compile_seconds"] == 3.0
  assert result["ms_per_step"] == 250.0
  assert result["images_per_s"] == 32.0  # 8 images in 0.25 s
  assert result["mfu"] == pytest.approx(flops / 0.25 / 1e9, rel=1e-3)
  assert result["devices"].startswith("1 x ")


def test_benchmark_cli_errors_are_one_line():
  run = subprocess.run(
      [python(), "-m", "cnn_jax.benchmark", "--model=resnet9"],
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert run.returncode != 0
  assert run.stderr.strip().splitlines() == [run.stderr.strip()]  # one line
  assert run.stderr.startswith("error: unknown model 'resnet9'; did you mean 'resnet")
  assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    "name, kind",
    [
        ("lenet5", "classification"),
        ("unet_small", "segmentation"),
        ("centernet_resnet18", "detection"),
    ],
)
def test_the_benchmark_batch_carries_the_targets_of_the_models_task(name, kind):
  spec = models.spec(name)
  task, targets = throughput.synthetic_targets(spec, 4, 64, np.random.default_rng(0))
  assert spec.family.task == kind and tuple(targets) == task.targets
  assert all(len(value) == 4 for value in targets.values())
  if kind == "segmentation":
    assert (
        targets["segmentation_mask"].shape == (4, 64, 64) and task.num_classes == spec.num_classes
    )
  if kind == "detection":
    boxes, valid = targets["boxes"], targets["box_valid"]
    assert valid.sum(axis=1).tolist() == [1] * 4
    assert np.all(boxes[:, 0, 2:] >= boxes[:, 0, :2]) and not boxes[:, 1:].any()
