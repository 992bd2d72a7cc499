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

import jax
import ml_collections
from absl import flags
from ml_collections import config_flags

from cnn_jax import cli, cpu_flags, errors, models, tasks
from cnn_jax.sweep import config_files
from cnn_jax.train import config as config_lib
from cnn_jax.train import parallel, train_and_evaluate


class _ConfigFileParser(flags.ArgumentParser):
  """Loads --config=FILE.py[:ARG] through config_files, so that any mistake in the
  file (a syntax error, a name that moved, an exception in get_config) is one line.

  It replaces ml_collections' own parser of the flag, which lets some of these
  escape as tracebacks and puts others' tracebacks into the flag's message.
  """

  def flag_type(self) -> str:
    return "config object"

  def parse(self, path):
    file, _, arg = path.partition(":")
    try:
      config = config_files.get_config(file, arg)
    except (TypeError, ValueError) as e:
      # Only a bug in cnn_jax gets here (config_files reports the file's own
      # mistakes); absl would print a ValueError's message as a flag mistake.
      raise RuntimeError(f"a bug in cnn_jax while loading {path}: {e!r}") from e
    if not isinstance(config, ml_collections.ConfigDict):
      raise config_files.ConfigFileError(
          f"get_config() of the config file {file} returned {type(config).__name__}, not an "
          "ml_collections.ConfigDict; return the config (see configs/default.py)"
      )
    config.lock()  # an override of a field the config lacks is then an error
    return config


_CONFIG = config_flags.DEFINE_config_file("config", None, "training config file", lock_config=True)
flags.FLAGS["config"].parser = _ConfigFileParser()
_WORKDIR = flags.DEFINE_string("workdir", None, "folder for checkpoints and results")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 for multi-process runs"
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "number of processes")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "index of this process")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise errors.UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = _CONFIG.value
  cpu_flags.apply(config.model)  # before JAX starts its backend
  # Mistakes each process can see alone are reported before the processes
  # wait for each other, so that each one's log says what it died of.
  config_lib.validate(config)
  models.spec(config.model)
  parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  # Mistakes in the config, data or workdir are cnn_jax.errors.UserErrors:
  # cli.run prints them in one line.
  result = train_and_evaluate(config, _WORKDIR.value)
  if jax.process_count() > 1:
    # Every process computed the same eval; one line each lets a launcher
    # (and a test) check that they agree.
    metric = tasks.headline(config.get("task", "classification"))
    print(
        f"process {jax.process_index()} of {jax.process_count()} finished at step "
        f"{result['step']}: eval loss {result['loss']:.6f}, {metric} {result[metric]:.4f}"
    )


if __name__ == "__main__":
  cli.run(main)
