"""One conv layer's training step (forward + both gradients): XLA's convolution vs im2col + GEMM.

    python experiments/benchmarks/conv_layers_cpu.py

For the layer shapes of LeNet-5 (C1, C3, C5) and of the CIFAR ResNets at
batch 128, times jit(grad(sum(conv(x, w)**2))) w.r.t. both x and w with
`lax.conv_general_dilated` and with `cnn_jax.ops.gemm_conv2d`, and prints
ms per step, the speed-up and the relative difference of the outputs. About
a minute on 2 CPU cores. Results: experiments/benchmarks/README.md.
"""

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.ops import gemm_conv2d

# (batch, size, in channels, out channels, kernel): LeNet's C1, C3, C5, then
# the 3x3 layers of the three stages of a CIFAR ResNet.
SHAPES = [
    (128, 32, 1, 6, 5),
    (128, 14, 6, 16, 5),
    (128, 5, 16, 120, 5),
    (128, 32, 16, 16, 3),
    (128, 16, 32, 32, 3),
    (128, 8, 64, 64, 3),
]


def xla_conv(x, w, padding):
  return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def ms_per_step(conv, x, w, steps=30):
  step = jax.jit(jax.grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=(0, 1)))
  jax.block_until_ready(step(x, w))
  start = time.perf_counter()
  for _ in range(steps):
    out = step(x, w)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / steps * 1000


def main():
  rng = np.random.default_rng(0)
  print(
      "| layer input | kernel | XLA ms | im2col+GEMM ms | speed-up | rel. diff |\n"
      "|---|---|--:|--:|--:|--:|"
  )
  for batch, size, cin, cout, k in SHAPES:
    x = jnp.asarray(rng.normal(size=(batch, size, size, cin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, cin, cout)), jnp.float32)
    pad = ((0, 0), (0, 0)) if k == 5 else ((1, 1), (1, 1))
    xla = functools.partial(xla_conv, padding=pad)
    gemm = functools.partial(gemm_conv2d, padding=pad)
    a, b = np.asarray(xla(x, w)), np.asarray(gemm(x, w))
    diff = np.abs(a - b).max() / np.abs(a).max()
    t_xla, t_gemm = ms_per_step(xla, x, w), ms_per_step(gemm, x, w)
    print(
        f"| {batch}x{size}x{size}x{cin} | {k}x{k}x{cin}x{cout} | {t_xla:.1f} | {t_gemm:.1f} | "
        f"{t_xla / t_gemm:.2f}x | {diff:.0e} |",
        flush=True,
    )


if __name__ == "__main__":
  main()
