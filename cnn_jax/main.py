"""Trains a model from a config file.

    python -m cnn_jax.main --config=configs/default.py --workdir=/tmp/lenet_digits
    python -m cnn_jax.main --config=configs/cifar10_resnet.py:56 --workdir=DIR \
        --config.optimizer.learning_rate=0.05

Re-running the same command resumes from the workdir's newest checkpoint.
Several processes (one per host) join with --coordinator_address,
--num_processes and --process_id; on TPU pods and under Slurm they find each
other without these flags.
"""

from __future__ import annotations

import sys

import jax
from absl import app, flags
from ml_collections import config_flags

from cnn_jax.data import DataError
from cnn_jax.geometry import GeometryError
from cnn_jax.models.registry import UnknownModelError
from cnn_jax.train import (ConfigError, NonFiniteLossError, parallel, reporting,
                           train_and_evaluate)
from cnn_jax.train.checkpoints import CheckpointError
from cnn_jax.transfer import StateDictError, WeightMismatchError
from cnn_jax.transfer.pretrained import PretrainedMismatchError

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config file",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "folder for checkpoints and results")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 for multi-process runs")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "number of processes")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "index of this process")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  reporting.quiet_logging()
  parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  try:
    result = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (ConfigError, DataError, CheckpointError, GeometryError, NonFiniteLossError,
          UnknownModelError, StateDictError, WeightMismatchError, PretrainedMismatchError,
          FileNotFoundError) as e:
    # Mistakes in the config or the data: one line that names the fix, no traceback.
    message = e.args[0] if isinstance(e, KeyError) else str(e)
    sys.exit(f"error: {message}")
  if jax.process_count() > 1:
    # Every process computed the same eval; one line each lets a launcher
    # (and a test) check that they agree.
    print(f"process {jax.process_index()} of {jax.process_count()} finished at step "
          f"{result['step']}: eval loss {result['loss']:.6f}, accuracy {result['accuracy']:.4f}")


if __name__ == "__main__":
  app.run(main)
