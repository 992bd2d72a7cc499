"""Small building blocks shared by the model zoo.

Activations, pooling, flatten and local response normalization are modules
(not bare functions) so that they appear as named rows in the summary table
and as named entries when a caller captures intermediate activations with
``model.apply(..., capture_intermediates=True)``.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from cnn_jax import backward_rules, geometry
from cnn_jax.errors import ArgumentError
from cnn_jax.ops import (
    auto_conv_general_dilated,
    auto_depthwise_conv_general_dilated,
    col2im_conv_general_dilated,
    depthwise_conv_general_dilated,
    gemm_conv_general_dilated,
    lecture_conv_general_dilated,
    tiled_max_pool,
)
from cnn_jax.ops.onednn import onednn_conv_general_dilated

Padding = int | tuple[int, int] | Sequence[tuple[int, int]]

# LeCun et al. 1998, Appendix A: f(a) = A tanh(S a) with A = 1.7159, S = 2/3,
# chosen so that f(1) = 1 and f(-1) = -1.
LECUN_TANH_AMPLITUDE = 1.7159
LECUN_TANH_SLOPE = 2.0 / 3.0


def scaled_tanh(x: jax.Array) -> jax.Array:
  """LeCun's squashing function 1.7159 * tanh(2/3 * x)."""
  return LECUN_TANH_AMPLITUDE * jnp.tanh(LECUN_TANH_SLOPE * x)


ACTIVATIONS: dict[str, Callable[..., jax.Array]] = {
    "relu": nn.relu,
    "relu6": nn.relu6,
    "leaky_relu": nn.leaky_relu,
    "elu": nn.elu,
    "tanh": jnp.tanh,
    "scaled_tanh": scaled_tanh,
    "sigmoid": nn.sigmoid,
    "identity": lambda x: x,
}


def activation_fn(
    kind: str, negative_slope: float = 0.1, alpha: float = 1.0
) -> Callable[[jax.Array], jax.Array]:
  """An activation function by name.

  Args:
    kind: one of `ACTIVATIONS` (relu, relu6, leaky_relu, elu, tanh, scaled_tanh,
      sigmoid, identity).
    negative_slope: slope of leaky_relu for x < 0 (the lecture uses 0.1).
    alpha: alpha of elu.

  Returns:
    A function x -> activation(x).

  Raises:
    ValueError: for an unknown name.
  """
  if kind not in ACTIVATIONS:
    raise ArgumentError(f"unknown activation {kind!r}; choose one of {sorted(ACTIVATIONS)}")
  if kind == "leaky_relu":
    return functools.partial(nn.leaky_relu, negative_slope=negative_slope)
  if kind == "elu":
    return functools.partial(nn.elu, alpha=alpha)
  return ACTIVATIONS[kind]


_RELU_CAPS = {"relu": math.inf, "relu6": 6.0}


class Activation(nn.Module):
  """A named activation layer (RELU in the lecture's layer tables)."""

  kind: str = "relu"
  negative_slope: float = 0.1
  alpha: float = 1.0

  @nn.compact
  def __call__(self, x):
    if self.kind in _RELU_CAPS and backward_rules.active_rule() != "gradient":
      return backward_rules.visualization_relu(x, _RELU_CAPS[self.kind], self.name)
    return activation_fn(self.kind, self.negative_slope, self.alpha)(x)


def padding_pairs(padding: Padding) -> list[tuple[int, int]]:
  """Explicit (low, high) padding for both spatial axes.

  Args:
    padding: an int P (P on every side), a pair (Ph, Pw) of symmetric paddings,
      or ((top, bottom), (left, right)).

  Returns:
    [(top, bottom), (left, right)].
  """
  if isinstance(padding, int):
    return [(padding, padding)] * 2
  padding = list(padding)
  if all(isinstance(p, int) for p in padding):
    return [(p, p) for p in padding]
  return [tuple(p) for p in padding]


CONV_IMPLS = ("auto", "xla", "col2im", "lecture", "gemm", "onednn")


