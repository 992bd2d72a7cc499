"""Throughput benchmarks (speed is measured here, never in tests).

    python -m cnn_jax.benchmark --model=resnet50 --batch_size=256 --image_size=224 \
        --dtype=bfloat16 --steps=50 --peak_tflops=989
    python -m cnn_jax.benchmark --input_only [--batch_size=128 --image_size=32]

The default mode times the real training step, the very function
`train_and_evaluate` runs (`cnn_jax.train.steps.make_train_step`: forward,
backward, SGD with momentum, running totals), over all devices, on a
synthetic uint8 batch already on the devices, so neither the host nor the
input pipeline is measured. It prints one JSON line: images/s, ms/step,
compile seconds and, given the accelerator's peak (--peak_tflops, per
device, e.g. 989 for an H100's dense bf16), the model FLOPs utilization.
Model FLOPs are 6 x MACs x batch per step (2 per MAC forward, twice that
backward), with the MACs of `cnn_jax.summary`.

`--input_only` measures how many images per second the input path delivers,
for the two paths a training run can take: the whole split held on the
device (batch gathered, augmented and normalized inside one jitted function)
and a Grain stream from the array_record files. Each prints one JSON line.
"""

from __future__ import annotations

import json
import time
from typing import Sequence

import jax
import jax.numpy as jnp
from absl import flags

from cnn_jax import cpu_flags, data, errors, layers
from cnn_jax.data import augment, on_device, pipeline, preprocess, sources
from cnn_jax.train.throughput import train_step_benchmark

_INPUT_ONLY = flags.DEFINE_bool("input_only", False, "benchmark the input pipelines only")
_MODEL = flags.DEFINE_string("model", None, "model name (training-step benchmark)")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "compute dtype")
_PEAK_TFLOPS = flags.DEFINE_float("peak_tflops", None, "peak TFLOP/s of one device, for the MFU")
_WARMUP = flags.DEFINE_integer("warmup_steps", 3, "untimed steps after compilation")
_CONV_IMPL = flags.DEFINE_enum(
    "conv_impl",
    None,
    list(layers.CONV_IMPLS),
    "convolution implementation (default: the model's, auto)",
)
_DATASET = flags.DEFINE_string("dataset", "digits", "dataset for --input_only")
_BATCH = flags.DEFINE_integer("batch_size", 128, "global batch size")
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", None, "image size (default: the model's; 32 for --input_only)"
)
_AUGMENT = flags.DEFINE_string(
    "augment", "crop(pad=4)|rotate(10)", "augmentation spec of the on-device path"
)
_STEPS = flags.DEFINE_integer("steps", 50, "timed steps (or batches with --input_only)")
_WORKERS = flags.DEFINE_integer("worker_count", 0, "Grain worker processes")
_RESIZE = flags.DEFINE_enum(
    "resize", "bilinear", ["bilinear", "pad"], "how --input_only brings images to --image_size"
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir")


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
  aug = augment.build(spec)
  key = jax.random.key(0)

  order = on_device.epoch_order(key, 0, images.shape[0])  # as training: once per epoch

  @jax.jit
  def next_batch(step):
    x, y = on_device.take_batch(images, labels, order, step, batch_size)
    x = aug(jax.random.fold_in(key, step), preprocess.to_unit(x))
    return preprocess.standardize(x, mean, std), y

  return next_batch


def input_benchmarks() -> list[dict]:
  """Images/s of the on-device path and of the Grain stream."""
  image_size = _IMAGE_SIZE.value or 32
  split = data.as_numpy(_DATASET.value, "train", image_size, _DATA_DIR.value, _RESIZE.value)
  mean, std = preprocess.channel_stats(split["image"])
  images, labels = jnp.asarray(split["image"]), jnp.asarray(split["label"])
  results = []
  step_fn = on_device_input(images, labels, _BATCH.value, _AUGMENT.value, mean, std)
  seconds = _timed(step_fn, _STEPS.value)
  results.append(
      {
          "input": "on_device",
          "dataset": _DATASET.value,
          "augment": _AUGMENT.value,
          "batch_size": _BATCH.value,
          "images_per_s": round(_BATCH.value / seconds),
      }
  )

  source = sources.load(_DATASET.value, "train", _DATA_DIR.value)
  loader = iter(
      pipeline.train_loader(
          source,
          batch_size=_BATCH.value,
          seed=0,
          image_size=image_size,
          resize=_RESIZE.value,
          worker_count=_WORKERS.value,
      )
  )
  seconds = _timed(lambda _: jax.device_put(next(loader)), _STEPS.value)
  results.append(
      {
          "input": "grain_stream",
          "dataset": _DATASET.value,
          "resize": _RESIZE.value,
          "worker_count": _WORKERS.value,
          "batch_size": _BATCH.value,
          "images_per_s": round(_BATCH.value / seconds),
      }
  )
  return results


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise errors.UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _INPUT_ONLY.value:
    for result in input_benchmarks():
      print(json.dumps(result))
    return
  if not _MODEL.value:
    raise errors.UserError(
        "give --model=NAME (one of cnn_jax.models.names()), "
        "or --input_only for the input pipelines"
    )
  cpu_flags.apply(_MODEL.value)  # before JAX starts: the setting a training run would get
  result = train_step_benchmark(
      _MODEL.value,
      _BATCH.value,
      _IMAGE_SIZE.value,
      _DTYPE.value,
      _STEPS.value,
      _WARMUP.value,
      _PEAK_TFLOPS.value,
      **({"conv_impl": _CONV_IMPL.value} if _CONV_IMPL.value else {}),
  )
  print(json.dumps(result))


if __name__ == "__main__":
  errors.run(main)
