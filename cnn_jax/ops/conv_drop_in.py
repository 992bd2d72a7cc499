"""What every `conv_impl` shares: its arguments, checked and normalized, and the drop-in.

`conv_general_dilated_from` turns a plain 2-D convolution (NHWC input, HWIO
filter, stride, padding) into a ``lax.conv_general_dilated`` drop-in for
``flax.linen.Conv(..., conv_general_dilated=...)``: it checks that the
call is a 2-D NHWC/HWIO convolution without dilation, resolves 'SAME' and
'VALID' into explicit pads and splits feature groups into separate calls.
The lecture's, the im2col + GEMM, the col2im and the depthwise convolutions
are all made this way.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# The one layout these convolutions take: batch-height-width-channel input,
# height-width-in-out filter (the Flax default).
NHWC_HWIO = ("NHWC", "HWIO", "NHWC")


def normalize_stride(stride: int | Sequence[int]) -> tuple[int, int]:
  """Turns ``stride`` (int or ``(sh, sw)``) into a ``(sh, sw)`` tuple of ints.

  Args:
    stride: a positive int, or a pair of them.

  Returns:
    (sh, sw).
  """
  if isinstance(stride, (int, np.integer)):
    strides = (int(stride), int(stride))
  else:
    strides = tuple(int(s) for s in stride)
  if len(strides) != 2 or any(s < 1 for s in strides):
    raise ValueError(f"stride must be a positive int or a pair of them, got {stride!r}")
  return strides  # type: ignore[return-value]


def normalize_padding(padding: Any) -> tuple[tuple[int, int], tuple[int, int]]:
  """Turns ``padding`` into ``((top, bottom), (left, right))``.

  Args:
    padding: an int (same on all four sides), ``(ph, pw)`` (symmetric per
      axis) or ``((top, bottom), (left, right))``; non-negative.

  Returns:
    ((top, bottom), (left, right)).
  """
  if isinstance(padding, (int, np.integer)):
    p = int(padding)
    pads = ((p, p), (p, p))
  else:
    items = tuple(padding)
    if len(items) != 2:
      raise ValueError(f"padding must have one entry per spatial axis, got {padding!r}")
    if all(isinstance(p, (int, np.integer)) for p in items):
      pads = tuple((int(p), int(p)) for p in items)
    else:
      pads = tuple(tuple(int(v) for v in p) for p in items)
      if any(len(p) != 2 for p in pads):
        raise ValueError(f"padding pairs must be (lo, hi), got {padding!r}")
  if any(v < 0 for pair in pads for v in pair):
    # Negative padding (cropping) is not part of the lecture's zero padding.
    raise ValueError(f"padding must be non-negative, got {padding!r}")
  return pads  # type: ignore[return-value]


def output_size(size: int, f: int, lo: int, hi: int, s: int) -> tuple[int, int]:
  """The output size along one axis, and the padded rows no window touches.

  Args:
    size: the input size.
    f: the filter size.
    lo: zero padding before the input.
    hi: zero padding after it.
    s: the stride.

  Returns:
    (output size, number of trailing padded rows no window touched).
  """
  padded = size + lo + hi
  if padded < f:
    raise ValueError(f"filter size {f} larger than padded input size {padded}")
  out = (padded - f) // s + 1
  # (W - F + 2P) mod S rows at the far end are skipped by the strided windows.
  untouched = (padded - f) % s
  return out, untouched


def _check_no_dilation(function: str, name: str, dilation: Sequence[int] | None) -> None:
  """Raises if ``dilation`` is anything but None or all ones."""
  if dilation is not None and any(int(d) != 1 for d in dilation):
    raise ValueError(f"{function} does not support {name} != 1 (dilation), got {tuple(dilation)}")


def _check_layout(
    name: str,
    lhs: jax.Array,
    rhs: jax.Array,
    lhs_dilation,
    rhs_dilation,
    dimension_numbers,
    batch_group_count: int,
    out_sharding,
) -> None:
  """Raises ValueError unless the arguments describe a plain NHWC/HWIO 2-D convolution."""
  if lhs.ndim != 4 or rhs.ndim != 4:
    raise ValueError(
        f"{name} supports only 2-D convolutions (rank-4 lhs/rhs), got {lhs.shape} and {rhs.shape}"
    )
  _check_no_dilation(name, "lhs_dilation", lhs_dilation)
  _check_no_dilation(name, "rhs_dilation", rhs_dilation)
  if batch_group_count != 1:
    raise ValueError(f"{name} does not support batch_group_count != 1, got {batch_group_count}")
  if out_sharding is not None:
    raise ValueError(f"{name} does not support out_sharding")
  # Compare the normalised dimension numbers: Flax passes a ConvDimensionNumbers,
  # users may pass layout strings; both must mean NHWC/HWIO/NHWC.
  dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  expected = lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC_HWIO)
  if dn != expected:
    raise ValueError(
        f"{name} supports only dimension_numbers NHWC/HWIO/NHWC, got {dimension_numbers!r}"
    )


def _strides_and_pads(lhs: jax.Array, rhs: jax.Array, window_strides, padding):
  """(stride pair, ((lo, hi), (lo, hi))) from lax's stride and padding arguments."""
  strides = normalize_stride(window_strides)
  if isinstance(padding, str):
    # Resolve 'SAME'/'VALID' to explicit (lo, hi) pairs exactly as lax does.
    pads = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
  else:
    pads = padding
    if len(tuple(pads)) != 2:
      raise ValueError(f"padding must have two (lo, hi) pairs, got {padding!r}")
  return strides, normalize_padding(tuple(tuple(int(v) for v in p) for p in pads))


