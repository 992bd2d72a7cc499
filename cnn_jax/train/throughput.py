"""Throughput of the real training step (the library behind `python -m cnn_jax.benchmark`).

Kept apart from the command line so that programs and tests can call it
without defining absl flags.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnn_jax import models, summary
from cnn_jax.train import parallel, steps
from cnn_jax.train import state as state_lib
from cnn_jax.train.config import check_batch_divides


def train_step_benchmark(
    name: str,
    batch_size: int,
    image_size: int | None,
    dtype: str,
    num_steps: int,
    warmup_steps: int = 3,
    peak_tflops: float | None = None,
    **model_kwargs,
) -> dict:
  """Times the training step of a model on synthetic data on the devices.

  Args:
    name: a model name (cnn_jax.models.names()).
    batch_size: global batch, split over all devices.
    image_size: input size (None: the model's own).
    dtype: "float32" or "bfloat16" compute.
    num_steps: timed steps.
    warmup_steps: untimed steps run after compilation.
    peak_tflops: one device's peak TFLOP/s for the MFU (None: no MFU).
    **model_kwargs: model overrides, e.g. conv_impl="xla".

  Returns:
    The JSON-able result (see the module docstring).
  """
  spec = models.spec(name)
  size = image_size or spec.image_size
  model = models.create(name, dtype=jnp.dtype(dtype), **model_kwargs)
  mesh = parallel.make_mesh()
  check_batch_divides(batch_size, mesh.size)
  tx = optax.sgd(0.01, momentum=0.9)
  state = jax.jit(
      functools.partial(state_lib.create, model, tx, (1, size, size, spec.channels), 0, False),
      out_shardings=parallel.replicated(mesh),
  )()
  rng = np.random.default_rng(0)
  batch = jax.device_put(
      {
          "image": rng.integers(0, 256, (batch_size, size, size, spec.channels), dtype=np.uint8),
          "label": rng.integers(0, spec.num_classes, batch_size).astype(np.int32),
      },
      parallel.batch_sharding(mesh),
  )
  totals = parallel.put_replicated(steps.empty_totals(), mesh)
  step = steps.make_train_step(
      model, tx, mesh, input_transform=steps.InputTransform(dtype=jnp.dtype(dtype))
  )

  start = time.perf_counter()
  compiled = step.lower(state, totals, batch).compile()
  compile_seconds = time.perf_counter() - start
  for _ in range(warmup_steps):
    state, totals = compiled(state, totals, batch)
  jax.block_until_ready(totals)
  start = time.perf_counter()
  for _ in range(num_steps):
    state, totals = compiled(state, totals, batch)
  jax.block_until_ready(totals)
  seconds = (time.perf_counter() - start) / num_steps

  flops = 6 * summary.summarize(model, (size, size, spec.channels)).total_macs * batch_size
  result = {
      "model": name,
      "batch_size": batch_size,
      "image_size": size,
      "dtype": dtype,
      **model_kwargs,
      "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
      "images_per_s": round(batch_size / seconds, 1),
      "ms_per_step": round(1000 * seconds, 3),
      "compile_seconds": round(compile_seconds, 2),
      "model_tflops_per_step": round(flops / 1e12, 6),
      "mfu": None,
  }
  if peak_tflops:
    # Four significant digits: on a CPU the MFU is about 0.002, which four
    # decimals would round by up to 2.5%.
    result["mfu"] = float(f"{flops / seconds / (peak_tflops * 1e12 * jax.device_count()):.4g}")
  return result
