"""Looking into a model: its layers' output shapes and calls, its variables by path."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax import introspection, models

from conftest import abstract_variables


def test_layer_shapes_of_lenet5_are_the_paper_s_maps_in_call_order():
  model = models.create("lenet5")
  x = jnp.zeros((2, 32, 32, 1))
  shapes = introspection.layer_shapes(model, abstract_variables("lenet5"), x)
  # LeCun et al. 1998, Section II.B: C1 6@28x28, S2 6@14x14, C3 16@10x10,
  # S4 16@5x5, C5 120, F6 84, 10 outputs.
  assert list(shapes.items()) == [
      ("C1", (2, 28, 28, 6)),
      ("C1_act", (2, 28, 28, 6)),
      ("S2", (2, 14, 14, 6)),
      ("S2_act", (2, 14, 14, 6)),
      ("C3", (2, 10, 10, 16)),
      ("C3_act", (2, 10, 10, 16)),
      ("S4", (2, 5, 5, 16)),
      ("S4_act", (2, 5, 5, 16)),
      ("C5", (2, 1, 1, 120)),
      ("C5_act", (2, 1, 1, 120)),
      ("flatten", (2, 120)),
      ("F6", (2, 84)),
      ("F6_act", (2, 84)),
      ("output", (2, 10)),
  ]


def test_layer_shapes_follow_the_input_size_and_not_the_values():
  model = models.create("lenet5_modern")
  variables = abstract_variables("lenet5_modern", image_size=36)  # shapes, no values
  shapes = introspection.layer_shapes(model, variables, jnp.zeros((3, 36, 36, 1)))
  assert shapes["C1"] == (3, 32, 32, 6) and shapes["C5"] == (3, 2, 2, 120)
  assert shapes["flatten"] == (3, 480) and shapes["output"] == (3, 10)
  # Concrete arrays and a float64 input give the same shapes.
  concrete = jax.tree.map(lambda s: np.ones(s.shape, s.dtype), variables)
  assert introspection.layer_shapes(model, concrete, np.zeros((3, 36, 36, 1))) == shapes


class _Block(nn.Module):

  @nn.compact
  def __call__(self, x):
    return nn.relu(nn.Dense(3, name="inner")(x))


class _Net(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = _Block(name="first")(x)
    return nn.Dense(2, name="last")(x)


def test_recording_calls_lists_every_submodule_call_as_it_returns():
  model = _Net()
  x = jnp.zeros((1, 4))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  with introspection.recording_calls() as calls:
    jax.eval_shape(model.apply, variables, x)
  # A block returns after the layers it calls; the top-level model is left out.
  assert [call.path for call in calls] == [("first", "inner"), ("first",), ("last",)]
  assert [call.output.shape for call in calls] == [(1, 3), (1, 3), (1, 2)]
  assert isinstance(calls[0].module, nn.Dense) and isinstance(calls[1].module, _Block)
  with introspection.recording_calls() as outside:
    pass
  jax.eval_shape(model.apply, variables, x)
  assert outside == []  # nothing is recorded after the block


def test_by_path_and_from_paths_are_inverses():
  tree = {"conv1": {"kernel": np.ones((3, 3, 1, 8)), "bias": np.zeros(8)}, "head": {"b": {"c": 1}}}
  flat = introspection.by_path(tree)
  assert sorted(flat) == ["conv1/bias", "conv1/kernel", "head/b/c"]
  assert flat["conv1/kernel"] is tree["conv1"]["kernel"]
  assert introspection.from_paths(flat) == tree
  assert introspection.by_path(introspection.from_paths({"a/b": 1, "a/c": 2})) == {
      "a/b": 1,
      "a/c": 2,
  }


def test_map_with_paths_gives_each_leaf_its_path():
  tree = {"conv1": {"kernel": 1, "bias": 2}, "fc": {"kernel": 3}}
  mapped = introspection.map_with_paths(lambda path, leaf: f"{path}={leaf}", tree)
  assert mapped == {
      "conv1": {"kernel": "conv1/kernel=1", "bias": "conv1/bias=2"},
      "fc": {"kernel": "fc/kernel=3"},
  }


def test_variables_by_path_keys_each_leaf_by_collection_and_path():
  variables = abstract_variables(
      "standard",
      image_size=8,
      widths=(8, 16),
      convs_per_stage=1,
      fc_widths=(32,),
      batch_norm=True,
  )
  flat = introspection.variables_by_path(variables)
  assert ("params", "conv1_1/kernel") in flat and ("batch_stats", "fc1_bn/mean") in flat
  assert flat[("params", "conv1_1/kernel")].shape == (3, 3, 3, 8)  # RGB in
  assert flat[("batch_stats", "conv2_1_bn/var")].shape == (16,)
  assert len(flat) == len(jax.tree.leaves(variables))
  assert {collection for collection, _ in flat} == {"params", "batch_stats"}


def test_mismatch_report_names_each_kind_and_shortens_long_lists():
  assert introspection.mismatch_report([], [], []) == ""
  assert introspection.mismatch_report(["fc/kernel"], [], ["conv1/kernel (3, 3) vs (5, 5)"]) == (
      "not in the weights: fc/kernel; shape mismatch: conv1/kernel (3, 3) vs (5, 5)"
  )
  unused = [f"extra{i}" for i in range(10)]
  report = introspection.mismatch_report([], unused, [])
  assert report == "not in the model: " + ", ".join(unused[:8]) + " ..."
