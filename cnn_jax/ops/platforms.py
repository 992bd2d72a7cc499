"""A CPU-only computation next to a portable one, traced once where only the CPU can run.

`lax.platform_dependent` traces every branch it is given, and a gradient
traces every branch's derivative: a convolution whose CPU branch is oneDNN's
custom call and whose default branch is XLA's was traced twice, forward and
backward, in every layer. Where JAX has no backend but the CPU (the machines
this CPU code is written for), no other branch can ever be lowered, so
`cpu_or_default` traces the CPU branch alone.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.extend.backend
from jax import lax

__all__ = ["cpu_or_default", "cpu_only"]


def cpu_only() -> bool:
  """Whether the CPU is the only backend JAX has in this process.

  Returns:
    True when no accelerator backend is initialized (none installed, or
    JAX_PLATFORMS=cpu).
  """
  return set(jax.extend.backend.backends()) == {"cpu"}


def cpu_or_default(*operands: jax.Array, cpu: Callable, default: Callable) -> jax.Array:
  """`lax.platform_dependent(*operands, cpu=cpu, default=default)`, one trace on a CPU-only JAX.

  Args:
    *operands: the arrays both branches take.
    cpu: the computation for the CPU.
    default: the computation for every other platform.

  Returns:
    `cpu(*operands)` where the CPU is JAX's only backend; else the platform
    dependent choice, made when the computation is lowered.
  """
  if cpu_only():
    return cpu(*operands)
  return lax.platform_dependent(*operands, cpu=cpu, default=default)
