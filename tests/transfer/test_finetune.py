"""Fine-tuning: loading pretrained weights, freezing, learning-rate multipliers,
two-phase recipes, frozen batch norm."""

import importlib.util
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torchvision

from cnn_jax import models
from cnn_jax.train import train_and_evaluate
from cnn_jax.saved_runs import read_state
from cnn_jax.errors import WeightMismatchError
from cnn_jax.transfer import finetune, from_torchvision, pretrained
from cnn_jax.transfer.torchvision_weights import installed_weights

from helpers import TINY


def tiny_config(**overrides):
  spec = importlib.util.spec_from_file_location("tiny_config", TINY)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.update_from_flattened_dict(overrides)
  return config


def state_at(workdir, step):
  return read_state(str(pathlib.Path(workdir) / "checkpoints" / str(step) / "state"))


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("pretrained")
  train_and_evaluate(tiny_config(num_train_steps=20, eval_every_steps=20), str(workdir))
  return workdir, state_at(workdir, 20)


def assert_equal_trees(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_head_only_fine_tuning_keeps_the_body_and_its_statistics(pretrained_run, tmp_path):
  source, before = pretrained_run
  config = tiny_config(
      init_from=str(source),
      freeze="all_but_head",
      num_train_steps=10,
      eval_every_steps=10,
      checkpoint_every_steps=0,
  )
  config.optimizer.weight_decay = 1e-2  # frozen parameters must not decay either
  train_and_evaluate(config, str(tmp_path))
  after = state_at(tmp_path, 10)
  for layer in before["params"]:
    if layer == "output":  # the head: re-initialized, then trained
      assert not np.allclose(after["params"][layer]["kernel"], before["params"][layer]["kernel"])
    else:
      assert_equal_trees(after["params"][layer], before["params"][layer])
  # Frozen batch norms used and kept their running statistics.
  assert_equal_trees(after["batch_stats"], before["batch_stats"])


def test_two_phases_head_then_everything_at_a_lower_rate(pretrained_run, tmp_path):
  source, before = pretrained_run
  config = tiny_config(
      init_from=str(source),
      freeze="all_but_head",
      unfreeze_after_steps=5,
      lr_mults=(("^(?!output/)", 0.1),),
      num_train_steps=10,
      eval_every_steps=10,
      checkpoint_every_steps=5,
      keep_checkpoints=2,
  )
  train_and_evaluate(config, str(tmp_path))
  phase_one, phase_two = state_at(tmp_path, 5), state_at(tmp_path, 10)
  assert_equal_trees(phase_one["params"]["conv1_1"], before["params"]["conv1_1"])
  assert_equal_trees(phase_one["batch_stats"], before["batch_stats"])
  assert not np.allclose(
      phase_two["params"]["conv1_1"]["kernel"], before["params"]["conv1_1"]["kernel"]
  )
  assert not np.allclose(
      phase_two["batch_stats"]["conv1_1_bn"]["mean"], before["batch_stats"]["conv1_1_bn"]["mean"]
  )


def test_weights_that_do_not_fit_are_listed_not_loaded(pretrained_run, tmp_path):
  source, _ = pretrained_run
  config = tiny_config(init_from=str(source), num_train_steps=2)
  config.model_kwargs.widths = (8, 12)
  with pytest.raises(
      pretrained.WeightMismatchError,
      match=r"shape mismatch: .*params:conv2_1/kernel model \(3, 3, 8, 12\) vs "
      r"weights \(3, 3, 8, 16\)",
  ):
    train_and_evaluate(config, str(tmp_path / "a"))
  with pytest.raises(pretrained.WeightMismatchError, match="'.*nothing' does not exist"):
    train_and_evaluate(tiny_config(init_from=str(tmp_path / "nothing")), str(tmp_path / "b"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(pretrained.WeightMismatchError, match="neither a .pth file"):
    train_and_evaluate(tiny_config(init_from=str(tmp_path / "empty")), str(tmp_path / "c"))


def test_torchvision_file_initializes_everything_but_a_new_head(tmp_path):
  path = tmp_path / "resnet18.pth"
  reference = torchvision.models.resnet18()
  torch.save(reference.state_dict(), path)
  model = models.create("resnet18", num_classes=5)
  fresh = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
  fresh = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), fresh)
  merged = pretrained.merge(
      fresh, pretrained.load(str(path), "resnet18"), models.head_pattern("resnet18")
  )
  converted = from_torchvision("resnet18", reference.state_dict())
  assert_equal_trees(merged["params"]["layer4_1"], converted["params"]["layer4_1"])
  assert_equal_trees(merged["batch_stats"], converted["batch_stats"])
  assert merged["params"]["fc"]["kernel"].shape == (512, 5)
  assert not merged["params"]["fc"]["kernel"].any()  # the fresh head, untouched


def test_imagenet_file_initializes_an_fcns_backbone_and_not_its_new_layers(tmp_path):
  path = tmp_path / "resnet18.pth"
  reference = torchvision.models.resnet18()
  torch.save(reference.state_dict(), path)
  model = models.create("fcn8s_resnet18", num_classes=11)
  fresh = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
  fresh = jax.tree.map(lambda s: np.full(s.shape, 7, s.dtype), fresh)
  merged = pretrained.merge(
      fresh, pretrained.load(str(path), "fcn8s_resnet18"), models.head_pattern("fcn8s_resnet18")
  )
  converted = from_torchvision("resnet18", reference.state_dict())
  assert_equal_trees(merged["params"]["backbone"], converted["params"])
  assert_equal_trees(merged["batch_stats"]["backbone"], converted["batch_stats"])
  for layer in ("score_8", "up_16to8", "up_8to1"):  # the FCN's own layers stay fresh
    assert all(np.all(leaf == 7) for leaf in jax.tree.leaves(merged["params"][layer]))


def test_imagenet_file_initializes_a_centernets_backbone_and_leaves_neck_and_heads_new(tmp_path):
  path = tmp_path / "resnet18.pth"
  reference = torchvision.models.resnet18()
  torch.save(reference.state_dict(), path)
  model = models.create("centernet_resnet18", num_classes=10)
  fresh = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
  fresh = jax.tree.map(lambda s: np.full(s.shape, 7, s.dtype), fresh)
  weights = pretrained.load(str(path), "centernet_resnet18")
  # The default: every layer the backbone's weights lack (the neck too, whose
  # shape does not follow the classes), not only the class heatmap.
  skip = pretrained.skip_pattern("", "centernet_resnet18", weights)
  merged = pretrained.merge(fresh, weights, skip)
  converted = from_torchvision("resnet18", reference.state_dict())
  assert_equal_trees(merged["params"]["backbone"], converted["params"])
  new = [layer for layer in merged["params"] if layer != "backbone"]
  assert {"lateral_32", "neck", "heatmap", "size_hidden"} <= set(new)
  for layer in new:
    assert all(np.all(leaf == 7) for leaf in jax.tree.leaves(merged["params"][layer])), layer
  # A whole model's weights keep only its head fresh.
  whole = pretrained.load(str(path), "resnet18")
  assert pretrained.skip_pattern("", "resnet18", whole) == models.head_pattern("resnet18")


def test_imagenet_names_the_installed_weights_of_the_model_or_its_backbone():
  fcn = pretrained.load("imagenet", "fcn8s_efficientnet_lite0")
  lite0 = pretrained.load(installed_weights("efficientnet_lite0"), "efficientnet_lite0")
  assert_equal_trees(fcn["params"]["backbone"], lite0["params"])
  # torchvision's ResNets ship in no package here: the file's path is the way.
  with pytest.raises(WeightMismatchError, match="no installable ImageNet weights for 'resnet18'"):
    pretrained.load("imagenet", "fcn8s_resnet18")


def test_frozen_parameters_get_no_update_and_multipliers_scale_the_rest():
  params = {
      "body": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)},
      "output": {"kernel": jnp.ones((2, 2))},
  }
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
  frozen = {"body": {"kernel": True, "bias": True}, "output": {"kernel": False}}
  mults = finetune.lr_multipliers(params, [("^output/", 0.5)])
  tx = finetune.fine_tuning_optimizer(optax.adamw(0.1, weight_decay=0.1), frozen, mults)
  updates, _ = tx.update(grads, tx.init(params), params)
  assert not np.any(updates["body"]["kernel"]) and not np.any(updates["body"]["bias"])
  plain, _ = optax.adamw(0.1, weight_decay=0.1).update(grads, optax.adamw(0.1).init(params), params)
  np.testing.assert_allclose(updates["output"]["kernel"], 0.5 * plain["output"]["kernel"])

  gated = finetune.fine_tuning_optimizer(
      optax.sgd(0.1, momentum=0.9), frozen, mults, unfreeze_step=2
  )
  state = gated.init(params)
  for step in range(3):
    updates, state = gated.update(grads, state, params)
    moved = bool(np.any(updates["body"]["kernel"]))
    assert moved == (step >= 2), step
  # Momentum saw no gradient while frozen: the first free update is plain SGD's.
  np.testing.assert_allclose(updates["body"]["kernel"], -0.1 * 0.5)

  # Adam's state stands still while frozen, so its first free step is a first
  # step (bias correction intact), not one several times too large.
  adam = finetune.fine_tuning_optimizer(optax.adam(0.1), frozen, mults, unfreeze_step=50)
  state = adam.init(params)
  for _ in range(51):
    updates, state = adam.update(grads, state, params)
  first, _ = optax.adam(0.1).update(grads, optax.adam(0.1).init(params), params)
  np.testing.assert_allclose(updates["body"]["kernel"], first["body"]["kernel"], rtol=1e-6)
  with pytest.raises(ValueError, match="freezes every parameter and nothing unfreezes"):
    finetune.fine_tuning_optimizer(optax.sgd(0.1), jax.tree.map(lambda _: True, frozen), mults)


