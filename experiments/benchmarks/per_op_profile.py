"""Where a training step's time goes, per op, in cnn_jax (XLA:CPU) and in PyTorch.

    python experiments/benchmarks/per_op_profile.py --model=resnet20
    python experiments/benchmarks/per_op_profile.py --model=lenet5_modern

Takes every convolution, batch norm and max pool of the model's training
forward pass at batch 128 (the convolutions from its jaxpr, the others from
`cnn_jax.introspection.recording_calls`), times each alone in both
frameworks on the same shapes, and sums per op:

- convolution forward, input gradient (dX) and filter gradient (dW): ours as
  the training step computes them (conv_impl="auto", under the model
  family's `cnn_jax.cpu_flags` setting); PyTorch's `conv2d` and
  `aten.convolution_backward`, channels_last;
- batch norm in training mode, forward + backward;
- max pooling, forward + backward.

"rest of the step" is the whole step (`cnn_jax.train.throughput` and an
eager PyTorch step, the ones compare_pytorch.py times) minus the parts: the
loss, the optimizer, ReLUs, adds, and what fusion gains or loses when the
parts run together. Prints a markdown table of ms per step and our / PyTorch.
"""

from __future__ import annotations

import functools
import os
import sys
import time

from absl import app, flags

from cnn_jax import cpu_flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_pytorch  # noqa: E402  (its --batch_size flag is this script's too)

_MODEL = flags.DEFINE_enum("model", "resnet20", ["resnet20", "lenet5_modern"], "model to profile")
_REPEATS = flags.DEFINE_integer("repeats", 10, "timed runs per op")


def ms(run, repeats):
  """Mean ms of `repeats` runs after two warm-up runs."""
  for _ in range(2):
    run()
  start = time.perf_counter()
  for _ in range(repeats):
    run()
  return (time.perf_counter() - start) / repeats * 1e3


def layers_of(name, batch):
  """The conv calls (lhs, rhs shapes, strides, padding, groups) and BN/pool input shapes."""
  import jax
  import jax.numpy as jnp

  from cnn_jax import introspection, layers, models

  spec = models.spec(name)
  # XLA's convolutions show in the jaxpr as conv_general_dilated with their
  # geometry; "auto"'s oneDNN custom calls would not. The shapes are the same.
  model = models.create(name, conv_impl="xla")
  x = jnp.zeros((batch, spec.image_size, spec.image_size, spec.channels))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x[:1]))

  def forward(v, x):
    return model.apply(
        v, x, train=True, rngs={"dropout": jax.random.key(0)}, mutable=["batch_stats"]
    )

  # One trace for both: a second trace of the same function would come from
  # JAX's cache without running the modules again.
  with introspection.recording_calls() as calls:
    jaxpr = jax.make_jaxpr(forward)(variables, x)
  convs = []

  def visit(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "conv_general_dilated":
        p = eqn.params
        convs.append(
            (
                eqn.invars[0].aval.shape,
                eqn.invars[1].aval.shape,
                p["window_strides"],
                tuple(tuple(pad) for pad in p["padding"]),
                p["feature_group_count"],
            )
        )
      for value in eqn.params.values():
        inner = getattr(value, "jaxpr", None)
        if inner is not None:
          visit(getattr(inner, "jaxpr", inner))

  visit(jaxpr.jaxpr)
  norms = [c.output.shape for c in calls if isinstance(c.module, flax_batch_norm())]
  pools = [(c.output.shape, c.module.window) for c in calls if isinstance(c.module, layers.MaxPool)]
  return convs, norms, pools, model


def flax_batch_norm():
  import flax.linen as nn

  return nn.BatchNorm


def jax_conv_ms(convs, repeats):
  import jax
  import jax.numpy as jnp

  from cnn_jax.ops import auto_conv_general_dilated

  totals = {"forward": 0.0, "dX": 0.0, "dW": 0.0}
  for lhs, rhs, stride, padding, groups in convs:
    x = jax.random.normal(jax.random.key(0), lhs)
    w = jax.random.normal(jax.random.key(1), rhs) * 0.1
    conv = functools.partial(
        auto_conv_general_dilated,
        window_strides=stride,
        padding=padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )
    g = jnp.ones(jax.eval_shape(conv, x, w).shape)
    passes = {
        "forward": jax.jit(conv),
        "dX": jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0]),
        "dW": jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0]),
    }
    for key, fn in passes.items():
      args = (x, w) if key == "forward" else (x, w, g)
      totals[key] += ms(lambda: jax.block_until_ready(fn(*args)), repeats)
  return totals


def torch_conv_ms(convs, repeats):
  import torch

  totals = {"forward": 0.0, "dX": 0.0, "dW": 0.0}
  cl = torch.channels_last
  for lhs, rhs, stride, padding, groups in convs:
    n, h, w_, c = lhs
    kh, kw, ci, o = rhs
    x = torch.randn(n, c, h, w_).contiguous(memory_format=cl)
    w = (torch.randn(o, ci, kh, kw) * 0.1).contiguous(memory_format=cl)
    # PyTorch pads symmetrically; ours are symmetric in these models.
    pad = (padding[0][0], padding[1][0])
    y = torch.nn.functional.conv2d(x, w, stride=stride, padding=pad, groups=groups)
    g = torch.ones_like(y).contiguous(memory_format=cl)
    args = (g, x, w, None, tuple(stride), pad, (1, 1), False, (0, 0), groups)
    with torch.no_grad():
      totals["forward"] += ms(
          lambda: torch.nn.functional.conv2d(x, w, stride=stride, padding=pad, groups=groups),
          repeats,
      )
      totals["dX"] += ms(
          lambda: torch.ops.aten.convolution_backward(*args, (True, False, False)), repeats
      )
      totals["dW"] += ms(
          lambda: torch.ops.aten.convolution_backward(*args, (False, True, False)), repeats
      )
  return totals


