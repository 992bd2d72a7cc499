"""XLA:CPU settings that train a model family fastest, applied by our entry points.

XLA:CPU hands convolutions to one of two libraries: YNNPACK (for layers of
more than 16 channels and every filter gradient) or Eigen.
YNNPACK's convolutions run on one core, and its filter gradients are slower
per core than oneDNN's (experiments/benchmarks/README.md). Which setting of
`--xla_cpu_experimental_ynn_fusion_type` trains fastest depends on the
network; each family's record (`cnn_jax.models.Family.xla_cpu_ynn_fusion`,
next to its class) holds what `python -m cnn_jax.benchmark` measured on a
2-core CPU (experiments/benchmarks/README.md, "XLA:CPU flags by model
family"): "" turns YNNPACK off, "-individual_convolution" sends convolutions
to Eigen and keeps YNNPACK's other fusions. Families not measured keep XLA's
default.

The setting is applied only when the backend will be the CPU, before JAX
starts it, and only when the user has not named the flag in XLA_FLAGS
(their choice always wins; `CNN_JAX_CPU_FLAGS=0` turns this off). Each
application is said once on stderr.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from cnn_jax import models

YNN_FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
# Packages that give JAX an accelerator backend (then the CPU is not the backend).
_ACCELERATOR_PACKAGES = (
    "jax_cuda12_plugin",
    "jax_cuda13_plugin",
    "jax_rocm60_plugin",
    "jax_rocm7_plugin",
    "libtpu",
)


def family(model_name: str) -> str:
  """The family of a zoo model: "resnet" for resnet20 and resnet50, "lenet" for lenet5."""
  return models.family(model_name).name


def _backend_is_cpu() -> bool:
  platforms = os.environ.get("JAX_PLATFORMS", "")
  if platforms:
    return platforms.split(",")[0].strip() == "cpu"
  return not any(importlib.util.find_spec(name) for name in _ACCELERATOR_PACKAGES)


def _backends_started() -> bool:
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top

  return xla_bridge.backends_are_initialized()


def apply(model_name: str) -> str | None:
  """Adds the measured XLA:CPU setting of `model_name`'s family to XLA_FLAGS.

  Call before anything runs on JAX (XLA reads XLA_FLAGS once, when the
  backend starts).

  Args:
    model_name: a zoo model name.

  Returns:
    The line said, or None when nothing was set: no measured setting for
    the family, the backend is not the CPU, the user named the flag or
    turned this off, or JAX had already started.
  """
  setting = models.family(model_name).xla_cpu_ynn_fusion
  if (
      setting is None
      or YNN_FUSION_FLAG in os.environ.get("XLA_FLAGS", "")
      or os.environ.get("CNN_JAX_CPU_FLAGS", "1") == "0"
      or not _backend_is_cpu()
      or _backends_started()
  ):
    return None
  flag = f"{YNN_FUSION_FLAG}={setting}"
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
  line = (
      f"XLA:CPU: {flag} for {family(model_name)} models (measured fastest, see "
      "experiments/benchmarks/README.md); name the flag in XLA_FLAGS or set "
      "CNN_JAX_CPU_FLAGS=0 to choose yourself"
  )
  print(line, file=sys.stderr)  # stdout may be data (predict's classes, benchmark's JSON)
  return line
