"""Claim 9: the model zoo table: parameters, MACs and training throughput of every model.

    python experiments/model_zoo/zoo_table.py --out=experiments/model_zoo

For every model of `cnn_jax.models.names()` at its paper's input size and
classes: parameters and multiply-accumulates per image (`cnn_jax.summary`),
and the images/s of the real training step on this machine
(`cnn_jax.train.throughput.train_step_benchmark`, float32, synthetic data on
the device, after compilation and one untimed step), batch 32 for the
32x32 designs and 8 for the ImageNet ones, so that a 2-core CPU gets through
all of them. resnet1202 is left out of the timing (its backward pass takes
minutes to trace). Writes zoo.md, zoo.csv and zoo.png (MACs against images/s).
Hardware: 2 CPU cores. Expected: about 15 minutes; results in
experiments/model_zoo/README.md. GPU numbers: experiments/benchmarks/.
"""

from __future__ import annotations

import csv
import os

import jax
from absl import app, flags

from cnn_jax import models, summary
from cnn_jax.train.throughput import train_step_benchmark

_OUT = flags.DEFINE_string("out", ".", "folder for zoo.md, zoo.csv and zoo.png")
_MODELS = flags.DEFINE_list("models", None, "these models only (default: all)")
_STEPS = flags.DEFINE_integer("steps", 2, "timed training steps per model")
_SMALL_BATCH = flags.DEFINE_integer("small_batch", 32, "batch of the 32x32 designs")
_LARGE_BATCH = flags.DEFINE_integer("large_batch", 8, "batch of the ImageNet designs")

_UNTIMED = ("resnet1202",)


def measure(name: str) -> dict:
  """Parameters, MACs and (unless untimed) CPU training throughput of one model."""
  spec = models.spec(name)
  shape = (spec.image_size, spec.image_size, spec.channels)
  counts = summary.summarize(models.create(name), shape)
  row = {
      "model": name,
      "input": "x".join(map(str, shape)),
      "params": counts.total_params,
      "macs": counts.total_macs,
      "batch": "",
      "images_per_s": "",
      "compile_s": "",
  }
  if name not in _UNTIMED:
    batch = _SMALL_BATCH.value if spec.image_size <= 64 else _LARGE_BATCH.value
    timing = train_step_benchmark(name, batch, None, "float32", _STEPS.value, warmup_steps=1)
    row.update(
        batch=batch, images_per_s=timing["images_per_s"], compile_s=timing["compile_seconds"]
    )
  print(row, flush=True)
  return row


def write_tables(rows: list[dict], out: str) -> None:
  """zoo.csv and zoo.md (the markdown table, with the machine it ran on)."""
  with open(os.path.join(out, "zoo.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  device = f"{jax.device_count()} x {jax.devices()[0].device_kind}"
  lines = [
      f"Training throughput on {device}, float32 (batch as listed).",
      "",
      "| model | input | parameters | MACs | batch | train images/s | compile s |",
      "|---|---|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    speed = f"{r['images_per_s']:,.1f}" if r["images_per_s"] != "" else "not timed"
    lines.append(
        f"| `{r['model']}` | {r['input']} | {r['params']:,} | "
        f"{_macs(r['macs'])} | {r['batch']} | {speed} | {r['compile_s']} |"
    )
  with open(os.path.join(out, "zoo.md"), "w") as f:
    f.write("\n".join(lines) + "\n")


def _macs(macs: int) -> str:
  return f"{macs / 1e9:.3f} G" if macs >= 1e8 else f"{macs / 1e6:.2f} M"


def plot(rows: list[dict], path: str) -> None:
  """MACs per image against training images/s, log-log, one labelled point per model."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  timed = [r for r in rows if r["images_per_s"] != ""]
  figure, axes = plt.subplots(figsize=(7, 5))
  axes.scatter(
      [r["macs"] for r in timed],
      [r["images_per_s"] for r in timed],
      s=[max(r["params"] / 1e6, 0.5) * 4 for r in timed],
      alpha=0.6,
  )
  for r in timed:
    axes.annotate(
        r["model"],
        (r["macs"], r["images_per_s"]),
        fontsize=7,
        xytext=(3, 3),
        textcoords="offset points",
    )
  axes.set_xscale("log")
  axes.set_yscale("log")
  axes.set_xlabel("multiply-accumulates per image")
  axes.set_ylabel("training images/s on this CPU (float32)")
  axes.set_title("every zoo model: cost vs speed (marker area ~ parameters)", fontsize=10)
  axes.grid(alpha=0.3, which="both")
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)


def main(argv):
  del argv
  names = _MODELS.value or models.names()
  unknown = [n for n in names if n not in models.names()]
  if unknown:
    raise app.UsageError(
        f"unknown model(s) {', '.join(unknown)}; known: " f"{', '.join(models.names())}"
    )
  os.makedirs(_OUT.value, exist_ok=True)
  rows = [measure(name) for name in names]
  write_tables(rows, _OUT.value)
  if any(r["images_per_s"] != "" for r in rows):
    plot(rows, os.path.join(_OUT.value, "zoo.png"))
  print(f"wrote zoo.md, zoo.csv, zoo.png in {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
