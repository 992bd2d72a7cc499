"""The lecture's convolution arithmetic, checked on the lecture's own examples."""

import jax.numpy as jnp
import pytest

from cnn_jax import geometry, models
from cnn_jax.geometry import GeometryError


@pytest.mark.parametrize(
    "size,kernel,padding,stride,expected",
    [
        (227, 11, 0, 4, 55),  # AlexNet conv1
        (32, 5, 0, 1, 28),  # LeNet-5 C1
        (7, 3, 0, 1, 5),  # the lecture's 7x7 input, 3x3 filter
        (7, 3, 0, 2, 3),  # ... stride 2
        (32, 3, 1, 1, 32),  # "same" padding P = (F - 1)/2
    ],
)
def test_conv_output_size(size, kernel, padding, stride, expected):
  assert geometry.conv_output_size(size, kernel, padding, stride) == expected


def test_conv_output_size_refuses_to_floor():
  # The lecture's counter-example: 7x7 input, 3x3 filter, stride 3 does not fit.
  with pytest.raises(GeometryError, match=r"W=7, F=3, P=0, S=3.*not a whole number"):
    geometry.conv_output_size(7, 3, 0, 3)
  with pytest.raises(GeometryError, match="layer 'conv1'"):
    geometry.conv_output_size(224, 11, 0, 4, layer="conv1")
  with pytest.raises(GeometryError, match="larger than the"):
    geometry.conv_output_size(4, 5, 0, 1)


def test_pool_output_size():
  assert geometry.pool_output_size(28, 2, 2) == 14
  assert geometry.pool_output_size(55, 3, 2) == 27  # AlexNet's overlapping pool
  with pytest.raises(GeometryError, match=r"\(W - F\)/S"):
    geometry.pool_output_size(5, 2, 2)


def test_lecture_parameter_sharing_example():
  counts = geometry.conv_layer_counts(227, 3, kernel=11, stride=4, padding=0, filters=96)
  assert counts["output_shape"] == (55, 55, 96)
  assert counts["neurons"] == 290_400
  assert counts["params_per_neuron"] == 364
  assert counts["params_without_sharing"] == 105_705_600
  assert counts["params_with_sharing"] == 34_944


def test_lecture_fully_connected_counts():
  assert geometry.dense_params((32, 32, 3)) == 3_073
  assert geometry.dense_params((200, 200, 3)) == 120_001
  assert geometry.dense_params((200, 200, 3), neurons=256) == 30_720_256


def _build(name, size, **overrides):
  spec = models.spec(name)
  model = models.create(name, **overrides)
  return model.init(
      {"params": __import__("jax").random.key(0)}, jnp.zeros((1, size, size, spec.channels))
  )


def test_models_from_configs_name_the_failing_layer():
  # 12 -> pool1 -> 6 -> pool2 -> 3 -> pool3: (3 - 2)/2 is not whole.
  with pytest.raises(GeometryError, match="layer 'pool3'"):
    _build("standard", 12, widths=(4, 4, 4), convs_per_stage=1)
  # Even kernels have no symmetric "same" padding.
  with pytest.raises(ValueError, match="odd kernel"):
    _build("standard", 32, kernel_size=4)
  # LeNet-5 on 28x28: C5's 5x5 window no longer fits the 4x4 S4 maps.
  with pytest.raises(GeometryError, match="layer 'C5'"):
    _build("lenet5", 28)
  # The paper's AlexNet needs 227x227: 224 gives (224 - 11)/4, not whole.
  with pytest.raises(GeometryError, match="layer 'conv1'"):
    _build("alexnet", 224)