def conv_general_dilated_fn(conv_impl: str = "auto") -> Callable[..., jax.Array]:
  """The `lax.conv_general_dilated`-compatible function of an implementation.

  Args:
    conv_impl: one of CONV_IMPLS (see `conv_class`).

  Returns:
    A function with the signature of `jax.lax.conv_general_dilated`.

  Raises:
    ValueError: for an unknown implementation.
  """
  functions = {
      "auto": auto_conv_general_dilated,
      "xla": lax.conv_general_dilated,
      "col2im": col2im_conv_general_dilated,
      "lecture": lecture_conv_general_dilated,
      "gemm": gemm_conv_general_dilated,
      "onednn": onednn_conv_general_dilated,
  }
  if conv_impl not in functions:
    raise ArgumentError(f"unknown conv_impl {conv_impl!r}; choose one of {CONV_IMPLS}")
  return functions[conv_impl]


def depthwise_conv_general_dilated_fn(conv_impl: str = "auto") -> Callable[..., jax.Array]:
  """The `lax.conv_general_dilated`-compatible function for depthwise layers.

  Args:
    conv_impl: one of CONV_IMPLS. "auto" and "onednn" take oneDNN's depthwise
      kernels where `cnn_jax.ops.auto_depthwise_conv_general_dilated` says;
      every other implementation the shifted sums (`cnn_jax.ops.depthwise_conv`),
      since XLA's CPU convolution is 7-30x slower on them and the others would
      run one convolution per channel.

  Returns:
    A function with the signature of `jax.lax.conv_general_dilated`.

  Raises:
    ValueError: for an unknown implementation.
  """
  conv_general_dilated_fn(conv_impl)  # the unknown names' error
  if conv_impl in ("auto", "onednn"):
    return auto_depthwise_conv_general_dilated
  return depthwise_conv_general_dilated


def conv_class(conv_impl: str = "auto") -> Callable[..., nn.Conv]:
  """The convolution module to use for an implementation name.

  Args:
    conv_impl: "auto" (oneDNN's kernels for the float32 ungrouped layers where
      they are available and measured faster, "col2im" for the rest; see
      `cnn_jax.ops.auto_conv`), "xla" (XLA's convolution and autodiff),
      "col2im" (XLA's convolution, with the input gradient as matrix
      product + col2im on the CPU for strided layers and kernels of 5x5 or
      more, where that measured faster; see `cnn_jax.ops.col2im_conv`;
      "auto" before oneDNN), "lecture" (the same
      forward pass with the lecture's explicit backward pass, see
      `cnn_jax.ops.lecture_conv2d`), "gemm" (im2col + one matrix product, see
      `cnn_jax.ops.gemm_conv`; measured no faster than XLA's in whole
      training steps on the CPU, see experiments/benchmarks/README.md),
      "onednn" (oneDNN's kernels for every float32 ungrouped convolution
      on x86-64 Linux CPUs, "col2im" for the rest; see `cnn_jax.ops.onednn`).

  Returns:
    `flax.linen.Conv` or a partial of it; parameters are identical either way.

  Raises:
    ValueError: for an unknown implementation.
  """
  return functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated_fn(conv_impl))


def check_nhwc(x: jax.Array, model: str) -> None:
  """Raises a one-line ValueError unless x is a batch of NHWC images.

  Args:
    x: the model's input.
    model: the model's name, quoted in the error.
  """
  if getattr(x, "ndim", None) != 4:
    raise ArgumentError(
        f"{model} expects images as (N, H, W, C), got shape {getattr(x, 'shape', None)}; "
        "add a channel axis (x[..., None]) or a batch axis (x[None]) as needed"
    )


def check_conv_geometry(
    x: jax.Array, kernel: int, padding: int | tuple[int, int], stride: int, layer: str
) -> None:
  """Raises `GeometryError` naming `layer` if a conv does not tile `x` exactly.

  Args:
    x: the NHWC input of the layer (only its static shape is read).
    kernel: filter size F.
    padding: zero padding P on each side, or a (low, high) pair.
    stride: stride S.
    layer: the layer's name, quoted in the error.
  """
  for size in x.shape[1:3]:
    geometry.conv_output_size(size, kernel, padding, stride, layer=layer)


