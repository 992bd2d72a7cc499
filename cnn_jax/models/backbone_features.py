"""A zoo backbone's features by layer name, for the dense heads built on it (FCN, CenterNet).

The backbone is the zoo model itself, run whole inside the dense model's
`__call__`; its layers' outputs are caught with `nn.intercept_methods`
while it runs: plain Python around the backbone's call, so the features are
ordinary intermediate values of the same trace (jit, grad and vmap see
nothing special), and no backbone has to be changed to sow them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax

from cnn_jax.errors import ArgumentError, UnknownLayerError
from cnn_jax.models import registry


def zoo_backbone(name: str, dtype: Any, conv_impl: str, kwargs: Any) -> nn.Module:
  """The zoo model `name` as a dense model's submodule "backbone" (its parameters the zoo's).

  Args:
    name: the zoo model's name.
    dtype: the compute dtype.
    conv_impl: its convolutions (see `cnn_jax.layers.conv_class`).
    kwargs: its other fields, as (name, value) pairs or a mapping.

  Returns:
    The unbound module.
  """
  return registry.create(name, dtype=dtype, conv_impl=conv_impl, name="backbone", **dict(kwargs))


def capture(
    parent: nn.Module,
    backbone: nn.Module,
    backbone_name: str,
    x: jax.Array,
    train: bool,
    wanted: Mapping[int, str],
) -> dict[int, jax.Array]:
  """Runs `backbone` on x and returns the outputs of the wanted layers, checked.

  Args:
    parent: the module whose `__call__` runs this; the backbone is its
      submodule (named "backbone").
    backbone: the backbone module, not yet called.
    backbone_name: its zoo name, for the errors.
    x: the input (N, H, W, C).
    train: the backbone's training mode.
    wanted: {stride: layer path inside the backbone}.

  Returns:
    {stride: that layer's output}, each (N, H / stride, W / stride, channels).

  Raises:
    UnknownLayerError: for a layer the backbone does not have (its layers listed).
    ArgumentError: for a layer whose output does not have the stride it is given for.
  """
  prefix = (*parent.path, backbone.name)
  called, captured = [], {}

  def catch(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    path = tuple(context.module.path)
    if context.method_name == "__call__" and path[: len(prefix)] == prefix and path != prefix:
      layer = "/".join(path[len(prefix) :])
      called.append(layer)
      if layer in wanted.values():
        captured.setdefault(layer, out)
    return out

  with nn.intercept_methods(catch):
    backbone(x, train=train)
  features = {}
  for stride, layer in wanted.items():
    if layer not in captured:
      raise UnknownLayerError(
          f"backbone {backbone_name!r} has no layer {layer!r} (given for stride {stride}); "
          f"its layers: {', '.join(dict.fromkeys(called))}"
      )
    _check_stride(captured[layer], x, stride, layer, backbone_name)
    features[stride] = captured[layer]
  return features


def _check_stride(feature, x, stride: int, layer: str, backbone: str) -> None:
  expected = (x.shape[1] // stride, x.shape[2] // stride)
  if getattr(feature, "ndim", 0) != 4 or tuple(feature.shape[1:3]) != expected:
    raise ArgumentError(
        f"layer {layer!r} of backbone {backbone!r} outputs shape "
        f"{getattr(feature, 'shape', None)} on a {x.shape[1]}x{x.shape[2]} input, not the "
        f"{expected[0]}x{expected[1]} map of stride {stride} it is given for; find the "
        "layers of each stride with cnn_jax.introspection.layer_shapes"
    )
