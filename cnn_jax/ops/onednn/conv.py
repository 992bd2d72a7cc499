"""2-D convolution computed by oneDNN's kernels (conv.cc, called through jax.ffi).

Forward, input gradient and weight gradient are three XLA custom calls tied
together by a `jax.custom_vjp`, so that `jax.grad` and `jax.jit` see one
differentiable convolution. Only float32, ungrouped, undilated 2-D
convolutions on the CPU go to oneDNN (`onednn_conv2d` refuses anything else;
`onednn_conv_general_dilated`, conv_impl="onednn", sends the rest to
`col2im_conv_general_dilated`). Under `jax.vmap` each pass is XLA's
convolution, vmapped (a `jax.custom_batching.custom_vmap` rule): the
kernels take one batch of images and one filter bank, and the vmapped uses
(per-example or per-column gradients) would otherwise run them once per
element. The passes' own derivatives (gradients of gradients) are XLA's
convolutions too.

The custom calls have no SPMD partitioning rule: on a mesh of several
devices XLA gathers their operands onto every device, so conv_impl="auto"
uses them only where JAX has one device.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_batching import custom_vmap

from cnn_jax.ops.col2im_conv import col2im_conv2d, col2im_conv_general_dilated
from cnn_jax.ops.conv_drop_in import NHWC_HWIO, conv_general_dilated_from, output_size
from cnn_jax.ops.onednn import build
from cnn_jax.ops.platforms import cpu_or_default

# FFI target name -> the handler's symbol in conv.cc.
_HANDLERS = {
    "cnn_jax_onednn_conv_forward": "CnnJaxOnednnConvForward",
    "cnn_jax_onednn_conv_input_grad": "CnnJaxOnednnConvInputGrad",
    "cnn_jax_onednn_conv_weight_grad": "CnnJaxOnednnConvWeightGrad",
}


@functools.cache
def _register() -> None:
  library = ctypes.cdll.LoadLibrary(str(build.extension_path()))
  for target, symbol in _HANDLERS.items():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)), "cpu")


def unavailable_reason() -> str | None:
  """None if oneDNN's convolutions can run here, else why not (one line).

  Builds the extension on first use (cached: `build.cache_folder()`).
  """
  try:
    _register()
  except build.OnednnUnavailable as error:
    return str(error)
  return None


def _ffi_call(target: str, shape: tuple[int, ...], a, b, strides, pads, groups) -> jax.Array:
  (top, bottom), (left, right) = pads
  return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(shape, jnp.float32))(
      a,
      b,
      stride_h=np.int64(strides[0]),
      stride_w=np.int64(strides[1]),
      pad_top=np.int64(top),
      pad_bottom=np.int64(bottom),
      pad_left=np.int64(left),
      pad_right=np.int64(right),
      groups=np.int64(groups),
  )


def _xla_pass(target: str, shape: tuple[int, ...], a, b, strides, pads, groups) -> jax.Array:
  """What the custom call `target` computes, written with XLA's convolution."""

  def conv(x, w):
    return lax.conv_general_dilated(
        x, w, strides, pads, dimension_numbers=NHWC_HWIO, feature_group_count=groups
    )

  if target == "cnn_jax_onednn_conv_forward":
    return conv(a, b)
  if target == "cnn_jax_onednn_conv_input_grad":  # a: the output's gradient, b: the filters
    return jax.linear_transpose(lambda x: conv(x, b), jax.ShapeDtypeStruct(shape, a.dtype))(a)[0]
  # The weight gradient; a: the input, b: the output's gradient.
  return jax.linear_transpose(lambda w: conv(a, w), jax.ShapeDtypeStruct(shape, a.dtype))(b)[0]