def check_pool_geometry(x: jax.Array, window: int, stride: int, layer: str) -> None:
  """Raises `GeometryError` naming `layer` if a pool does not tile `x` exactly."""
  for size in x.shape[1:3]:
    geometry.pool_output_size(size, window, stride, layer=layer)


def _pool_pads(
    size: int, window: int, stride: int, pad: tuple[int, int], ceil_mode: bool
) -> tuple[int, int]:
  """Padding that reproduces PyTorch's ceil_mode windows (extra on the high side)."""
  lo, hi = pad
  if not ceil_mode:
    return lo, hi
  out = -(-(size + lo + hi - window) // stride) + 1
  # PyTorch drops a last window that would start inside the right padding.
  if (out - 1) * stride >= size + lo:
    out -= 1
  return lo, max(hi, (out - 1) * stride + window - size - lo)


class MaxPool(nn.Module):
  """Max pooling with window F and stride S (POOL in the lecture).

  `ceil_mode=True` keeps a last partial window, as PyTorch's ceil_mode does
  (GoogLeNet's pools rely on it).
  """

  window: int = 2
  stride: int | None = None
  padding: Padding = 0
  ceil_mode: bool = False

  @nn.compact
  def __call__(self, x):
    stride = self.stride or self.window
    pads = [
        _pool_pads(x.shape[i + 1], self.window, stride, p, self.ceil_mode)
        for i, p in enumerate(padding_pairs(self.padding))
    ]
    if stride == self.window and not any(lo or hi for lo, hi in pads):
      # The windows tile the image: reshape + max, without XLA:CPU's scatter
      # kernels for reduce_window's gradient (see cnn_jax.ops.tiled_max_pool).
      y = tiled_max_pool(x, self.window)
    else:
      y = nn.max_pool(x, (self.window,) * 2, (stride,) * 2, padding=pads)
    if backward_rules.active_rule() == "linear":
      # Forward the max, backward the gradient of a sum pool: every input of
      # the window gets gradient, so gradients trace receptive fields.
      window_sum = nn.pool(x, 0.0, lax.add, (self.window,) * 2, (stride,) * 2, pads)
      y = window_sum + lax.stop_gradient(y - window_sum)
    return y


class AvgPool(nn.Module):
  """Average pooling with window F and stride S.

  Padded zeros are counted in the average, as in PyTorch's default.
  """

  window: int = 2
  stride: int | None = None
  padding: Padding = 0

  @nn.compact
  def __call__(self, x):
    stride = self.stride or self.window
    return nn.avg_pool(
        x,
        (self.window,) * 2,
        (stride,) * 2,
        padding=padding_pairs(self.padding),
        count_include_pad=True,
    )


def _adaptive_bins(size: int, out: int) -> list[tuple[int, int]]:
  # PyTorch's rule: bin i covers [floor(i*size/out), ceil((i+1)*size/out)).
  return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


class AdaptiveAvgPool(nn.Module):
  """Average pooling to a fixed output size, with PyTorch's bin boundaries.

  torchvision's AlexNet (6x6) and VGG (7x7) use it so that their classifiers
  accept any image size; at the nominal size it is the identity.
  """

  output_size: int | tuple[int, int] = 1

  @nn.compact
  def __call__(self, x):
    out_h, out_w = (
        (self.output_size,) * 2 if isinstance(self.output_size, int) else self.output_size
    )
    _, h, w, _ = x.shape
    if (h, w) == (out_h, out_w):
      return x
    if h % out_h == 0 and w % out_w == 0:
      return nn.avg_pool(x, (h // out_h, w // out_w), (h // out_h, w // out_w))
    rows = [x[:, a:b].mean(axis=1) for a, b in _adaptive_bins(h, out_h)]
    x = jnp.stack(rows, axis=1)
    cols = [x[:, :, a:b].mean(axis=2) for a, b in _adaptive_bins(w, out_w)]
    return jnp.stack(cols, axis=2)


class GlobalAvgPool(nn.Module):
  """Mean over the spatial axes: (N, H, W, C) -> (N, C)."""

  @nn.compact
  def __call__(self, x):
    return jnp.mean(x, axis=(1, 2))


class Flatten(nn.Module):
  """(N, H, W, C) -> (N, H*W*C), in NHWC order."""

  @nn.compact
  def __call__(self, x):
    return x.reshape((x.shape[0], -1))


class LocalResponseNorm(nn.Module):
  """Local response normalization across channels (Krizhevsky et al. 2012, 3.3).

  b_c = a_c / (k + alpha * sum_{c' in window(c)} a_{c'}^2) ** beta, with a
  window of `size` adjacent channels centred on c. Note: PyTorch's
  LocalResponseNorm divides alpha by `size`; this is the paper's formula.
  With `groups` > 1 the window stays inside each group of channels, as on
  the paper's two GPUs, where each tower normalized only its own maps.
  """

  size: int = 5
  k: float = 2.0
  alpha: float = 1e-4
  beta: float = 0.75
  groups: int = 1

  @nn.compact
  def __call__(self, x):
    # Grouping = a new axis: the window then slides along each group only.
    grouped = x.reshape(*x.shape[:-1], self.groups, x.shape[-1] // self.groups)
    squared = jnp.square(grouped.astype(jnp.float32))
    half = self.size // 2
    window_sum = lax.reduce_window(
        squared,
        0.0,
        lax.add,
        (1,) * x.ndim + (self.size,),
        (1,) * (x.ndim + 1),
        [(0, 0)] * x.ndim + [(half, self.size - 1 - half)],
    )
    scale = ((self.k + self.alpha * window_sum) ** -self.beta).reshape(x.shape)
    return (x * scale).astype(x.dtype)


class FullyConnectedHead(nn.Module):
  """[FC -> ReLU]*K -> FC with dropout, named fc{first}, fc{first+1}, ...

  AlexNet and VGG end this way. The paper's AlexNet applies dropout to the
  outputs of the hidden layers (`dropout_before=False`); torchvision's AlexNet
  to their inputs (`dropout_before=True`).
  """

  hidden: Sequence[int] = (4096, 4096)
  num_classes: int = 1000
  dropout: float = 0.5
  dropout_before: bool = False
  first: int = 6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    for i, width in enumerate(self.hidden, start=self.first):
      drop = nn.Dropout(self.dropout, deterministic=not train, name=f"fc{i}_dropout")
      if self.dropout_before:
        x = drop(x)
      x = nn.Dense(width, dtype=self.dtype, name=f"fc{i}")(x)
      x = Activation("relu", name=f"fc{i}_act")(x)
      if not self.dropout_before:
        x = drop(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name=f"fc{self.first + len(self.hidden)}")(
        x
    )


def batch_norm(train: bool, dtype: Any = jnp.float32, **kwargs) -> Callable[..., nn.BatchNorm]:
  """BatchNorm with PyTorch's defaults (momentum 0.1 there is 0.9 here).

  Args:
    train: use batch statistics (True) or the running averages (False).
    dtype: compute dtype; statistics and parameters stay float32.
    **kwargs: overrides, e.g. epsilon=1e-3 for torchvision's GoogLeNet.

  Returns:
    A partial of `flax.linen.BatchNorm`.
  """
  options = dict(
      use_running_average=not train,
      momentum=0.9,
      epsilon=1e-5,
      dtype=dtype,
      param_dtype=jnp.float32,
  )
  options.update(kwargs)
  return functools.partial(nn.BatchNorm, **options)


def he_normal_fan_out() -> Callable:
  """Kaiming normal with fan-out, as torchvision initializes ResNet convs."""
  return nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def num_params(tree: Any) -> int:
  """Total number of entries in a pytree of arrays (or ShapeDtypeStructs).

  Args:
    tree: e.g. `variables["params"]`.

  Returns:
    The sum of the sizes of all leaves.
  """
  return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree))
