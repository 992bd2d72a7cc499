"""Training: `train_and_evaluate(config, workdir)` and its parts.

config.py       fields, defaults and checks of a training config
parallel.py     processes, devices, the data-parallel mesh
inputs.py       training data on the device or streamed by Grain; eval batches
steps.py        the jitted training and evaluation steps
state.py        TrainState: everything a run needs to continue exactly
optimizers.py   optax optimizers and learning-rate schedules from a config
checkpoints.py  orbax checkpoints: last K, best, unreadable ones moved aside
reporting.py    progress bar, TensorBoard, config/results JSON
run_record.py   which config fields a resume may change; refusing the others
train.py        the loop
throughput.py   timing of the training step (python -m cnn_jax.benchmark)
"""

from cnn_jax.errors import ConfigError
from cnn_jax.train.config import base_config
from cnn_jax.train.train import NonFiniteLossError, Preempted, train_and_evaluate

__all__ = ["ConfigError", "NonFiniteLossError", "Preempted", "base_config", "train_and_evaluate"]
