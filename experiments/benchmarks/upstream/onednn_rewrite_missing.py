"""XLA:CPU finding 3: the oneDNN convolution rewrite is not in the pip jaxlib.

    python experiments/benchmarks/upstream/onednn_rewrite_missing.py

Compiles one convolution with --xla_cpu_use_onednn=true and
--xla_cpu_experimental_onednn_custom_call=true and prints the instructions of
the optimized HLO that compute it. A jaxlib built with oneDNN support
rewrites the convolution into a `__onednn$convolution` custom call; the pip
jaxlib keeps XLA's own `convolution` (or a YNNPACK fusion): the flags are
accepted and change nothing.
"""

import os
import re

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_cpu_use_onednn=true"
    " --xla_cpu_experimental_onednn_custom_call=true"
).strip()

import jax  # noqa: E402  (XLA reads XLA_FLAGS when the backend starts)
import jax.numpy as jnp  # noqa: E402


def main():
  x = jnp.ones((8, 32, 32, 64), jnp.float32)
  w = jnp.ones((3, 3, 64, 64), jnp.float32)
  conv = jax.jit(
      lambda x, w: jax.lax.conv_general_dilated(
          x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
      )
  )
  hlo = conv.lower(x, w).compile().as_text()
  # Instructions only (the metadata names this file, whose name says onednn).
  instructions = [re.sub(r",? metadata=\{[^}]*\}", "", line).strip() for line in hlo.splitlines()]
  computing = re.compile(r"= .*(convolution|custom-call|fusion)\(")
  lines = [line for line in instructions if computing.search(line)]
  print(f"jax {jax.__version__}, XLA_FLAGS={os.environ['XLA_FLAGS']}")
  print("\n".join(lines))
  found = any("__onednn$" in line for line in instructions)
  print(f"oneDNN custom call in the optimized HLO: {found}")


if __name__ == "__main__":
  main()
