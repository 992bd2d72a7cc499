"""Shared test setup: JAX on the CPU, quick compiles, cached abstract models.

The suite is dominated by XLA compile time, not by arithmetic, so the tests
compile with LLVM's optimizations off (results are the same, the machine
code is slower) and build parameters on the host instead of compiling
initializers.
"""

import functools
import math
import os
import tempfile

from helpers import QUICK_COMPILE_XLA_FLAGS

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Datasets the tests prepare (digits, MNIST) go to a fresh folder, never to
# ~; one folder for both pytest-xdist workers of a run, so that MNIST is
# prepared once (preparation takes a file lock: cnn_jax.data.preparation).
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
if _RUN:
  os.environ["TFDS_DATA_DIR"] = os.path.join(tempfile.gettempdir(), f"cnn_jax_tfds_{_RUN}")
  os.makedirs(os.environ["TFDS_DATA_DIR"], exist_ok=True)
else:
  os.environ["TFDS_DATA_DIR"] = tempfile.mkdtemp(prefix="cnn_jax_tfds_")
# XLA:CPU's newer fusion emitters take more than twice as long to compile the
# zoo's training steps as its older emitters; the tests compile far more than
# they run, so they use the older ones, at LLVM's level 0
# (helpers.QUICK_COMPILE_XLA_FLAGS). With both of these settings and LLVM's
# module split into parts compiled in parallel (XLA's default), some programs
# compute wrong numbers (jax 0.10.2): the tiny config's second update had
# conv gradients off by up to 37%, where either setting alone, XLA's
# defaults and more devices agreed to 1e-6. One part keeps them right and
# compiles no slower here.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), *QUICK_COMPILE_XLA_FLAGS]
).strip()
# Our CLIs pick an XLA:CPU convolution library per model family
# (cnn_jax.cpu_flags) before JAX starts; a test's own process has started JAX
# already and cannot follow. Many tests compare a CLI run with an in-process
# one, so both use XLA's default here; tests/test_cpu_flags.py tests the
# setting itself.
os.environ["CNN_JAX_CPU_FLAGS"] = "0"
# Many tests train the same tiny configs in subprocesses (resume, signals,
# sweeps); XLA's persistent cache lets them share compiled programs (of 1 s
# or more to compile), within a run and across the two workers.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"cnn_jax_tests_xla_cache_{os.getuid()}"),
)
# JAX caches only programs that took a second or more to compile; at LLVM's
# level 0 the tiny config's steps take less, and each of the suite's many
# subprocess runs compiled them again.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# Subprocesses import this checkout's cnn_jax: `python experiments/x/y.py`
# puts only the script's folder on sys.path, and would otherwise import
# whichever cnn_jax is installed.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["PYTHONPATH"] = os.pathsep.join([_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from cnn_jax import models  # noqa: E402


def abstract_init(name: str, image_size: int | None = None, batch: int = 1, **overrides):
  """(variables, logits) of a model as ShapeDtypeStructs (nothing computed)."""
  # One cache entry per model and size, however the call spells the defaults.
  return _abstract_init(name, image_size or models.spec(name).image_size, batch, **overrides)


@functools.cache
def _abstract_init(name: str, image_size: int, batch: int, **overrides):
  spec = models.spec(name)
  model = models.create(name, **overrides)
  x = jnp.zeros((batch, image_size, image_size, spec.channels))
  return jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x))[::-1]


def abstract_variables(name: str, image_size: int | None = None, **overrides):
  """Shapes of a model's variables from `jax.eval_shape`."""
  return abstract_init(name, image_size, **overrides)[0]


def random_variables(abstract, seed: int = 0):
  """Concrete variables for abstract ones, drawn on the host (no compile).

  Kernels get N(0, 1/fan_in) so that deep nets without batch norm keep
  activations of order one; biases zero; batch-norm scales and variances one.
  """
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = getattr(path[-1], "key", "")
    if name in ("scale", "var"):
      return np.ones(leaf.shape, leaf.dtype)
    if name in ("bias", "mean") or len(leaf.shape) < 2:
      return (
          np.zeros(leaf.shape, leaf.dtype)
          if name != "coefficient"
          else np.full(leaf.shape, 0.25, leaf.dtype)
      )
    fan_in = math.prod(leaf.shape[:-1])
    return (rng.standard_normal(leaf.shape) / math.sqrt(fan_in)).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, abstract)


# With --dist loadfile (pyproject.toml) the suite lasts as long as its busier
# worker. Handing out the longest files first (longest-processing-time
# scheduling: each worker takes the next file when it is done) leaves only
# short files for the end, so the two workers finish close together. Longest
# first, from a cold run on 2 cores; files not listed follow, in their order.
LONGEST_FILES = (
    "tests/experiments/test_experiments_scenes.py",
    "tests/models/test_models.py",
    "tests/experiments/test_experiments_mnist.py",
    "tests/experiments/test_experiments.py",
    "tests/train/test_train.py",
    "tests/test_interrupts.py",
    "tests/experiments/test_experiments_imagenet.py",
    "tests/transfer/test_imagenet_weights.py",
    "tests/visualize/test_visualize.py",
    "tests/train/test_sdlm.py",
    "tests/data/test_mnist.py",
    "tests/transfer/test_torchvision_weights.py",
    "tests/sweep/test_sweep.py",
    "tests/test_readme.py",
    "tests/test_reliability.py",
    "tests/ops/test_depthwise_conv.py",
    "tests/data/test_augment_targets.py",
    "tests/transfer/test_finetune.py",
    "tests/train/test_run_record.py",
    "tests/data/test_datasets.py",
    "tests/models/test_segmentation_models.py",
    "tests/ops/test_tiled_max_pool.py",
    "tests/data/test_augment.py",
    "tests/train/test_segmentation_run.py",
    "tests/test_hostile_files.py",
    "tests/test_fork_server.py",
)


def pytest_collection_modifyitems(config, items):
  del config
  rank = {path: i for i, path in enumerate(LONGEST_FILES)}
  items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
