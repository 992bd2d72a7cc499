"""XLA:CPU finding 1: YNNPACK's convolutions run on one core.

    python experiments/benchmarks/upstream/ynn_convolutions_use_one_core.py

Times one 64->64 3x3 convolution (conv_timing.py) pinned to one core and to
two (taskset), with XLA's default (convolutions of more than 16 channels and
every filter gradient to YNNPACK) and with
--xla_cpu_experimental_ynn_fusion_type=-individual_convolution (convolutions
to Eigen). A library that uses both cores gets close to 2x from the second;
the YNNPACK rows get ~1.0x. Needs Linux (taskset) and at least 2 cores.
"""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
EIGEN = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
SETTINGS = {"XLA default (YNNPACK)": "", "convolutions to Eigen": EIGEN}


def timed(flags: str, cores: str) -> dict:
  command = ["taskset", "-c", cores, sys.executable, os.path.join(HERE, "conv_timing.py")]
  out = subprocess.run(
      command, env={**os.environ, "XLA_FLAGS": flags}, capture_output=True, text=True, check=True
  ).stdout
  return json.loads(out.strip().splitlines()[-1])


def main():
  print("| setting | pass | 1 core ms | 2 cores ms | speed-up |\n|---|---|---|---|---|")
  for name, flags in SETTINGS.items():
    one, two = timed(flags, "0"), timed(flags, "0,1")
    for key in ("forward_ms", "dx_ms", "dw_ms"):
      print(
          f"| {name} | {key[:-3]} | {one[key]:.1f} | {two[key]:.1f} | "
          f"{one[key] / two[key]:.2f}x |"
      )


if __name__ == "__main__":
  main()
