"""Detection models: CenterNet (Zhou et al. 2019) on zoo backbones with an FPN-style neck."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import layers, models, tasks
from cnn_jax.errors import GeometryError, UnknownLayerError
from cnn_jax.tasks import centernet

from conftest import abstract_init, abstract_variables

# Each backbone's output channels at strides 32, 16, 8 and 4, from the papers' tables.
FEATURE_CHANNELS = {"resnet18": (512, 256, 128, 64), "efficientnet_lite0": (1280, 112, 40, 24)}
NAMES = [f"centernet_{backbone}" for backbone in FEATURE_CHANNELS]


def centernet_params(backbone: str, classes: int, neck: int = 64, head: int = 64) -> int:
  """Backbone + 1x1 laterals + the neck's 3x3 + three heads (3x3 then 1x1), biases included."""
  total = layers.num_params(abstract_variables(backbone, 64)["params"])
  total += sum(c * neck + neck for c in FEATURE_CHANNELS[backbone]) + 9 * neck * neck + neck
  return total + sum(9 * neck * head + head + head * out + out for out in (classes, 2, 2))


def test_registered_detection_models():
  found = [n for n in models.names() if models.family(n).task == "detection"]
  assert sorted(found) == sorted(NAMES)
  for name in NAMES:
    spec = models.spec(name)
    assert (spec.image_size, spec.channels, spec.num_classes) == (512, 3, 80)
    assert models.backbone(name) == name.removeprefix("centernet_")


@pytest.mark.parametrize("name", NAMES)
def test_outputs_are_stride_4_maps_of_classes_and_box_channels(name):
  variables, outputs = abstract_init(name, 64, num_classes=10)
  assert outputs.shape == (1, 16, 16, 10 + centernet.BOX_CHANNELS)
  assert outputs.dtype == jnp.float32
  backbone = name.removeprefix("centernet_")
  assert layers.num_params(variables["params"]) == centernet_params(backbone, 10)
  # The backbone's parameters are the zoo model's, under "backbone".
  zoo = abstract_variables(backbone, 64)["params"]
  assert jax.tree.structure(variables["params"]["backbone"]) == jax.tree.structure(zoo)


def test_heads_start_at_the_papers_prior_and_the_loss_reaches_every_new_layer():
  model = models.create("centernet_resnet18", num_classes=3)
  x = jax.random.uniform(jax.random.key(0), (2, 64, 64, 3))
  variables = model.init(jax.random.key(1), x)
  params = variables["params"]
  assert np.allclose(params["heatmap"]["bias"], np.log(0.1 / 0.9), atol=1e-6)
  assert not params["size"]["bias"].any() and not params["offset"]["bias"].any()
  batch = {
      "boxes": jnp.array([[[0.1, 0.1, 0.5, 0.4], [0, 0, 0, 0]], [[0.3, 0.5, 0.9, 0.95]] * 2]),
      "box_labels": jnp.array([[2, 0], [1, 1]]),
      "box_valid": jnp.array([[True, False], [True, False]]),
  }
  task = tasks.Detection(3)

  def loss(params):
    outputs, _ = model.apply(
        {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
    )
    return task.loss(outputs, {}, batch)

  value, grads = jax.jit(jax.value_and_grad(loss))(params)
  assert np.isfinite(float(value))
  for layer, tree in grads.items():
    if layer != "backbone":  # (its classifier is unused: zero gradient there)
      assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(tree)), layer


def test_bad_geometry_and_layers_are_clear_errors():
  model = models.create("centernet_resnet18", num_classes=3)
  with pytest.raises(GeometryError, match="multiples of 32 .*got 60x60.*64x64"):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 60, 60, 3)))
  wrong = models.create(
      "centernet_resnet18", feature_layers=("layer4_1", "layer3_1", "layer2_1", "nope")
  )
  with pytest.raises(UnknownLayerError, match="no layer 'nope' .*stride 4.*layer1_1"):
    jax.eval_shape(wrong.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