def _call(target: str, shape: tuple[int, ...], a, b, strides, pads, groups=1) -> jax.Array:
  """The custom call `target` on (a, b); vmapped or differentiated, XLA's equivalent pass."""
  _register()
  xla_pass = functools.partial(_xla_pass, target, shape, strides=strides, pads=pads, groups=groups)

  @custom_vmap
  def call(a, b):
    return _ffi_call(target, shape, a, b, strides, pads, groups)

  @call.def_vmap
  def _vmapped(axis_size, in_batched, a, b):
    del axis_size
    in_axes = tuple(0 if batched else None for batched in in_batched)
    return jax.vmap(xla_pass, in_axes=in_axes)(a, b), True

  # Every pass is bilinear in (a, b). Its tangent is written with XLA's
  # convolutions so that JAX can transpose it: gradients of gradients work.
  @jax.custom_jvp
  def differentiable(a, b):
    return call(a, b)

  @differentiable.defjvp
  def _tangent(primals, tangents):
    (a, b), (da, db) = primals, tangents
    return differentiable(a, b), xla_pass(da, b) + xla_pass(a, db)

  return differentiable(a, b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv(x, w, strides, pads, out_hw, input_grad, groups):
  shape = (x.shape[0], *out_hw, w.shape[3])
  return _call("cnn_jax_onednn_conv_forward", shape, x, w, strides, pads, groups)


def _conv_fwd(x, w, strides, pads, out_hw, input_grad, groups):
  return _conv(x, w, strides, pads, out_hw, input_grad, groups), (x, w)


def _conv_bwd(strides, pads, out_hw, input_grad, groups, residuals, g):
  del out_hw
  x, w = residuals
  if input_grad == "col2im":
    dx = jax.vjp(lambda x: col2im_conv2d(x, w, strides, pads), x)[1](g)[0]
  else:
    dx = _call("cnn_jax_onednn_conv_input_grad", x.shape, g, w, strides, pads, groups)
  dw = _call("cnn_jax_onednn_conv_weight_grad", w.shape, x, g, strides, pads, groups)
  return dx, dw


_conv.defvjp(_conv_fwd, _conv_bwd)


def _reached(size: int, kernel: int, lo: int, hi: int, stride: int) -> tuple[int, int, int]:
  """(output size, input rows the windows reach, the far padding they reach).

  oneDNN wants a geometry without rows that no strided window reaches: they
  are dropped from the far padding first, then from the input itself.
  """
  out, untouched = output_size(size, kernel, lo, hi, stride)
  dropped_padding = min(untouched, hi)
  return out, size - (untouched - dropped_padding), hi - dropped_padding


def onednn_conv2d(
    x: jax.Array,
    w: jax.Array,
    stride: tuple[int, int] = (1, 1),
    padding: Any = ((0, 0), (0, 0)),
    precision: Any = None,
    preferred_element_type: Any = None,
    input_grad: str = "onednn",
    groups: int = 1,
) -> jax.Array:
  """A 2-D convolution (NHWC input, HWIO filter) computed by oneDNN on the CPU.

  Args:
    x: float32 input, (N, H, W, C).
    w: float32 filters, (KH, KW, C, O).
    stride: (sh, sw).
    padding: ((top, bottom), (left, right)) zeros.
    precision: unused (oneDNN computes float32 in float32).
    preferred_element_type: None or float32.
    input_grad: how the input gradient is computed: "onednn", or "col2im"
      (`cnn_jax.ops.col2im_conv2d`'s, for the layers where that is faster;
      ungrouped layers only).
    groups: feature groups: w reads C / groups channels and writes
      O / groups per group.

  Returns:
    (N, OH, OW, O) float32, equal to `lax.conv_general_dilated` up to the
    order of the additions.

  Raises:
    ValueError: for other dtypes, or filters that do not fit x's channels in `groups`.
  """
  del precision
  if x.dtype != jnp.float32 or w.dtype != jnp.float32:
    raise ValueError(f"onednn_conv2d computes float32 only, got {x.dtype} and {w.dtype}")
  if preferred_element_type not in (None, jnp.float32):
    raise ValueError(f"onednn_conv2d returns float32, not {preferred_element_type}")
  if w.shape[2] * groups != x.shape[3] or w.shape[3] % groups:
    raise ValueError(
        f"filters {w.shape} in {groups} group(s) do not read the input's {x.shape[3]} channels"
    )
  if input_grad not in ("onednn", "col2im") or (input_grad == "col2im" and groups != 1):
    raise ValueError(f"input_grad must be 'onednn' or, ungrouped, 'col2im', not {input_grad!r}")
  (top, bottom), (left, right) = padding
  out_h, rows, bottom = _reached(x.shape[1], w.shape[0], top, bottom, stride[0])
  out_w, columns, right = _reached(x.shape[2], w.shape[1], left, right, stride[1])
  x = x[:, :rows, :columns, :]
  pads = ((top, bottom), (left, right))
  return _conv(x, w, tuple(stride), pads, (out_h, out_w), input_grad, groups)


def onednn_depthwise_conv2d(
    x: jax.Array,
    w: jax.Array,
    stride: tuple[int, int] = (1, 1),
    padding: Any = ((0, 0), (0, 0)),
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
  """A depthwise 2-D convolution (one filter per channel) computed by oneDNN on the CPU.

  Args:
    x: float32 input, (N, H, W, C).
    w: float32 filters, (KH, KW, 1, C).
    stride, padding, precision, preferred_element_type: as for `onednn_conv2d`.

  Returns:
    (N, OH, OW, C) float32.
  """
  return onednn_conv2d(x, w, stride, padding, precision, preferred_element_type, groups=x.shape[3])


onednn_depthwise_conv_general_dilated = conv_general_dilated_from(
    onednn_depthwise_conv2d, "onednn_depthwise_conv_general_dilated", depthwise=True
)


_DROP_INS = {
    input_grad: conv_general_dilated_from(
        functools.partial(onednn_conv2d, input_grad=input_grad), "onednn_conv_general_dilated"
    )
    for input_grad in ("onednn", "col2im")
}


def onednn_computes(lhs, rhs, dimension_numbers, arguments: dict) -> bool:
  """Whether oneDNN takes a call: a float32, ungrouped, undilated NHWC/HWIO 2-D convolution.

  Args:
    lhs, rhs, dimension_numbers: as for `lax.conv_general_dilated`.
    arguments: its other keyword arguments (lhs_dilation, rhs_dilation,
      feature_group_count, batch_group_count, preferred_element_type, out_sharding).

  Returns:
    True where `onednn_conv_general_dilated` runs oneDNN's kernels on the CPU.
  """
  if jnp.ndim(lhs) != 4 or jnp.ndim(rhs) != 4:
    return False
  layouts = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  dilations = (*(arguments["lhs_dilation"] or ()), *(arguments["rhs_dilation"] or ()))
  return (
      layouts == lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC_HWIO)
      and jnp.result_type(lhs) == jnp.result_type(rhs) == jnp.float32
      and arguments["preferred_element_type"] in (None, jnp.float32)
      and all(int(d) == 1 for d in dilations)
      and arguments["feature_group_count"] == arguments["batch_group_count"] == 1
      and arguments["out_sharding"] is None
  )


def onednn_conv_general_dilated(
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
    *,
    input_grad: str = "onednn",
) -> jax.Array:
  """`lax.conv_general_dilated` computed by oneDNN where it can be (conv_impl="onednn").

  Float32, ungrouped, undilated NHWC/HWIO 2-D convolutions run oneDNN's
  kernels on the CPU (`cnn_jax.ops.platforms.cpu_or_default`: other platforms lower
  `col2im_conv_general_dilated`); every other call (bfloat16, grouped,
  dilated, other layouts) goes to `col2im_conv_general_dilated` unchanged.

  Args:
    lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
    dimension_numbers, feature_group_count, batch_group_count, precision,
    preferred_element_type, out_sharding: as for `lax.conv_general_dilated`.
    input_grad: "onednn", or "col2im" for `col2im_conv2d`'s input gradient.

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
  auto = functools.partial(col2im_conv_general_dilated, **arguments)
  if not onednn_computes(lhs, rhs, dimension_numbers, arguments):
    return auto(lhs, rhs, window_strides, padding)
  onednn = functools.partial(_DROP_INS[input_grad], **arguments)
  return cpu_or_default(
      lhs,
      rhs,
      cpu=lambda x, w: onednn(x, w, window_strides, padding),
      default=lambda x, w: auto(x, w, window_strides, padding),
  )
