"""Convolution as a matrix product (im2col + GEMM), the lecture's other view of a conv layer.

Every output position of a convolution is a dot product of the filter with
the input patch under it. Lay the patches out as the rows of one matrix
(``im2col``: N*OH*OW rows of FH*FW*C values) and the filters as the columns
of another (FH*FW*C x O), and the whole layer is one matrix product::

  O[n, i, j, :] = patches[n, i, j, :] @ W.reshape(FH*FW*C, O)

The patches are built from FH*FW strided slices of the padded input, so
JAX differentiates the layer by itself: the gradient w.r.t. the filter is
``patches^T @ dE/dO`` and the gradient w.r.t. the input scatters
``dE/dO @ W^T`` back through the slices (the col2im of the lecture).

One layer's training step alone is faster this way where XLA's CPU
convolution is weak (LeNet's C1 and C5) and slower on the 3x3 layers of the
CIFAR ResNets; whole training steps did not get faster
(experiments/benchmarks/README.md), so it is an option (conv_impl="gemm"),
not the default. The patch matrix costs FH*FW times the
input's memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from cnn_jax.ops.conv_drop_in import (
    conv_general_dilated_from,
    normalize_padding,
    normalize_stride,
    output_size,
)

__all__ = ["im2col", "gemm_conv2d", "gemm_conv_general_dilated"]


def im2col(
    x: jax.Array, kernel_size: Sequence[int], stride: int | Sequence[int] = 1, padding: Any = 0
) -> jax.Array:
  """The input patches under every window position, one row per position.

  Args:
    x: input (N, H, W, C).
    kernel_size: (FH, FW).
    stride: int or (sh, sw).
    padding: int, (ph, pw) or ((top, bottom), (left, right)) zero padding.

  Returns:
    (N, OH, OW, FH*FW*C), each row ordered like a flattened HWIO filter's
    first three axes (row of the window, column, channel).
  """
  (sh, sw), pads = normalize_stride(stride), normalize_padding(padding)
  fh, fw = kernel_size
  oh = output_size(x.shape[1], fh, *pads[0], sh)[0]
  ow = output_size(x.shape[2], fw, *pads[1], sw)[0]
  x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  slices = [
      x[:, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw, :]
      for i in range(fh)
      for j in range(fw)
  ]
  return jnp.concatenate(slices, axis=-1)


def gemm_conv2d(
    x: jax.Array,
    w: jax.Array,
    stride: int | Sequence[int] = 1,
    padding: Any = 0,
    *,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
  """2-D cross-correlation (a conv layer's forward pass) as im2col + one matrix product.

  Args:
    x: input (N, H, W, C).
    w: filter (FH, FW, C, O).
    stride: int or (sh, sw).
    padding: as in `im2col`.
    precision: `lax.Precision` of the matrix product.
    preferred_element_type: accumulation/result dtype of the product.

  Returns:
    (N, OH, OW, O), equal to `lax.conv_general_dilated` with NHWC/HWIO up to
    the order of the floating-point sums.
  """
  x, w = jnp.asarray(x), jnp.asarray(w)
  if x.ndim != 4 or w.ndim != 4 or x.shape[3] != w.shape[2]:
    raise ValueError(
        f"gemm_conv2d expects x NHWC and w HWIO with equal channels, got "
        f"shapes {x.shape} and {w.shape}"
    )
  dtype = jnp.result_type(x, w)
  fh, fw, c, o = w.shape
  patches = im2col(x.astype(dtype), (fh, fw), stride, padding)
  return lax.dot_general(
      patches,
      w.astype(dtype).reshape(fh * fw * c, o),
      (((3,), (0,)), ((), ())),
      precision=precision,
      preferred_element_type=preferred_element_type,
  )


# Drop-in for `lax.conv_general_dilated` (2-D, NHWC/HWIO, no dilation) by
# `gemm_conv2d`, for `flax.linen.Conv(..., conv_general_dilated=...)`; its
# arguments are checked as for `cnn_jax.ops.lecture_conv_general_dilated`.
gemm_conv_general_dilated = conv_general_dilated_from(gemm_conv2d, "gemm_conv_general_dilated")
