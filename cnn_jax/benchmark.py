"""Throughput benchmarks (speed is measured here, never in tests).

    python -m cnn_jax.benchmark --model=resnet50 --batch_size=256 --image_size=224 \
        --dtype=bfloat16 --steps=50 --peak_tflops=989
    python -m cnn_jax.benchmark --input_only [--batch_size=128 --image_size=32]

The default mode times the real training step, the very function
`train_and_evaluate` runs (`cnn_jax.train.steps.make_train_step`: forward,
backward, SGD with momentum, running totals), over all devices, on a
synthetic uint8 batch already on the devices (with random targets of the
model's task: labels, per-pixel classes or one box per image), so neither the host nor the
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
from typing import Sequence

from absl import flags

from cnn_jax import cli, cpu_flags, errors, layers
from cnn_jax.train import throughput

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


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise errors.UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _INPUT_ONLY.value:
    results = throughput.input_benchmarks(
        _DATASET.value,
        _BATCH.value,
        _IMAGE_SIZE.value,
        _AUGMENT.value,
        _STEPS.value,
        _WORKERS.value,
        _RESIZE.value,
        _DATA_DIR.value,
    )
    for result in results:
      print(json.dumps(result))
    return
  if not _MODEL.value:
    raise errors.UserError(
        "give --model=NAME (one of cnn_jax.models.names()), "
        "or --input_only for the input pipelines"
    )
  cpu_flags.apply(_MODEL.value)  # before JAX starts: the setting a training run would get
  result = throughput.train_step_benchmark(
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
  cli.run(main)
