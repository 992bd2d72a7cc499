"""Claim 1: a convolutional net beats a fully connected one with fewer parameters.

    python experiments/fc_vs_conv/counts.py
    python -m launch.sweep --config=experiments/fc_vs_conv/config.py \
        --workdir_root=/tmp/fc_vs_conv --results_dir=experiments/fc_vs_conv \
        --curves=eval.accuracy --reach="eval.accuracy>=0.95"

LeCun et al. 1998's 300-100 fully connected net (`mlp`, 338,610 parameters)
against LeNet-5 (`lenet5_modern`, 61,706) on the digits at 32x32, with the
default recipe (configs/default.py: Adam 3e-3, cosine, 80 epochs, small
shifts and turns), 3 seeds each. Hardware: 2 CPU cores. Expected: about 4
minutes in all; mlp 98.6 ± 0.3%, lenet5_modern 99.5 ± 0.3% test accuracy
(experiments/fc_vs_conv/README.md).
"""

from cnn_jax.sweep import config_files


def get_config():
  config = config_files.load_config("configs/default.py")
  config.eval_every_epochs = 4  # a learning curve, and steps to 95% within 44 steps
  return config


def get_sweep(h):
  return h.product([h.sweep("model", ["mlp", "lenet5_modern"]), h.sweep("seed", [0, 1, 2])])
