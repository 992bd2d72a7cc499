"""XLA:CPU finding 2: the filter gradient (dW) goes to YNNPACK, the slower library for it.

    python experiments/benchmarks/upstream/filter_gradient_backend.py

Times one 64->64 3x3 convolution's forward, dX and dW (conv_timing.py) with
XLA's default and with YNNPACK off (--xla_cpu_experimental_ynn_fusion_type=),
and, if PyTorch is installed, the same three passes in PyTorch (oneDNN), all
on this machine's cores. With the default, dW takes several times as long as
the forward pass and as PyTorch's dW.
"""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SETTINGS = {
    "XLA default (YNNPACK)": "",
    "XLA, YNNPACK off (Eigen)": "--xla_cpu_experimental_ynn_fusion_type=",
}


def torch_ms():
  try:
    import torch
  except ImportError:
    return None
  x = torch.randn(128, 64, 32, 32).contiguous(memory_format=torch.channels_last)
  w = (torch.randn(64, 64, 3, 3) * 0.05).contiguous(memory_format=torch.channels_last)
  g = torch.randn(128, 64, 32, 32).contiguous(memory_format=torch.channels_last)
  conv = torch.nn.functional.conv2d
  passes = {
      "forward_ms": lambda: conv(x, w, padding=1),
      "dx_ms": lambda: torch.ops.aten.convolution_backward(
          g, x, w, None, (1, 1), (1, 1), (1, 1), False, (0, 0), 1, (True, False, False)
      ),
      "dw_ms": lambda: torch.ops.aten.convolution_backward(
          g, x, w, None, (1, 1), (1, 1), (1, 1), False, (0, 0), 1, (False, True, False)
      ),
  }
  result = {}
  with torch.no_grad():
    for name, run in passes.items():
      run()
      start = time.perf_counter()
      for _ in range(20):
        run()
      result[name] = (time.perf_counter() - start) / 20 * 1e3
  return result


def print_table(rows):
  """A markdown table of {name: {forward_ms, dx_ms, dw_ms}}; a negative time was not taken."""
  print("| | forward ms | dX ms | dW ms |\n|---|--:|--:|--:|")
  for name, row in rows.items():
    cells = [
        f"{row[k]:.1f}" if row[k] >= 0 else "not timed" for k in ("forward_ms", "dx_ms", "dw_ms")
    ]
    print(f"| {name} | {' | '.join(cells)} |")


def main():
  rows = {}
  for name, flags in SETTINGS.items():
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "conv_timing.py")],
        env={**os.environ, "XLA_FLAGS": flags},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows[name] = json.loads(out.strip().splitlines()[-1])
  reference = torch_ms()
  if reference is not None:
    import torch

    rows[f"PyTorch {torch.__version__} (oneDNN)"] = reference
  print_table(rows)


if __name__ == "__main__":
  main()
