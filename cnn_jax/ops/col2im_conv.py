"""A convolution whose input gradient is a matrix product + col2im on the CPU.

The gradient of a conv layer w.r.t. its input is the lecture's col2im view
run backwards: every output position sends ``dE/dO[n, i, j, :] @ W^T`` (one
row of FH*FW*C values) back to the input patch it was computed from, where
overlapping patches add up::

  dX = col2im(dE/dO @ W.reshape(FH*FW*C, O)^T)

col2im is the transpose of `cnn_jax.ops.gemm_conv.im2col` (strided pads and
adds, no scatter), taken by `jax.linear_transpose`.

Why: XLA:CPU (jaxlib 0.10.2) computes this gradient as a convolution of the
dilated output gradient with the flipped filter, which is slow where the
stride is above 1 or the map is small next to the kernel. Measured on 2 cores
at batch 128 (experiments/benchmarks/col2im_input_gradient.py, ms per dX,
XLA vs col2im): LeNet-5's C3 2.9 vs 1.6 and C5 2.8 vs 0.4, resnet20's
stride-2 layers 10.3 vs 3.3 and 3.5 vs 2.4, but its stride-1 3x3 layers
4.0 vs 10.2. So `col2im_conv_general_dilated` (conv_impl="col2im", and "auto"'s
path where oneDNN is not taken) uses it only for strided convolutions and for kernels of at least
5x5, and only on the CPU (`cnn_jax.ops.platforms.cpu_or_default`); the forward pass and
the filter gradient stay XLA's everywhere.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from cnn_jax.ops.gemm_conv import im2col
from cnn_jax.ops.conv_drop_in import NHWC_HWIO
from cnn_jax.ops.platforms import cpu_or_default

__all__ = ["col2im", "col2im_conv2d", "col2im_conv_general_dilated", "uses_col2im"]

# Kernels at least this large (FH*FW) get the col2im input gradient at stride 1.
_LARGE_KERNEL_AREA = 25


def col2im(
    columns: jax.Array,
    input_shape: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[tuple[int, int]],
) -> jax.Array:
  """Adds every patch row back onto the input positions it was read from.

  Args:
    columns: (N, OH, OW, FH*FW*C), laid out as `im2col` returns them.
    input_shape: (N, H, W, C) of the input the patches came from.
    kernel_size: (FH, FW).
    stride: (sh, sw).
    padding: ((top, bottom), (left, right)); padded positions are dropped.

  Returns:
    (N, H, W, C), the transpose of `im2col` applied to `columns`.
  """

  def patches(x):
    return im2col(x, kernel_size, stride, padding)

  (image,) = jax.linear_transpose(patches, jax.ShapeDtypeStruct(input_shape, columns.dtype))(
      columns
  )
  return image


def _xla_conv(x, w, stride, padding, precision, preferred_element_type):
  return lax.conv_general_dilated(
      x,
      w,
      stride,
      padding,
      dimension_numbers=NHWC_HWIO,
      precision=precision,
      preferred_element_type=preferred_element_type,
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def col2im_conv2d(
    x: jax.Array,
    w: jax.Array,
    stride: tuple[int, int],
    padding: tuple[tuple[int, int], tuple[int, int]],
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
  """XLA's 2-D convolution, with the input gradient as matrix product + col2im on the CPU.

  Args:
    x: input (N, H, W, C).
    w: filter (FH, FW, C, O), one feature group.
    stride: (sh, sw).
    padding: ((top, bottom), (left, right)).
    precision: `lax.Precision` of the convolution and of the gradients' products.
    preferred_element_type: result dtype of the forward convolution;
      gradients keep the dtypes of x and w.

  Returns:
    (N, OH, OW, O), exactly `lax.conv_general_dilated`'s output; the filter
    gradient is XLA's, the input gradient equal to XLA's up to the order of
    the floating-point sums (XLA's own on other backends).
  """
  return _xla_conv(x, w, stride, padding, precision, preferred_element_type)


def _forward(x, w, stride, padding, precision, preferred_element_type):
  return _xla_conv(x, w, stride, padding, precision, preferred_element_type), (x, w)


def _backward(stride, padding, precision, preferred_element_type, residuals, g):
  x, w = residuals
  conv = functools.partial(
      _xla_conv,
      stride=stride,
      padding=padding,
      precision=precision,
      preferred_element_type=preferred_element_type,
  )
  _, filter_vjp = jax.vjp(lambda kernel: conv(x, kernel), w)
  (dw,) = filter_vjp(g)

  def xla_input_gradient(g, w):
    _, input_vjp = jax.vjp(lambda image: conv(image, w), x)
    return input_vjp(g)[0]

  def col2im_input_gradient(g, w):
    fh, fw, c, o = w.shape
    g = g.astype(x.dtype)
    columns = lax.dot_general(
        g, w.astype(x.dtype).reshape(fh * fw * c, o), (((3,), (1,)), ((), ())), precision=precision
    )
    return col2im(columns, x.shape, (fh, fw), stride, padding)

  dx = cpu_or_default(g, w, cpu=col2im_input_gradient, default=xla_input_gradient)
  return dx.astype(x.dtype), dw.astype(w.dtype)


col2im_conv2d.defvjp(_forward, _backward)


def uses_col2im(
    kernel_size: Sequence[int], stride: Sequence[int], groups: int = 1, dilated: bool = False
) -> bool:
  """Whether conv_impl="col2im" computes a layer's input gradient by col2im (on the CPU).

  Args:
    kernel_size: (FH, FW).
    stride: (sh, sw).
    groups: feature groups (grouped convolutions stay XLA's).
    dilated: whether the layer has input or filter dilation (stays XLA's).

  Returns:
    True for ungrouped, undilated layers with a stride above 1 or a kernel of
    at least 5x5: where the measurements in the module docstring say it pays.
  """
  if groups != 1 or dilated:
    return False
  return max(stride) > 1 or kernel_size[0] * kernel_size[1] >= _LARGE_KERNEL_AREA


def col2im_conv_general_dilated(
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
  """`lax.conv_general_dilated`, with the col2im input gradient where `uses_col2im` says.

  Meant for ``flax.linen.Conv(..., conv_general_dilated=...)`` (conv_impl="col2im").
  Every call that is not a plain NHWC/HWIO 2-D convolution chosen by
  `uses_col2im` goes to `lax.conv_general_dilated` unchanged.

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
  xla = functools.partial(lax.conv_general_dilated, lhs, rhs, window_strides, padding, **arguments)
  if jnp.ndim(lhs) != 4 or jnp.ndim(rhs) != 4 or batch_group_count != 1 or out_sharding is not None:
    return xla()
  layouts = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  if layouts != lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC_HWIO):
    return xla()
  dilated = any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
  stride = tuple(int(s) for s in window_strides)
  if not uses_col2im(rhs.shape[:2], stride, feature_group_count, dilated):
    return xla()
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], stride, padding)
  padding = tuple((int(low), int(high)) for low, high in padding)
  if any(p < 0 for pair in padding for p in pair):  # negative padding crops: leave to XLA
    return xla()
  return col2im_conv2d(lhs, rhs, stride, padding, precision, preferred_element_type)
