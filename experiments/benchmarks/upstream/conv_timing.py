"""Shared by the three reproductions: time one 2-D convolution's forward pass,
input gradient (dX) and filter gradient (dW) under the current XLA_FLAGS.

    python conv_timing.py  # one JSON line: ms per forward, dX, dW

Only jax and numpy; NHWC/HWIO float32, batch 128, 32x32, 64 -> 64 channels,
3x3, stride 1, SAME (a ResNet-20 stage-1 layer at batch 128).
"""

import json
import time

import jax
import jax.numpy as jnp


def conv(x, w):
  return jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )


def milliseconds(fn, *args, repeats=20):
  jax.block_until_ready(fn(*args))  # compile
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fn(*args))
  return (time.perf_counter() - start) / repeats * 1e3


def main():
  x = jax.random.normal(jax.random.key(0), (128, 32, 32, 64), jnp.float32)
  w = jax.random.normal(jax.random.key(1), (3, 3, 64, 64), jnp.float32) * 0.05
  g = jax.random.normal(jax.random.key(2), (128, 32, 32, 64), jnp.float32)
  forward = jax.jit(conv)
  input_grad = jax.jit(lambda x, w, g: jax.vjp(lambda v: conv(v, w), x)[1](g)[0])
  filter_grad = jax.jit(lambda x, w, g: jax.vjp(lambda v: conv(x, v), w)[1](g)[0])
  print(
      json.dumps(
          {
              "forward_ms": round(milliseconds(forward, x, w), 2),
              "dx_ms": round(milliseconds(input_grad, x, w, g), 2),
              "dw_ms": round(milliseconds(filter_grad, x, w, g), 2),
              "jax": jax.__version__,
          }
      )
  )


if __name__ == "__main__":
  main()
