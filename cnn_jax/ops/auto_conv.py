"""conv_impl="auto": oneDNN's kernels where they are here and faster, XLA's elsewhere.

A float32, ungrouped, undilated 2-D convolution runs oneDNN's kernels
(`cnn_jax.ops.onednn`) when the extension is available, the computation is
on the CPU and JAX has one device (the custom calls have no SPMD
partitioning rule). Per layer, by the measurements of
experiments/benchmarks/onednn_layers.py (its README table):

- a window that covers the whole input (one output position, like LeNet-5's
  C5) is a matrix product, and XLA's is faster: the layer stays on
  `col2im_conv_general_dilated`;
- a first layer on images (at most 3 input channels) whose input gradient
  `uses_col2im` keeps that col2im input gradient, faster there than oneDNN's;
- every other such layer computes all three passes with oneDNN.

Everything else goes to `col2im_conv_general_dilated`: XLA's convolution
with the col2im input gradient where that measured faster.

Depthwise convolutions (`auto_depthwise_conv_general_dilated`) run oneDNN's
depthwise kernels in float32 where the output map is at least as large as
the kernel; on smaller maps (EfficientNet-Lite0's 5x5 layers on 2x2 maps at
64 px) oneDNN's weight gradient measured far slower than the shifted sums
(`cnn_jax.ops.depthwise_conv`), which stay everywhere else.

A training run says which path it took among its first lines
(`path_taken`); the convolutions themselves print nothing, so that a tool's
output (predict's top-5) and a failed command's one-line error stay what
they are.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from cnn_jax.ops.col2im_conv import col2im_conv_general_dilated, uses_col2im
from cnn_jax.ops.depthwise_conv import depthwise_conv_general_dilated
from cnn_jax.ops.onednn import (
    onednn_computes,
    onednn_conv_general_dilated,
    onednn_depthwise_conv_general_dilated,
    unavailable_reason,
)
from cnn_jax.ops.platforms import cpu_or_default

__all__ = [
    "auto_conv_general_dilated",
    "auto_depthwise_conv_general_dilated",
    "onednn_here",
    "onednn_input_grad",
    "path_taken",
]

# Input channels up to which a layer counts as a first layer on images.
_IMAGE_CHANNELS = 3


@functools.cache
def _unavailable() -> str | None:
  """None if "auto" takes oneDNN in this process, else why not (decided once)."""
  reason = unavailable_reason()
  if reason is None and jax.device_count() > 1:
    reason = (
        f"JAX has {jax.device_count()} devices and oneDNN's custom calls have no "
        "partitioning rule (conv_impl='onednn' forces them)"
    )
  return reason


def onednn_here() -> bool:
  """Whether conv_impl="auto" uses oneDNN's kernels in this process.

  Returns:
    True when the extension loads (built on first use) and JAX has one device.
  """
  return _unavailable() is None


def path_taken() -> str:
  """One line for a run's log: the convolutions conv_impl="auto" runs here, and why.

  Returns:
    The line, e.g. "conv_impl='auto': oneDNN's convolution kernels on the CPU".
  """
  if jax.default_backend() != "cpu":
    return f"conv_impl='auto': XLA's convolutions on {jax.default_backend()}"
  reason = _unavailable()
  if reason is None:
    return "conv_impl='auto': oneDNN's convolution kernels on the CPU"
  return f"conv_impl='auto': XLA's convolutions ({reason})"


def _output_size(input_shape, kernel_shape, stride, padding) -> list[int]:
  return [
      (size + low + high - kernel) // step + 1
      for size, kernel, step, (low, high) in zip(
          input_shape[1:3], kernel_shape[:2], stride, padding
      )
  ]


def _stride_and_pads(lhs, rhs, window_strides, padding):
  stride = tuple(int(s) for s in window_strides)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], stride, padding)
  return stride, tuple(tuple(int(p) for p in pair) for pair in padding)


def onednn_input_grad(
    input_shape: Sequence[int],
    kernel_shape: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[tuple[int, int]],
) -> str | None:
  """How conv_impl="auto" computes an eligible layer with oneDNN (see the module docstring).

  Args:
    input_shape: (N, H, W, C).
    kernel_shape: (KH, KW, C, O).
    stride: (sh, sw).
    padding: ((top, bottom), (left, right)).

  Returns:
    None (the layer stays XLA's), or the `input_grad` of
    `onednn_conv_general_dilated`: "onednn" or "col2im".
  """
  outputs = [
      (size + low + high - kernel) // step + 1
      for size, kernel, step, (low, high) in zip(
          input_shape[1:3], kernel_shape[:2], stride, padding
      )
  ]
  if outputs == [1, 1]:
    return None
  if input_shape[3] <= _IMAGE_CHANNELS and uses_col2im(kernel_shape[:2], stride):
    return "col2im"
  return "onednn"


def auto_conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: Any,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
    out_sharding: Any = None,
) -> jax.Array:
  """`lax.conv_general_dilated` for conv_impl="auto", the models' default.

  Args:
    lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
    dimension_numbers, feature_group_count, batch_group_count, precision,
    preferred_element_type, out_sharding: as for `lax.conv_general_dilated`.

  Returns:
    The convolution's output, as `lax.conv_general_dilated` returns it.
  """
  arguments = dict(
      lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count,
      batch_group_count=batch_group_count,
      precision=precision,
      preferred_element_type=preferred_element_type,
      out_sharding=out_sharding,
  )
  input_grad = None
  if onednn_computes(lhs, rhs, dimension_numbers, arguments) and onednn_here():
    stride, pads = _stride_and_pads(lhs, rhs, window_strides, padding)
    input_grad = onednn_input_grad(lhs.shape, rhs.shape, stride, pads)
  if input_grad is None:
    return col2im_conv_general_dilated(lhs, rhs, window_strides, padding, **arguments)
  return onednn_conv_general_dilated(
      lhs, rhs, window_strides, padding, **arguments, input_grad=input_grad
  )


def auto_depthwise_conv_general_dilated(
    lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding: Any, **options
) -> jax.Array:
  """`depthwise_conv_general_dilated` for conv_impl="auto": oneDNN's kernels where they pay.

  Args:
    lhs, rhs, window_strides, padding: as for `lax.conv_general_dilated`.
    **options: its keyword arguments, as `depthwise_conv_general_dilated` takes them.

  Returns:
    The depthwise convolution's output.
  """
  shifted_sums = functools.partial(
      depthwise_conv_general_dilated, window_strides=window_strides, padding=padding, **options
  )
  float32 = jnp.result_type(lhs) == jnp.result_type(rhs) == jnp.float32
  if not (float32 and options.get("preferred_element_type") in (None, jnp.float32)):
    return shifted_sums(lhs, rhs)
  stride, pads = _stride_and_pads(lhs, rhs, window_strides, padding)
  large_map = all(
      out >= kernel
      for out, kernel in zip(_output_size(lhs.shape, rhs.shape, stride, pads), rhs.shape)
  )
  if not (large_map and onednn_here()):
    return shifted_sums(lhs, rhs)
  onednn = functools.partial(
      onednn_depthwise_conv_general_dilated,
      window_strides=window_strides,
      padding=padding,
      **options,
  )
  return cpu_or_default(lhs, rhs, cpu=onednn, default=shifted_sums)
