"""Looking into a model without changing it: its layer calls and its variables by path.

Every layer of the zoo is a named submodule, so a layer is addressed by its
path ("C3_act", "layer4_1/act_out") and a variable by its path under a
collection ("params", "conv1/kernel"). The summary table, the
visualizations' probe and fine-tuning's freeze settings all read a model
through these few functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any, Callable, Iterator

import flax.linen as nn
import jax
import numpy as np
from flax import traverse_util


@dataclasses.dataclass(frozen=True)
class LayerCall:
  """One call of a named submodule: its path, the module and what it returned."""

  path: tuple[str, ...]
  module: nn.Module
  output: Any


@contextlib.contextmanager
def recording_calls() -> Iterator[list[LayerCall]]:
  """Records every submodule's `__call__` made inside the block, in call order.

  Use as `with recording_calls() as calls: jax.eval_shape(...)`; the list
  fills as the model runs (abstractly or not). The top-level module itself
  (empty path) is left out.
  """
  calls: list[LayerCall] = []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and context.module.path:
      calls.append(LayerCall(tuple(context.module.path), context.module, out))
    return out

  with nn.intercept_methods(record):
    yield calls


def layer_shapes(model: nn.Module, variables: Any, x: jax.Array) -> dict[str, tuple[int, ...]]:
  """Output shape of every named submodule, in call order (nothing is computed).

  The answer depends only on the model and the shapes of the variables and
  the input, so it is remembered: tracing EfficientNet-Lite0 costs ~0.9 s,
  and a visualization asks for each map (Grad-CAM's layer and its zero
  perturbation).

  Args:
    model: the flax model.
    variables: its variables (shapes suffice).
    x: an input batch (only its shape matters).

  Returns:
    {"C1": (N, 28, 28, 6), "C1_act": ..., ...}; names are module paths.
  """
  treedef, leaf_shapes = shapes_key(variables)
  return dict(_traced_layer_shapes(model, treedef, leaf_shapes, tuple(x.shape), _dtype(x)))


def shapes_key(tree: Any) -> tuple[Any, tuple[tuple[tuple[int, ...], np.dtype], ...]]:
  """A hashable key of a pytree's structure, shapes and dtypes (not its values).

  For caches of what depends on a model's variables only through their
  shapes (its layers' output shapes, its receptive fields).
  """
  leaves, treedef = jax.tree.flatten(tree)
  return treedef, tuple((tuple(np.shape(leaf)), _dtype(leaf)) for leaf in leaves)


def _dtype(value: Any) -> np.dtype:
  return np.dtype(value.dtype) if hasattr(value, "dtype") else np.result_type(value)


@functools.lru_cache(maxsize=64)
def _traced_layer_shapes(model, treedef, leaf_shapes, input_shape, input_dtype):
  variables = jax.tree.unflatten(
      treedef, [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in leaf_shapes]
  )
  x = jax.ShapeDtypeStruct(input_shape, input_dtype)
  with recording_calls() as calls:
    jax.eval_shape(lambda v, inputs: model.apply(v, inputs, train=False), variables, x)
  shapes: dict[str, tuple[int, ...]] = {}
  for call in calls:
    if hasattr(call.output, "shape"):
      shapes.setdefault("/".join(call.path), tuple(call.output.shape))
  return tuple(shapes.items())


def by_path(tree: Any) -> dict[str, Any]:
  """{"layer/sub/leaf": leaf} of a nested dict of arrays (params, batch_stats)."""
  return traverse_util.flatten_dict(tree, sep="/")


def from_paths(flat: dict[str, Any]) -> dict[str, Any]:
  """The nested dict of `by_path`'s {"layer/sub/leaf": leaf}."""
  return traverse_util.unflatten_dict(flat, sep="/")


def map_with_paths(value_of: Callable[[str, Any], Any], tree: Any) -> Any:
  """`tree` with each leaf replaced by `value_of("layer/sub/leaf", leaf)`."""
  return traverse_util.path_aware_map(lambda path, leaf: value_of("/".join(path), leaf), tree)


def variables_by_path(variables: dict[str, Any]) -> dict[tuple[str, str], Any]:
  """{(collection, "layer/sub/leaf"): leaf} of a variables dict."""
  return {
      (collection, path): leaf
      for collection, tree in variables.items()
      for path, leaf in by_path(tree).items()
  }


def mismatch_report(missing: list[str], unused: list[str], wrong: list[str]) -> str:
  """One line listing (the first few of) each kind of mismatch between two sets of weights."""
  return "; ".join(
      f"{what}: {', '.join(items[:8])}{' ...' if len(items) > 8 else ''}"
      for what, items in (
          ("not in the weights", missing),
          ("not in the model", unused),
          ("shape mismatch", wrong),
      )
      if items
  )
