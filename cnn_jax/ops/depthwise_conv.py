"""Depthwise convolution as a sum of shifted, channel-scaled copies of the input.

A depthwise convolution (one kxk filter per channel, MobileNet's and
EfficientNet's middle layer) has no sum over input channels, so it is not a
matrix product at all: each output pixel is

  O[n, i, j, c] = sum_{a, b} X[n, s*i + a, s*j + b, c] * W[a, b, 0, c]

that is, k*k strided slices of the padded input, each scaled per channel and
added. Written that way XLA fuses it into elementwise loops, and JAX's autodiff
of slices and products gives the two gradients as the same kind of loops.

Why not XLA's own convolution: on the CPU XLA runs a grouped convolution with
one group per channel an order of magnitude slower than this form, forward
and backward (experiments/benchmarks/README.md has the measurements).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from cnn_jax.ops.conv_drop_in import conv_general_dilated_from

__all__ = ["depthwise_conv2d", "depthwise_conv_general_dilated"]


def depthwise_conv2d(
    x: jax.Array,
    w: jax.Array,
    stride: tuple[int, int] = (1, 1),
    padding: Any = ((0, 0), (0, 0)),
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
  """A depthwise 2-D convolution (one filter per input channel).

  Args:
    x: input, (N, H, W, C).
    w: filters, (KH, KW, 1, C): filter c sees channel c only.
    stride: (sh, sw).
    padding: ((top, bottom), (left, right)) zeros.
    precision: unused (elementwise products are exact in their dtype); kept
      for the signature of the other conv implementations.
    preferred_element_type: dtype of the result (default: x's).

  Returns:
    (N, OH, OW, C), equal to `lax.conv_general_dilated` with
    feature_group_count=C up to the order of the additions.

  Raises:
    ValueError: if w is not (KH, KW, 1, C) for x's C channels.
  """
  del precision
  channels = x.shape[-1]
  if w.shape[2] != 1 or w.shape[3] != channels:
    raise ValueError(
        f"depthwise_conv2d needs filters (KH, KW, 1, {channels}) for "
        f"{channels} channels, got {w.shape}"
    )
  (top, bottom), (left, right) = padding
  x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  kh, kw = w.shape[:2]
  sh, sw = stride
  out_h = (x.shape[1] - kh) // sh + 1
  out_w = (x.shape[2] - kw) // sw + 1
  # Accumulate in float32 at least, as XLA's convolution does for bfloat16.
  accumulate = jnp.promote_types(x.dtype, jnp.float32)
  out = jnp.zeros((x.shape[0], out_h, out_w, channels), accumulate)
  for a in range(kh):
    for b in range(kw):
      window = x[:, a : a + (out_h - 1) * sh + 1 : sh, b : b + (out_w - 1) * sw + 1 : sw, :]
      out = out + window.astype(accumulate) * w[a, b, 0].astype(accumulate)
  return out.astype(preferred_element_type or x.dtype)


depthwise_conv_general_dilated = conv_general_dilated_from(
    depthwise_conv2d, "depthwise_conv_general_dilated", depthwise=True
)
depthwise_conv_general_dilated.__doc__ = """lax.conv_general_dilated for depthwise convolutions.

  Meant for ``flax.linen.Conv(..., feature_group_count=C,
  conv_general_dilated=depthwise_conv_general_dilated)``: NHWC input, HWIO
  kernel (KH, KW, 1, C), no dilation. See `depthwise_conv2d`.
  """
