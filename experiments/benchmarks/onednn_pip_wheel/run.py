"""Can pip's oneDNN wheel carry issue 18's part 2? One conv layer through it, timed.

    pip install onednn==2026.1.0 onednn-devel==2026.1.0   # ~0.6 GB with its runtime
    python experiments/benchmarks/onednn_pip_wheel/run.py

Compiles conv.cpp (next to this file) against the wheel's headers and
library with g++, runs it on both cores and on one (taskset), with oneDNN
choosing its own layouts and with the NHWC/HWIO layouts an XLA custom call
receives, and prints a markdown table next to XLA's Eigen convolution and
PyTorch's (experiments/benchmarks/upstream/filter_gradient_backend.py's
rows) for the same layer.

What it shows (experiments/benchmarks/README.md): the wheel is oneDNN built
for SYCL (DNNL_CPU_RUNTIME=SYCL, TBB threads). Its CPU engine exists only
through an OpenCL CPU device, which the wheel's `intel-opencl-rt` dependency
provides but does not register (this script points OCL_ICD_FILENAMES at it),
and its convolutions run slower than XLA's Eigen path.
"""

import json
import os
import subprocess
import sys
import sysconfig
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "upstream"))
from filter_gradient_backend import SETTINGS, print_table, torch_ms  # noqa: E402


def build(prefix: str, folder: str) -> str:
  binary = os.path.join(folder, "conv")
  subprocess.run(
      [
          "g++",
          "-O2",
          "-std=c++17",
          os.path.join(HERE, "conv.cpp"),
          f"-I{prefix}/include",
          f"-L{prefix}/lib",
          "-ldnnl",
          # RPATH (not RUNPATH) so that libdnnl finds its own runtime (tbb, sycl).
          f"-Wl,--disable-new-dtags,-rpath,{prefix}/lib",
          "-o",
          binary,
      ],
      check=True,
  )
  return binary


def main():
  prefix = sysconfig.get_config_var("prefix")
  if not os.path.exists(os.path.join(prefix, "include", "oneapi", "dnnl", "dnnl.hpp")):
    sys.exit(
        "error: oneDNN headers not found; pip install onednn==2026.1.0 " "onednn-devel==2026.1.0"
    )
  env = {**os.environ, "OCL_ICD_FILENAMES": os.path.join(prefix, "lib", "libintelocl.so")}
  rows = {}
  with tempfile.TemporaryDirectory() as folder:
    binary = build(prefix, folder)
    unregistered = subprocess.run(
        [binary],
        capture_output=True,
        text=True,
        env={k: v for k, v in env.items() if k != "OCL_ICD_FILENAMES"},
    )
    print(
        f"without OCL_ICD_FILENAMES: exit {unregistered.returncode}, "
        f"{(unregistered.stderr.strip().splitlines() or [''])[-1]}"
    )
    for cores in ("0,1", "0"):
      for layouts in ("any", "nhwc"):
        out = subprocess.run(
            ["taskset", "-c", cores, binary, layouts],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout
        row = json.loads(out.strip().splitlines()[-1])
        name = f"pip oneDNN, {layouts} layouts, {len(cores.split(','))} core(s)"
        rows[name] = row
        print(f"{name}: {row['forward_impl']} / {row['dx_impl']} / {row['dw_impl']}")
  eigen = "XLA, YNNPACK off (Eigen)"
  out = subprocess.run(
      [sys.executable, os.path.join(HERE, "..", "upstream", "conv_timing.py")],
      env={**os.environ, "XLA_FLAGS": SETTINGS[eigen]},
      capture_output=True,
      text=True,
      check=True,
  ).stdout
  rows[eigen] = json.loads(out.strip().splitlines()[-1])
  reference = torch_ms()
  if reference is not None:
    import torch

    rows[f"PyTorch {torch.__version__} (its own oneDNN, OpenMP)"] = reference
  print_table(rows)


if __name__ == "__main__":
  main()