def _checked_groups(
    name: str, lhs: jax.Array, rhs: jax.Array, feature_group_count: int, depthwise: bool
) -> int:
  """The feature group count, checked against the channels (and depthwise-only drop-ins)."""
  groups = int(feature_group_count)
  c, o = lhs.shape[3], rhs.shape[3]
  if groups < 1 or c % groups or o % groups or c // groups != rhs.shape[2]:
    raise ValueError(
        f"feature_group_count={feature_group_count} incompatible with lhs channels {c}, "
        f"rhs shape {rhs.shape}"
    )
  if depthwise and not (groups == c == o):
    raise ValueError(
        f"{name} computes depthwise convolutions only (feature_group_count = "
        f"input channels = output channels), got {feature_group_count} groups, "
        f"{c} input and {o} output channels"
    )
  return groups


def conv_general_dilated_from(
    conv2d: Callable[..., jax.Array], name: str, depthwise: bool = False
) -> Callable[..., jax.Array]:
  """A ``lax.conv_general_dilated`` drop-in for plain 2-D convolutions, computed by `conv2d`.

  The returned function checks and normalizes its arguments as described in
  :func:`cnn_jax.ops.lecture_conv_general_dilated` and runs
  ``conv2d(x, w, stride=, padding=, precision=, preferred_element_type=)``
  once per feature group. Every ``conv_impl`` that replaces XLA's
  convolution is made this way.

  Args:
   conv2d: the 2-D convolution (NHWC input, HWIO filter).
   name: the drop-in's name, quoted in its errors.
   depthwise: conv2d computes depthwise convolutions (one filter per
     channel, (KH, KW, 1, C)) in one call; then the drop-in accepts only
     feature_group_count equal to the channels.

  Returns:
   A function with the signature of ``lax.conv_general_dilated``.
  """

  def conv_general_dilated(
      lhs: jax.Array,
      rhs: jax.Array,
      window_strides: Sequence[int],
      padding: str | Sequence[tuple[int, int]],
      lhs_dilation: Sequence[int] | None = None,
      rhs_dilation: Sequence[int] | None = None,
      dimension_numbers: Any = None,
      feature_group_count: int = 1,
      batch_group_count: int = 1,
      precision: Any = None,
      preferred_element_type: Any = None,
      out_sharding: Any = None,
  ) -> jax.Array:
    lhs = jnp.asarray(lhs)
    rhs = jnp.asarray(rhs)
    _check_layout(
        name,
        lhs,
        rhs,
        lhs_dilation,
        rhs_dilation,
        dimension_numbers,
        batch_group_count,
        out_sharding,
    )
    strides, pads = _strides_and_pads(lhs, rhs, window_strides, padding)
    groups = _checked_groups(name, lhs, rhs, feature_group_count, depthwise)
    conv = functools.partial(
        conv2d,
        stride=strides,
        padding=pads,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    if groups == 1 or depthwise:
      return conv(lhs, rhs)
    # Grouped convolution: group g sees input channels [g*C/G, (g+1)*C/G) and
    # produces output channels [g*O/G, (g+1)*O/G) -- the same grouping lax uses.
    # Each group is an ordinary convolution; slicing/concatenation are
    # differentiated by JAX, the convolutions themselves by conv2d.
    xs = jnp.split(lhs, groups, axis=3)
    ws = jnp.split(rhs, groups, axis=3)
    return jnp.concatenate([conv(xg, wg) for xg, wg in zip(xs, ws)], axis=3)

  conv_general_dilated.__name__ = conv_general_dilated.__qualname__ = name
  return conv_general_dilated