def jax_norm_and_pool_ms(norms, pools, repeats):
  import flax.linen as nn
  import jax
  import jax.numpy as jnp

  from cnn_jax import layers

  norm_ms = 0.0
  for shape in norms:
    module = nn.BatchNorm(use_running_average=False, momentum=0.9)
    x = jax.random.normal(jax.random.key(0), shape)
    v = module.init(jax.random.key(1), x)
    step = jax.jit(
        jax.grad(
            lambda p, x: jnp.sum(
                module.apply({**v, "params": p}, x, mutable=["batch_stats"])[0] ** 2
            ),
            argnums=(0, 1),
        )
    )
    norm_ms += ms(lambda: jax.block_until_ready(step(v["params"], x)), repeats)
  pool_ms = 0.0
  for shape, window in pools:
    module = layers.MaxPool(window)
    x = jax.random.normal(
        jax.random.key(0), (shape[0], shape[1] * window, shape[2] * window, shape[3])
    )
    step = jax.jit(jax.grad(lambda x: jnp.sum(module.apply({}, x) ** 2)))
    pool_ms += ms(lambda: jax.block_until_ready(step(x)), repeats)
  return norm_ms, pool_ms


def torch_norm_and_pool_ms(norms, pools, repeats):
  import torch

  cl = torch.channels_last
  norm_ms = 0.0
  for shape in norms:
    nd = len(shape)
    x = torch.randn(*((shape[0], shape[-1], *shape[1:-1]))).requires_grad_()
    if nd == 4:
      x = x.detach().contiguous(memory_format=cl).requires_grad_()
    bn = torch.nn.BatchNorm2d(shape[-1]) if nd == 4 else torch.nn.BatchNorm1d(shape[-1])

    def run():
      (bn(x) ** 2).sum().backward()

    norm_ms += ms(run, repeats)
  pool_ms = 0.0
  for shape, window in pools:
    k = window
    x = (
        torch.randn(shape[0], shape[3], shape[1] * k, shape[2] * k)
        .contiguous(memory_format=cl)
        .requires_grad_()
    )

    def run_pool():
      (torch.nn.functional.max_pool2d(x, k) ** 2).sum().backward()

    pool_ms += ms(run_pool, repeats)
  return norm_ms, pool_ms


def main(argv):
  del argv
  name, batch, repeats = _MODEL.value, compare_pytorch._BATCH.value, _REPEATS.value
  cpu_flags.apply(name)
  from cnn_jax import models
  from cnn_jax.train.throughput import train_step_benchmark

  spec = models.spec(name)

  convs, norms, pools, _ = layers_of(name, batch)
  ours_conv = jax_conv_ms(convs, repeats)
  theirs_conv = torch_conv_ms(convs, repeats)
  ours_norm, ours_pool = jax_norm_and_pool_ms(norms, pools, repeats)
  theirs_norm, theirs_pool = torch_norm_and_pool_ms(norms, pools, repeats)
  ours_step = 1e3 * batch / train_step_benchmark(name, batch, None, "float32", 20)["images_per_s"]
  theirs_step = compare_pytorch._torch_worker(
      {
          "name": name,
          "image_size": spec.image_size,
          "channels": spec.channels,
          "num_classes": spec.num_classes,
      },
      batch,
      "float32",
      20,
      3,
      compile_step=False,
      channels_last=True,
  )["ms_per_step"]
  rows = [
      (f"convolution forward ({len(convs)} layers)", ours_conv["forward"], theirs_conv["forward"]),
      ("convolution dX", ours_conv["dX"], theirs_conv["dX"]),
      ("convolution dW", ours_conv["dW"], theirs_conv["dW"]),
      (f"batch norm, forward + backward ({len(norms)})", ours_norm, theirs_norm),
      (f"max pool, forward + backward ({len(pools)})", ours_pool, theirs_pool),
  ]
  parts_ours = sum(r[1] for r in rows)
  parts_theirs = sum(r[2] for r in rows)
  rows.append(("rest of the step", ours_step - parts_ours, theirs_step - parts_theirs))
  rows.append(("whole training step", ours_step, theirs_step))
  print(f"\n{name}, batch {batch}, ms per step:\n")
  print("| op | cnn_jax (XLA:CPU) | PyTorch eager | ours / PyTorch | ours - PyTorch |")
  print("|---|--:|--:|--:|--:|")
  for label, ours, theirs in rows:
    if ours == theirs == 0:
      continue
    ratio = f"{ours / theirs:.2f}x" if theirs > 0 else "-"
    print(f"| {label} | {ours:.1f} | {theirs:.1f} | {ratio} | {ours - theirs:+.1f} |")


if __name__ == "__main__":
  app.run(main)