def test_freeze_presets_follow_the_forward_order():
  model = models.create("lenet5_modern")
  x = jnp.zeros((1, 32, 32, 1))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  head = models.head_pattern("lenet5_modern")
  frozen = finetune.frozen_mask(model, variables, x, "up_to:C3", head)
  assert {k for k, v in frozen.items() if all(jax.tree.leaves(v))} == {"C1", "C3"}
  head_only = finetune.frozen_mask(model, variables, x, "all_but_head", head)
  assert {k for k, v in head_only.items() if not any(jax.tree.leaves(v))} == {"output"}
  with pytest.raises(ValueError, match="no top-level layer 'C4'; layers in forward order: C1"):
    finetune.frozen_mask(model, variables, x, "up_to:C4", head)
  with pytest.raises(ValueError, match="matches no parameter"):
    finetune.frozen_mask(model, variables, x, "^conv", head)


def test_frozen_batch_norm_normalizes_with_running_statistics():
  model = models.create("resnet20", width=4)
  x = jax.random.normal(jax.random.key(1), (8, 8, 8, 3)) * 3 + 1
  variables = model.init(jax.random.key(0), x)
  # Statistics and affine parameters far from 0 and 1, so that a wrong
  # epsilon, scale or bias would show.
  keys = iter(jax.random.split(jax.random.key(2), 1000))
  variables = {
      "params": jax.tree_util.tree_map_with_path(
          lambda path, p: jax.random.uniform(next(keys), p.shape, minval=0.5, maxval=1.5)
          if path[-1].key in ("scale", "bias")
          else p,
          variables["params"],
      ),
      "batch_stats": jax.tree_util.tree_map_with_path(
          lambda path, s: jax.random.uniform(next(keys), s.shape, minval=0.01, maxval=2.0)
          if path[-1].key == "var"
          else jax.random.normal(next(keys), s.shape),
          variables["batch_stats"],
      ),
  }
  every_bn = {
      "/".join(k.key for k in path[:-1])
      for path, _ in jax.tree_util.tree_flatten_with_path(variables["batch_stats"])[0]
  }
  assert "layer1_0/bn1" in every_bn
  eval_logits = model.apply(variables, x, train=False)
  with nn.intercept_methods(finetune.running_statistics_for(every_bn)):
    frozen_logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(frozen_logits, eval_logits, rtol=1e-5, atol=1e-6)
  assert_equal_trees(updates["batch_stats"], variables["batch_stats"])
  train_logits, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
  assert not np.allclose(train_logits, eval_logits)
