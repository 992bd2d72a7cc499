"""The measured XLA:CPU setting per model family, applied only where the user did not choose."""

import os
import subprocess

import pytest

from cnn_jax import cpu_flags
from helpers import python

FLAG = cpu_flags.YNN_FUSION_FLAG


def test_families_of_the_zoo():
  assert cpu_flags.family("resnet20") == cpu_flags.family("resnet50") == "resnet"
  assert cpu_flags.family("lenet5") == cpu_flags.family("lenet5_modern") == "lenet"
  assert cpu_flags.family("efficientnet_lite0") == "efficientnet"
  assert cpu_flags.family("vgg16") == "vgg"
  # Each family's record holds the setting measured for it (None: not measured).
  from cnn_jax import models

  assert {f.name: f.xla_cpu_ynn_fusion for f in models.families()} == {
      "lenet": "",
      "standard": "-individual_convolution",
      "resnet": "-individual_convolution",
      "allcnn": "-individual_convolution",
      "efficientnet": "-individual_convolution",
      "alexnet": None,
      "vgg": None,
      "googlenet": None,
      "fcn": "-individual_convolution",
      "unet": "",
      "centernet": None,
  }


@pytest.fixture
def fresh_cpu_process(monkeypatch):
  """As if JAX had not started yet, on a machine whose backend is the CPU."""
  monkeypatch.setattr(cpu_flags, "_backends_started", lambda: False)
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.delenv("CNN_JAX_CPU_FLAGS", raising=False)
  monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")


def test_applies_the_family_setting_once_and_says_so(fresh_cpu_process, capsys):
  line = cpu_flags.apply("resnet20")
  assert os.environ["XLA_FLAGS"] == (
      f"--xla_backend_optimization_level=0 {FLAG}=-individual_convolution"
  )
  assert line in capsys.readouterr().err and "resnet" in line
  assert cpu_flags.apply("resnet20") is None  # now named in XLA_FLAGS: not added twice


@pytest.mark.parametrize(
    "setup", ["user_flag", "turned_off", "accelerator", "started", "unmeasured"]
)
def test_never_overrides_a_choice_nor_applies_off_the_cpu(fresh_cpu_process, monkeypatch, setup):
  model = "resnet20"
  if setup == "user_flag":
    monkeypatch.setenv("XLA_FLAGS", f"{FLAG}=")
  elif setup == "turned_off":
    monkeypatch.setenv("CNN_JAX_CPU_FLAGS", "0")
  elif setup == "accelerator":
    monkeypatch.setenv("JAX_PLATFORMS", "cuda,cpu")
  elif setup == "started":
    monkeypatch.setattr(cpu_flags, "_backends_started", lambda: True)
  else:
    model = "vgg16"
  before = os.environ["XLA_FLAGS"]
  assert cpu_flags.apply(model) is None
  assert os.environ["XLA_FLAGS"] == before


def test_a_fresh_process_runs_with_the_setting():
  # XLA reads XLA_FLAGS once, when the backend starts: apply() must come first,
  # and then the setting is in force (an unknown flag value would abort here).
  code = (
      "from cnn_jax import cpu_flags; cpu_flags.apply('lenet5'); import jax, os; "
      "print(jax.jit(lambda x: x + 1)(1)); print(os.environ['XLA_FLAGS'])"
  )
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "CNN_JAX_CPU_FLAGS")}
  run = subprocess.run(
      [python(), "-c", code],
      env={**env, "JAX_PLATFORMS": "cpu"},
      capture_output=True,
      text=True,
      timeout=120,
      check=True,
  )
  assert run.stdout.splitlines() == ["2", f"{FLAG}="]
  assert run.stderr.count("XLA:CPU:") == 1


def test_the_training_cli_applies_it(tmp_path):
  # conftest turns the setting off for the other tests; here it is on, as for a user.
  env = {k: v for k, v in os.environ.items() if k != "CNN_JAX_CPU_FLAGS"}
  tiny = os.path.join(os.path.dirname(__file__), "configs", "tiny.py")
  run = subprocess.run(
      [
          python(),
          "-m",
          "cnn_jax.main",
          f"--config={tiny}",
          f"--workdir={tmp_path}",
          "--config.num_train_steps=2",
          "--config.eval_every_steps=2",
      ],
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert run.returncode == 0, run.stderr[-2000:]
  expected = f"XLA:CPU: {FLAG}=-individual_convolution for standard models"
  assert run.stderr.count(expected) == 1, run.stderr[-2000:]
