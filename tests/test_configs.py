"""Every config in configs/ loads, passes the checks, names a real model and runs
its schedule; its docstring says how to run it and what to expect."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import pytest

from cnn_jax import models
from cnn_jax.train import config as config_lib
from cnn_jax.train.optimizers import make_optimizer

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
VARIANTS = [
    ("default.py", None),
    ("mnist_lenet5.py", None),
    *[("cifar10_resnet.py", str(d)) for d in (20, 32, 44, 56, 110)],
    ("cifar10_allcnn.py", None),
    ("imagenet_alexnet.py", None),
    ("imagenet_vgg.py", "vgg_d"),
    ("imagenet_vgg.py", "vgg_a"),
    ("imagenet_googlenet.py", None),
    ("imagenet_resnet50.py", None),
    ("finetune_folder.py", None),
    ("finetune_folder.py", "vgg_d"),
]


def load(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_every_config_file_is_covered():
  assert {name for name, _ in VARIANTS} == {p.name for p in CONFIGS.glob("*.py")}


@pytest.mark.parametrize("name, arg", VARIANTS)
def test_config_is_valid_and_documented(name, arg):
  module = load(CONFIGS / name)
  config = module.get_config(arg) if arg else module.get_config()
  config_lib.validate(config)
  assert config.model in models.names()
  doc = module.__doc__
  command = f"python -m cnn_jax.main --config=configs/{name}"
  assert command in doc, f"{name}: the docstring must hold the command that runs it"
  assert "Hardware" in doc and ("Expected" in doc or "not yet measured" in doc)
  # The schedule works with this config's fields, in steps or epochs.
  total, _ = config_lib.run_length(config, steps_per_epoch=100)
  _, schedule = make_optimizer(config.optimizer, config.schedule, total, 100)
  assert float(schedule(0)) >= 0 and float(schedule(total - 1)) >= 0
  # The model builds at its input size (shapes only).
  spec = models.spec(config.model)
  model = models.create(config.model, **config.model_kwargs.to_dict())
  x = jnp.zeros((1, config.image_size, config.image_size, spec.channels))
  jax.eval_shape(lambda: model.init(jax.random.key(0), x))


def test_resnet_recipes_follow_the_paper():
  module = load(CONFIGS / "cifar10_resnet.py")
  config = module.get_config("56")
  total, _ = config_lib.run_length(config, steps_per_epoch=390)
  _, schedule = make_optimizer(config.optimizer, config.schedule, total, 390)
  assert total == 64_000 and config.batch_size == 128
  assert [float(schedule(s)) for s in (0, 31_999, 32_000, 48_000)] == pytest.approx(
      [0.1, 0.1, 0.01, 0.001]
  )
  warm = module.get_config("110")
  _, schedule = make_optimizer(warm.optimizer, warm.schedule, 64_000, 390)
  assert [float(schedule(s)) for s in (0, 400, 32_000)] == pytest.approx([0.01, 0.1, 0.01])
  with pytest.raises(ValueError, match="use one of"):
    module.get_config("18")


def test_resnet50_learning_rate_scales_with_batch():
  config = load(CONFIGS / "imagenet_resnet50.py").get_config()
  assert config.optimizer.learning_rate == pytest.approx(0.1 * config.batch_size / 256)
  assert config.optimizer.nesterov and config.dtype == "bfloat16"
