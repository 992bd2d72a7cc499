"""2-D convolution whose backward pass is the one derived in the CNN lecture.

The forward pass is the usual deep-learning "convolution", i.e. a
cross-correlation of the (zero padded) input with the filter::

  O = X ⋆ W                      (stride S, zero padding P)

Instead of letting JAX differentiate it automatically, the backward pass is
written out with :func:`jax.custom_vjp`, using the two formulas of the
lecture:

* gradient w.r.t. the filter -- a correlation of the padded input with the
 upstream gradient (dilated by the stride when S > 1)::

   dE/dW = X_padded ⋆ dilate_S(dE/dO)

* gradient w.r.t. the input -- a *full* convolution of the (dilated) upstream
 gradient with the filter rotated by 180 degrees, after which the padding P is
 cut off again::

   dE/dX = crop_P( full_pad(dilate_S(dE/dO)) ⋆ rot180(W) )

 Rows / columns of the padded input that no forward window touched (they exist
 when (W - F + 2P) is not divisible by S) receive a zero gradient.

``lax.conv_general_dilated`` is only used as the primitive "correlate these
two arrays" operation (its ``lhs_dilation`` / ``rhs_dilation`` arguments insert
the zeros of ``dilate_S``); the backward never calls ``jax.vjp``/``jax.grad`` of
the forward.

Two public entry points:

* :func:`lecture_conv2d` -- NHWC input, HWIO filter, integer/tuple stride and
 padding.
* :func:`lecture_conv_general_dilated` -- a drop-in replacement for
 ``jax.lax.conv_general_dilated`` (2-D, NHWC/HWIO only) so that
 ``flax.linen.Conv(..., conv_general_dilated=lecture_conv_general_dilated)``
 trains with the lecture gradients.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.ops.conv_drop_in import (
    NHWC_HWIO,
    conv_general_dilated_from,
    normalize_padding,
    normalize_stride,
    output_size,
)

__all__ = ["lecture_conv2d", "lecture_conv_general_dilated"]


# --------------------------------------------------------------------------
# The custom-VJP core
# --------------------------------------------------------------------------
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _lecture_conv(x, w, strides, pads, precision, preferred_element_type):
  """O = X ⋆ W: correlation of the zero padded input with the filter."""
  return lax.conv_general_dilated(
      x,
      w,
      window_strides=strides,
      padding=pads,
      dimension_numbers=NHWC_HWIO,
      precision=precision,
      preferred_element_type=preferred_element_type,
  )


def _lecture_conv_fwd(x, w, strides, pads, precision, preferred_element_type):
  out = _lecture_conv(x, w, strides, pads, precision, preferred_element_type)
  # The lecture's backward formulas need exactly X (for dE/dW) and W (for dE/dX).
  return out, (x, w)


def _lecture_conv_bwd(strides, pads, precision, preferred_element_type, res, g):
  del preferred_element_type  # gradients are returned in the primal dtypes
  x, w = res
  sh, sw = strides
  (pt, pb), (pl, pr) = pads
  _, h, wd, _ = x.shape
  fh, fw, _, _ = w.shape
  _, rh = output_size(h, fh, pt, pb, sh)
  _, rw = output_size(wd, fw, pl, pr, sw)
  # Both formulas are correlations in the primal dtype (e.g. bfloat16 stays
  # bfloat16); the upstream gradient may come in a wider preferred dtype.
  g = g.astype(x.dtype)

  # ---------------- dE/dW = X_padded ⋆ dilate_S(dE/dO) ----------------
  # X_padded: the same zero padding P as in the forward pass.
  x_pad = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  # Drop the (W - F + 2P) mod S trailing rows/cols that no forward window
  # touched: they contribute nothing to dE/dW and would make the result
  # larger than F.
  x_pad = x_pad[:, : x_pad.shape[1] - rh, : x_pad.shape[2] - rw, :]
  # dE/dW[i, j, c, o] = sum_{n, p, q} X_pad[n, S*p + i, S*q + j, c] * dE/dO[n, p, q, o]
  # i.e. a correlation of X_pad with dE/dO dilated by S (rhs_dilation inserts
  # S-1 zeros between the dE/dO entries). The batch n is the summed
  # ("input feature") axis, so X is read as C-H-W-N and dE/dO as I-H-W-O; the
  # result comes out as H-W-(C as batch)-(O as feature) = HWIO.
  dw = lax.conv_general_dilated(
      x_pad,
      g,
      window_strides=(1, 1),
      padding="VALID",
      rhs_dilation=(sh, sw),
      dimension_numbers=("CHWN", "IHWO", "HWNC"),
      precision=precision,
  )

  # ------ dE/dX = crop_P( full(dilate_S(dE/dO)) ⋆ rot180(W) ) ------
  # rot180(W): flip both spatial axes and swap in/out channels, so the
  # filter maps the O gradient channels back to the C input channels.
  w_rot = jnp.flip(w, axis=(0, 1)).transpose(0, 1, 3, 2)
  # Full convolution: dilate dE/dO by S (lhs_dilation) and zero pad it by
  # F-1 on every side, then correlate with rot180(W). The result covers the
  # padded input X_pad except the untouched trailing rows/cols.
  dx_pad = lax.conv_general_dilated(
      g,
      w_rot,
      window_strides=(1, 1),
      padding=((fh - 1, fh - 1), (fw - 1, fw - 1)),
      lhs_dilation=(sh, sw),
      dimension_numbers=NHWC_HWIO,
      precision=precision,
  )
  # Rows/cols of X_pad never touched by a forward window get zero gradient.
  dx_pad = jnp.pad(dx_pad, ((0, 0), (0, rh), (0, rw), (0, 0)))
  # Cut the padding P off again: its gradient belongs to constant zeros.
  dx = dx_pad[:, pt : pt + h, pl : pl + wd, :]

  return dx.astype(x.dtype), dw.astype(w.dtype)


_lecture_conv.defvjp(_lecture_conv_fwd, _lecture_conv_bwd)


def _as_hashable_precision(precision: Any) -> Any:
  """custom_vjp's static arguments must be hashable; lists become tuples."""
  if isinstance(precision, list):
    return tuple(precision)
  return precision


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------
def lecture_conv2d(
    x: jax.Array,
    w: jax.Array,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | Sequence[Sequence[int]] = 0,
    *,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
  """2-D cross-correlation with the lecture's hand-derived backward pass.

  The forward pass is ``O = X ⋆ W`` with stride ``S`` and zero padding ``P``.
  Gradients (via :func:`jax.custom_vjp`) are
  ``dE/dW = X_padded ⋆ dilate_S(dE/dO)`` and
  ``dE/dX = crop_P(full_conv(dilate_S(dE/dO), rot180(W)))``.

  Args:
   x: Input of shape ``(N, H, W, C)`` (NHWC), floating dtype.
   w: Filter of shape ``(FH, FW, C, O)`` (HWIO). If its dtype differs from
    ``x`` both are computed in the promoted dtype; gradients are returned
    in the original dtypes.
   stride: Int or ``(sh, sw)``; the step of the sliding window.
   padding: Zero padding as an int (all sides), ``(ph, pw)`` (symmetric per
    axis) or ``((top, bottom), (left, right))``; must be non-negative.
   precision: Optional ``lax.Precision`` passed to every correlation.
   preferred_element_type: Optional accumulation/result dtype of the
    forward correlation (as in ``lax.conv_general_dilated``).

  Returns:
   The output ``(N, OH, OW, O)`` (NHWC) with
   ``OH = (H - FH + top + bottom) // sh + 1`` and likewise ``OW``.

  Raises:
   ValueError: On wrong ranks, mismatched channels, bad stride/padding or a
    filter larger than the padded input.
  """
  x = jnp.asarray(x)
  w = jnp.asarray(w)
  if x.ndim != 4 or w.ndim != 4:
    raise ValueError(
        f"lecture_conv2d expects x NHWC and w HWIO (rank 4), got shapes {x.shape} and {w.shape}"
    )
  if x.shape[3] != w.shape[2]:
    raise ValueError(f"input channels of x ({x.shape[3]}) and w ({w.shape[2]}) differ")
  strides = normalize_stride(stride)
  pads = normalize_padding(padding)
  # Validate that every spatial axis has at least one output position.
  for size, f, (lo, hi), s in zip(x.shape[1:3], w.shape[:2], pads, strides):
    output_size(size, f, lo, hi, s)

  # lax requires equal operand dtypes; compute in the promoted one and let
  # the casts' own VJP bring the gradients back to the original dtypes.
  dtype = jnp.result_type(x, w)
  if preferred_element_type is not None:
    preferred_element_type = np.dtype(preferred_element_type)
  return _lecture_conv(
      x.astype(dtype),
      w.astype(dtype),
      strides,
      pads,
      _as_hashable_precision(precision),
      preferred_element_type,
  )


lecture_conv_general_dilated = conv_general_dilated_from(
    lecture_conv2d, "lecture_conv_general_dilated"
)
lecture_conv_general_dilated.__doc__ = """lax.conv_general_dilated with the lecture's backward.

  Meant for ``flax.linen.Conv(..., conv_general_dilated=
  lecture_conv_general_dilated)``. Only the subset Flax needs for plain 2-D
  convolutions is supported: NHWC input, HWIO kernel, no dilation, no batch
  groups; feature groups (e.g. AlexNet's two towers) are split into
  independent :func:`lecture_conv2d` calls and concatenated.

  Args:
   lhs: Input ``(N, H, W, C)``.
   rhs: Kernel ``(FH, FW, C // feature_group_count, O)``.
   window_strides: ``(sh, sw)``.
   padding: ``'SAME'``, ``'VALID'`` (or any string ``lax.padtype_to_pads``
    accepts) or a sequence of two ``(lo, hi)`` pairs.
   lhs_dilation: Must be None or all ones.
   rhs_dilation: Must be None or all ones.
   dimension_numbers: Must describe NHWC/HWIO/NHWC (a
    ``lax.ConvDimensionNumbers`` or the tuple of layout strings). ``None``
    means lax's default NCHW/OIHW and is therefore rejected.
   feature_group_count: Number of channel groups; must divide ``C`` and
    ``O``.
   batch_group_count: Must be 1.
   precision: Passed to all correlations (forward and backward).
   preferred_element_type: Result dtype of the forward correlation;
    gradients keep the dtypes of ``lhs`` and ``rhs``.
   out_sharding: Must be None (accepted for signature compatibility).

  Returns:
   The output ``(N, OH, OW, O)``, as ``lax.conv_general_dilated`` returns.

  Raises:
   ValueError: Naming the unsupported argument (dilation, batch_group_count,
    dimension_numbers, out_sharding, feature_group_count, padding).
"""
