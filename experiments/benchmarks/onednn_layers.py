"""One conv layer's forward, input gradient (dX) and weight gradient (dW): XLA's vs oneDNN.

    python experiments/benchmarks/onednn_layers.py
    python experiments/benchmarks/onednn_layers.py --kinds=depthwise

For the ungrouped layer shapes of LeNet-5, resnet20 and EfficientNet-Lite0
(64 px) at batch 128, times each pass alone under `jax.jit` with conv_impl
"col2im" (the col2im input gradient where `uses_col2im` says, XLA's
convolution otherwise: "auto" before oneDNN) and with oneDNN's kernels
(`cnn_jax.ops.onednn`); for EfficientNet-Lite0's depthwise layers, the
shifted sums (`cnn_jax.ops.depthwise_conv2d`) against oneDNN's depthwise
kernels. The two alternate over --rounds rounds; it prints a markdown row
per layer and pass with the median ms of each and the ratio. The
measurement behind the per-layer choice of conv_impl="auto"
(`cnn_jax.ops.auto_conv`). Results: experiments/benchmarks/README.md.
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from cnn_jax.ops import depthwise_conv2d
from cnn_jax.ops.col2im_conv import col2im_conv_general_dilated
from cnn_jax.ops.onednn import onednn_conv2d, onednn_depthwise_conv2d

_ROUNDS = flags.DEFINE_integer("rounds", 5, "alternating rounds per layer and pass")
_REPEATS = flags.DEFINE_integer("repeats", 10, "calls timed per round")
_KINDS = flags.DEFINE_list("kinds", ["dense"], "layer kinds to time: dense, depthwise")

LAYERS = [  # (name, input NHWC, filter HWIO, stride, padding)
    ("LeNet-5 C1", (128, 32, 32, 1), (5, 5, 1, 6), 1, 0),
    ("LeNet-5 C3", (128, 14, 14, 6), (5, 5, 6, 16), 1, 0),
    ("LeNet-5 C5", (128, 5, 5, 16), (5, 5, 16, 120), 1, 0),
    ("resnet20 stem", (128, 32, 32, 3), (3, 3, 3, 16), 1, 1),
    ("resnet20 3x3 16", (128, 32, 32, 16), (3, 3, 16, 16), 1, 1),
    ("resnet20 s2 16->32", (128, 32, 32, 16), (3, 3, 16, 32), 2, 1),
    ("resnet20 3x3 32", (128, 16, 16, 32), (3, 3, 32, 32), 1, 1),
    ("resnet20 s2 32->64", (128, 16, 16, 32), (3, 3, 32, 64), 2, 1),
    ("resnet20 3x3 64", (128, 8, 8, 64), (3, 3, 64, 64), 1, 1),
    ("Lite0 stem (64 px)", (128, 64, 64, 3), (3, 3, 3, 32), 2, 1),
    ("Lite0 1x1 96->24", (128, 16, 16, 96), (1, 1, 96, 24), 1, 0),
    ("Lite0 1x1 24->144", (128, 16, 16, 24), (1, 1, 24, 144), 1, 0),
    ("Lite0 1x1 672->192", (128, 2, 2, 672), (1, 1, 672, 192), 1, 0),
]

DEPTHWISE_LAYERS = [  # EfficientNet-Lite0's at 64 px: (name, input NHWC, filter, stride, padding)
    ("Lite0 dw 3x3 32", (128, 32, 32, 32), (3, 3, 1, 32), 1, 1),
    ("Lite0 dw 3x3 s2 96", (128, 32, 32, 96), (3, 3, 1, 96), 2, 1),
    ("Lite0 dw 3x3 144", (128, 16, 16, 144), (3, 3, 1, 144), 1, 1),
    ("Lite0 dw 5x5 s2 144", (128, 16, 16, 144), (5, 5, 1, 144), 2, 2),
    ("Lite0 dw 5x5 240", (128, 8, 8, 240), (5, 5, 1, 240), 1, 2),
    ("Lite0 dw 3x3 480", (128, 4, 4, 480), (3, 3, 1, 480), 1, 1),
    ("Lite0 dw 5x5 1152", (128, 2, 2, 1152), (5, 5, 1, 1152), 1, 2),
]


def _xla_col2im(x, w, stride, pad):
  return col2im_conv_general_dilated(
      x, w, (stride, stride), [(pad, pad)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC")
  )


def _onednn(x, w, stride, pad):
  return onednn_conv2d(x, w, (stride, stride), ((pad, pad), (pad, pad)))


def _shifted_sums(x, w, stride, pad):
  return depthwise_conv2d(x, w, (stride, stride), ((pad, pad), (pad, pad)))


def _onednn_depthwise(x, w, stride, pad):
  return onednn_depthwise_conv2d(x, w, (stride, stride), ((pad, pad), (pad, pad)))


def _passes(conv, stride, pad):
  """{pass name: jitted function of (x, w, g)} for one implementation."""

  def forward(x, w, g):
    del g
    return conv(x, w, stride, pad)

  def input_grad(x, w, g):
    return jax.vjp(lambda x: conv(x, w, stride, pad), x)[1](g)[0]

  def weight_grad(x, w, g):
    return jax.vjp(lambda w: conv(x, w, stride, pad), w)[1](g)[0]

  return {"forward": jax.jit(forward), "dX": jax.jit(input_grad), "dW": jax.jit(weight_grad)}


def _ms(function, args, repeats):
  start = time.perf_counter()
  for _ in range(repeats):
    out = function(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / repeats * 1e3


def _layer_rows(name, x_shape, w_shape, stride, pad, xla_conv, onednn_conv):
  x = jax.random.normal(jax.random.key(0), x_shape)
  w = jax.random.normal(jax.random.key(1), w_shape)
  g = jax.random.normal(jax.random.key(2), onednn_conv(x, w, stride, pad).shape)
  ours = _passes(xla_conv, stride, pad)
  theirs = _passes(onednn_conv, stride, pad)
  for pass_name in ours:
    a, b = ours[pass_name], theirs[pass_name]
    difference = jnp.max(jnp.abs(a(x, w, g) - b(x, w, g))) / jnp.max(jnp.abs(a(x, w, g)))
    times = {"a": [], "b": []}
    for _ in range(_ROUNDS.value):
      times["a"].append(_ms(a, (x, w, g), _REPEATS.value))
      times["b"].append(_ms(b, (x, w, g), _REPEATS.value))
    ta, tb = statistics.median(times["a"]), statistics.median(times["b"])
    row = f"| {name} | {pass_name} | {ta:.2f} | {tb:.2f} | {ta / tb:.2f}x"
    print(f"{row} | {float(difference):.1e} |", flush=True)


def main(argv):
  del argv
  print(
      "| layer | pass | col2im (dense) / shifted sums (depthwise) ms | oneDNN ms "
      "| oneDNN speed-up | rel. max diff |\n|---|---|--:|--:|--:|--:|"
  )
  if "dense" in _KINDS.value:
    for layer in LAYERS:
      _layer_rows(*layer, _xla_col2im, _onednn)
  if "depthwise" in _KINDS.value:
    for layer in DEPTHWISE_LAYERS:
      _layer_rows(*layer, _shifted_sums, _onednn_depthwise)


if __name__ == "__main__":
  app.run(main)
