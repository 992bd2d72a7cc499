"""What layers respond to: kernels, feature maps, receptive fields, top patches."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax import backward_rules, introspection
from cnn_jax.visualize import probe


def all_conv_kernels(variables: Any) -> dict[str, np.ndarray]:
  """Every conv kernel (4-D "kernel" parameter) by layer path, HWIO float32."""
  params = variables.get("params", variables)
  kernels = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    keys = [getattr(k, "key", str(k)) for k in path]
    if keys[-1] == "kernel" and np.ndim(leaf) == 4:
      kernels["/".join(keys[:-1])] = np.asarray(leaf, np.float32)
  return kernels


def conv_kernels(variables: Any, layer: str | None = None) -> tuple[str, np.ndarray]:
  """The kernel of a conv layer (default: the one that sees the input), HWIO.

  Args:
    variables: a model's variables (or just its params).
    layer: the conv layer's path ("C1", "conv1", "layer1_0/conv1"); None
      takes the conv whose input channels are fewest (the image's), which is
      the first layer of every zoo model.

  Returns:
    (layer name, float32 (kh, kw, in, out)).

  Raises:
    probe.UnknownLayerError: for a name without a 4-D kernel, listing those there are.
  """
  kernels = all_conv_kernels(variables)
  if not kernels:
    raise probe.UnknownLayerError("the model has no conv kernel")
  if layer is None:
    layer = min(kernels, key=lambda name: (kernels[name].shape[2], name))
  if layer not in kernels:
    raise probe.UnknownLayerError(
        f"no conv kernel named {layer!r}; conv layers: " f"{', '.join(kernels)}"
    )
  return layer, kernels[layer]


def filter_images(kernel: np.ndarray) -> np.ndarray:
  """First-layer filters as images, each scaled to [0, 1] on its own.

  Args:
    kernel: (kh, kw, in, out).

  Returns:
    (out, kh, kw, 3) for a 3-channel input (shown as RGB), else (out, kh, kw):
    the single channel, or the mean over input channels (shown in gray).
  """
  filters = np.moveaxis(kernel, -1, 0)  # (out, kh, kw, in)
  if filters.shape[-1] != 3:
    filters = filters.mean(axis=-1)
  axes = tuple(range(1, filters.ndim))
  low, high = filters.min(axis=axes, keepdims=True), filters.max(axis=axes, keepdims=True)
  return (filters - low) / np.maximum(high - low, 1e-12)


def kernels_per_input_channel(kernel: np.ndarray) -> np.ndarray:
  """Any layer's kernels split by input channel, each scaled to [0, 1].

  Args:
    kernel: (kh, kw, in, out).

  Returns:
    (out, in, kh, kw): row = output filter, column = input channel.
  """
  slices = np.transpose(kernel, (3, 2, 0, 1))
  low = slices.min(axis=(2, 3), keepdims=True)
  high = slices.max(axis=(2, 3), keepdims=True)
  return (slices - low) / np.maximum(high - low, 1e-12)


def feature_maps(model: nn.Module, variables: Any, images: jax.Array, layer: str) -> jax.Array:
  """The activations of a named layer.

  Args:
    model: the flax model.
    variables: its variables.
    images: float (N, H, W, C), normalized.
    layer: a name from `probe.layer_names`.

  Returns:
    The layer's output, e.g. (N, h, w, channels).
  """
  return _layer_output(model, variables, images, layer)


@functools.partial(jax.jit, static_argnames=("model", "layer"))
def _layer_output(model, variables, images, layer):
  return probe.apply_with_layer(model, variables, images, layer)[1]


def receptive_field_rows_cols(
    model: nn.Module, variables: Any, image_shape: tuple[int, ...], layer: str
) -> tuple[np.ndarray, np.ndarray]:
  """Which input rows and columns each output row and column of a layer sees.

  The support of a gradient is the receptive field once nothing can zero it:
  ReLUs pass all gradient and max pools spread it over their window (the
  "linear" backward rule), and every parameter is replaced by its absolute
  value so that no two paths cancel. One Jacobian of the layer's row sums
  (and column sums) answers for every row (and column).

  Args:
    model: the flax model (eval mode).
    variables: its variables.
    image_shape: (H, W, C).
    layer: a layer with a spatial (N, h, w, c) output.

  Returns:
    (rows (h, H) bool, cols (w, W) bool): rows[i, r] is True when output row
    i depends on input row r.
  """
  # The fields are the architecture's (parameters only enter as |value|, and
  # only an exact zero could change them), so they are computed once per
  # model, variables' shapes, image shape and layer: Grad-CAM asks for them
  # with every map, and on EfficientNet-Lite0 they cost a second each.
  key = (model, introspection.shapes_key(variables), tuple(image_shape), layer)
  if key not in _FIELDS:
    row_jacobian, col_jacobian = _support_jacobians(
        model, jax.tree.map(jnp.abs, variables), jnp.zeros((1, *image_shape), jnp.float32), layer
    )
    # != 0, not > 0: in a deep net (EfficientNet) the all-positive parameters
    # overflow to inf, and a NaN entry is a dependence all the same.
    rows = np.asarray(jnp.any(row_jacobian != 0, axis=(1, 3, 4)))  # (h, 1, H, W, C) -> (h, H)
    cols = np.asarray(jnp.any(col_jacobian != 0, axis=(1, 2, 4)))  # (w, 1, H, W, C) -> (w, W)
    if len(_FIELDS) >= 64:
      _FIELDS.pop(next(iter(_FIELDS)))
    _FIELDS[key] = rows, cols
  rows, cols = _FIELDS[key]
  return rows.copy(), cols.copy()


_FIELDS: dict[Any, tuple[np.ndarray, np.ndarray]] = {}


@functools.partial(jax.jit, static_argnames=("model", "layer"))
def _support_jacobians(model, positive, x, layer):
  def sums(image, axis):
    with backward_rules.backward_rule("linear"):
      out = probe.apply_with_layer(model, positive, image, layer)[1][0]  # (h, w, c)
    return out.sum(axis=(axis, 2))

  return jax.jacrev(lambda image: sums(image, 1))(x), jax.jacrev(lambda image: sums(image, 0))(x)


class Patch(NamedTuple):
  """One of the top-activating places of a channel."""

  image_index: int
  position: tuple[int, int]  # (row, col) in the layer's output
  activation: float
  box: tuple[int, int, int, int]  # input rows [top, bottom) and cols [left, right)


def top_patches(
    model: nn.Module,
    variables: Any,
    images: jax.Array,
    layer: str,
    channel: int,
    k: int = 9,
    batch_size: int = 256,
) -> list[Patch]:
  """The k images whose strongest response in `channel` is highest, and where.

  As in Zeiler & Fergus's Figure 2: for each image the position of the
  channel's maximum, and the input region (its receptive field, clipped to
  the image) that produced it.

  Args:
    model: the flax model.
    variables: its variables.
    images: float (N, H, W, C), normalized: a dataset split.
    layer: a layer with a spatial output.
    channel: the channel of that layer.
    k: how many images.
    batch_size: images per device batch.

  Returns:
    k Patches, strongest first.

  Raises:
    ValueError: for a channel the layer does not have.
  """
  channels = probe.zeros_like_layer(model, variables, images[:1], layer).shape[-1]
  if not 0 <= channel < channels:
    raise ValueError(f"channel {channel} is not in layer {layer!r}'s range [0, {channels})")
  maps = jnp.concatenate(
      [
          feature_maps(model, variables, images[i : i + batch_size], layer)[..., channel]
          for i in range(0, len(images), batch_size)
      ]
  )
  maps = np.asarray(maps, np.float32)  # (N, h, w)
  flat = maps.reshape(len(maps), -1)
  strongest = flat.max(axis=1)
  rows, cols = receptive_field_rows_cols(model, variables, images.shape[1:], layer)
  patches = []
  for index in np.argsort(-strongest, kind="stable")[:k]:
    i, j = np.unravel_index(int(flat[index].argmax()), maps.shape[1:])
    r = np.flatnonzero(rows[i])
    c = np.flatnonzero(cols[j])
    patches.append(
        Patch(
            int(index),
            (int(i), int(j)),
            float(strongest[index]),
            (int(r[0]), int(r[-1]) + 1, int(c[0]), int(c[-1]) + 1),
        )
    )
  return patches
