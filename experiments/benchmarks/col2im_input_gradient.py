"""The input gradient (dX) of one conv layer: XLA's vs g @ W^T followed by col2im.

    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution \
        python experiments/benchmarks/col2im_input_gradient.py

col2im is the transpose of `cnn_jax.ops.gemm_conv.im2col` (jax.linear_transpose:
strided pads and adds, no scatter). Prints ms per dX for LeNet-5's C3/C5 and
resnet20's stride-2 and 3x3 layers at batch 128 (a markdown row each), after
checking that both give the same gradient. The measurement behind issue 18's
automatic col2im `conv_impl` (now `conv_impl="auto"`, cnn_jax.ops.col2im_conv).
"""

import time

import jax
import numpy as np

from cnn_jax.ops.gemm_conv import im2col

LAYERS = [  # (name, input NHWC, filter HWIO, stride, padding)
    ("C3", (128, 14, 14, 6), (5, 5, 6, 16), 1, 0),
    ("C5", (128, 5, 5, 16), (5, 5, 16, 120), 1, 0),
    ("res s2 16->32", (128, 32, 32, 16), (3, 3, 16, 32), 2, 1),
    ("res s2 32->64", (128, 16, 16, 32), (3, 3, 32, 64), 2, 1),
    ("res 3x3 32", (128, 16, 16, 32), (3, 3, 32, 32), 1, 1),
]


def milliseconds(f, *args, repeats=20):
  """Mean wall time of f(*args) after one warm-up call, in ms."""
  jax.block_until_ready(f(*args))
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(f(*args))
  return (time.perf_counter() - start) / repeats * 1e3


def input_gradients(x_shape, w_shape, stride, pad):
  """(x, w, g, XLA's dX function, g @ W^T + col2im's dX function) for one layer."""
  x = jax.random.normal(jax.random.key(0), x_shape)
  w = jax.random.normal(jax.random.key(1), w_shape) * 0.1

  def conv(x, w):
    return jax.lax.conv_general_dilated(
        x, w, (stride, stride), [(pad, pad), (pad, pad)], dimension_numbers=("NHWC", "HWIO", "NHWC")
    )

  g = jax.random.normal(jax.random.key(2), conv(x, w).shape)
  xla = jax.jit(lambda x, w, g: jax.vjp(lambda v: conv(v, w), x)[1](g)[0])
  cols_transposed = jax.linear_transpose(lambda v: im2col(v, w_shape[:2], stride, pad), x)

  def col2im(x, w, g):
    cols = g.reshape(-1, w_shape[3]) @ w.reshape(-1, w_shape[3]).T
    return cols_transposed(cols.reshape(*g.shape[:3], -1))[0]

  return x, w, g, xla, jax.jit(col2im)


for name, x_shape, w_shape, stride, pad in LAYERS:
  x, w, g, xla, col2im = input_gradients(x_shape, w_shape, stride, pad)
  np.testing.assert_allclose(xla(x, w, g), col2im(x, w, g), rtol=1e-3, atol=1e-3)
  print(f"| {name} | {milliseconds(xla, x, w, g):.1f} | {milliseconds(col2im, x, w, g):.1f} |")
