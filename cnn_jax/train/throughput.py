"""Throughput of the real training step and of the input paths (the library behind
`python -m cnn_jax.benchmark`; see that module's docstring for what is measured).

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

from cnn_jax import data, models, summary, tasks
from cnn_jax.data import augment, box_targets, on_device, pipeline, preprocess, sources
from cnn_jax.train import parallel, steps
from cnn_jax.train import state as state_lib
from cnn_jax.train.config import check_batch_divides


def synthetic_targets(
    spec: models.ModelSpec, batch_size: int, size: int, rng: np.random.Generator
) -> tuple[tasks.Task, dict[str, np.ndarray]]:
  """The task a model's family trains for, and random targets of its kind for a batch.

  Args:
    spec: the model's registry entry (its family's task and its classes).
    batch_size: examples.
    size: image height and width.
    rng: the random generator.

  Returns:
    (the task, {target name: array}): a label per image, a class per pixel,
    or one random box per image (padded as `box_targets` pads).
  """
  classes, kind = spec.num_classes, spec.family.task
  if kind == "segmentation":
    mask = rng.integers(0, classes, (batch_size, size, size)).astype(np.uint8)
    return tasks.Segmentation(classes), {"segmentation_mask": mask}
  if kind == "detection":
    # Two corners, sorted per coordinate: (ymin, xmin), then (ymax, xmax).
    corners = np.sort(rng.uniform(0, 1, (batch_size, 2, 2)), axis=1)
    shape = (batch_size, box_targets.MAX_OBJECTS)
    boxes, labels, valid = (
        np.zeros((*shape, 4), np.float32),
        np.zeros(shape, np.int32),
        np.zeros(shape, bool),
    )
    boxes[:, 0], labels[:, 0], valid[:, 0] = (
        corners.reshape(batch_size, 4),
        rng.integers(0, classes, batch_size),
        True,
    )
    return tasks.Detection(classes), {"boxes": boxes, "box_labels": labels, "box_valid": valid}
  labels = rng.integers(0, classes, batch_size).astype(np.int32)
  return tasks.Classification(), {"label": labels}


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
  task, targets = synthetic_targets(spec, batch_size, size, rng)
  batch = jax.device_put(
      {
          "image": rng.integers(0, 256, (batch_size, size, size, spec.channels), dtype=np.uint8),
          **targets,
      },
      parallel.batch_sharding(mesh),
  )
  totals = parallel.put_replicated(steps.empty_totals(task), mesh)
  step = steps.make_train_step(
      model, tx, mesh, input_transform=steps.InputTransform(dtype=jnp.dtype(dtype)), task=task
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


def _timed(next_batch, steps: int) -> float:
  """Seconds per batch after one warm-up batch (compilation excluded)."""
  jax.block_until_ready(next_batch(0))
  start = time.perf_counter()
  for step in range(1, steps + 1):
    out = next_batch(step)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / steps


def on_device_input(images, labels, batch_size: int, spec: str, mean, std):
  """A jitted (step -> normalized augmented batch) function over device arrays."""
  aug = augment.from_spec(spec)
  key = jax.random.key(0)

  order = on_device.epoch_order(key, 0, images.shape[0])  # as training: once per epoch

  @jax.jit
  def next_batch(step):
    batch = on_device.take_batch({"image": images, "label": labels}, order, step, batch_size)
    x, y = batch["image"], batch["label"]
    x = aug(jax.random.fold_in(key, step), preprocess.to_unit(x))
    return preprocess.standardize(x, mean, std), y

  return next_batch


def input_benchmarks(
    dataset: str = "digits",
    batch_size: int = 128,
    image_size: int | None = None,
    augment_spec: str = "crop(pad=4)|rotate(10)",
    num_steps: int = 50,
    worker_count: int = 0,
    resize: str = "bilinear",
    data_dir: str | None = None,
) -> list[dict]:
  """Images/s of the two input paths: the split on the device, and the Grain stream.

  Args:
    dataset: a dataset name as `cnn_jax.data.sources.load` takes it.
    batch_size: images per batch.
    image_size: the size images are brought to (None: 32).
    augment_spec: the on-device path's augmentation spec.
    num_steps: timed batches.
    worker_count: Grain worker processes.
    resize: "bilinear" or "pad", how images are brought to `image_size`.
    data_dir: TFDS data dir.

  Returns:
    One JSON-able result per path (see the module docstring).
  """
  image_size = image_size or 32
  split = data.as_numpy(dataset, "train", image_size, data_dir, resize)
  mean, std = preprocess.channel_stats(split["image"])
  images, labels = jnp.asarray(split["image"]), jnp.asarray(split["label"])
  results = []
  step_fn = on_device_input(images, labels, batch_size, augment_spec, mean, std)
  seconds = _timed(step_fn, num_steps)
  results.append(
      {
          "input": "on_device",
          "dataset": dataset,
          "augment": augment_spec,
          "batch_size": batch_size,
          "images_per_s": round(batch_size / seconds),
      }
  )

  source = sources.load(dataset, "train", data_dir)
  loader = iter(
      pipeline.train_loader(
          source,
          batch_size=batch_size,
          seed=0,
          image_size=image_size,
          resize=resize,
          worker_count=worker_count,
      )
  )
  seconds = _timed(lambda _: jax.device_put(next(loader)), num_steps)
  results.append(
      {
          "input": "grain_stream",
          "dataset": dataset,
          "resize": resize,
          "worker_count": worker_count,
          "batch_size": batch_size,
          "images_per_s": round(batch_size / seconds),
      }
  )
  return results
