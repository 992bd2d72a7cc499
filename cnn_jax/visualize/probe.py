"""Reading and nudging one named layer of a model, without changing the model.

Every layer of the zoo is a named submodule ("C3_act", "conv5_3_act",
"layer4_2/act_out", "inception4e/branch1/act"), so a layer is addressed by
its path. Flax's method interception lets us see that layer's output during
`model.apply` and add a perturbation to it; the gradient with respect to a
zero perturbation is the gradient with respect to the layer's output, which
Grad-CAM and activation maximization need.
"""

from __future__ import annotations

from typing import Any, Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.errors import UnknownLayerError
from cnn_jax.introspection import layer_shapes


def check_layer(layer: str, names: Iterable[str]) -> None:
  """Refuses a layer name the model does not have, naming the layers it has.

  Args:
    layer: the name asked for.
    names: the model's layer names (`layer_names`, or `layer_shapes`' keys).

  Raises:
    UnknownLayerError: unless `layer` is one of `names`.
  """
  names = list(names)
  if layer not in names:
    raise UnknownLayerError(f"the model has no layer {layer!r}; its layers are: {', '.join(names)}")


def layer_names(model: nn.Module, variables: Any, x: jax.Array) -> list[str]:
  """Names of every layer (module paths such as "C1_act", "layer4_1/act_out")."""
  return list(layer_shapes(model, variables, x))


def apply_with_layer(
    model: nn.Module, variables: Any, x: jax.Array, layer: str, delta: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
  """Runs the model in eval mode and returns (logits, output of `layer`).

  Args:
    model: the flax model.
    variables: its variables.
    x: float NHWC input, already normalized.
    layer: a name from `layer_names`.
    delta: added to the layer's output (same shape) before the rest of the
      network sees it; None adds nothing.

  Returns:
    (logits, the layer's output before `delta` was added).

  Raises:
    UnknownLayerError: naming the layers there are.
  """
  seen: dict[str, jax.Array] = {}

  def intercept(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and "/".join(context.module.path) == layer:
      seen["output"] = out
      if delta is not None:
        out = out + delta.astype(out.dtype)
    return out

  with nn.intercept_methods(intercept):
    logits = model.apply(variables, x, train=False)
  if "output" not in seen:
    check_layer(layer, layer_names(model, variables, x))
  return logits, seen["output"]


def default_conv_layer(model: nn.Module, variables: Any, x: jax.Array) -> str:
  """The last top-level layer whose output is still a spatial map (for Grad-CAM).

  Args:
    model: the flax model.
    variables: its variables.
    x: an input batch.

  Returns:
    The name of the last layer with a 4-D output larger than 1x1.
  """
  spatial = [
      name
      for name, shape in layer_shapes(model, variables, x).items()
      if len(shape) == 4 and shape[1] * shape[2] > 1 and "/" not in name
  ]
  if not spatial:
    raise UnknownLayerError("the model has no top-level layer with a spatial output")
  return spatial[-1]


def zeros_like_layer(model: nn.Module, variables: Any, x: jax.Array, layer: str) -> jax.Array:
  """A zero perturbation shaped like `layer`'s output (float32).

  Raises:
    UnknownLayerError: naming the layers there are.
  """
  shapes = layer_shapes(model, variables, x)
  check_layer(layer, shapes)
  return jnp.zeros(shapes[layer], jnp.float32)
