"""Claim 8: training with the lecture's backward pass follows XLA's.

    python -m launch.sweep --config=experiments/lecture_backward/config.py \
        --workdir_root=/tmp/lecture_backward --results_dir=experiments/lecture_backward \
        --curves=train.loss
    python experiments/lecture_backward/compare.py --workdir_root=/tmp/lecture_backward \
        --out=experiments/lecture_backward

The default run (LeNet-5 on the digits, configs/default.py) with XLA's
convolution and with `conv_impl="lecture"` (cnn_jax/ops/lecture_conv.py: the
gradients written out as the lecture's two formulas, a correlation with the
upstream gradient for the filters and a full convolution with the flipped
filters for the input), 3 seeds each, the loss logged every 20 steps.
Hardware: 2 CPU cores. Expected: about 4 minutes in all; the two runs of each seed
identical (largest loss gap 0), at the same speed
(experiments/lecture_backward/README.md).
"""

from cnn_jax.sweep import config_files


def get_config():
  config = config_files.load_config("configs/default.py")
  config.model_kwargs = dict(conv_impl="xla")
  config.log_every_steps = 20
  config.eval_every_epochs = 8
  return config


def get_sweep(h):
  return h.product(
      [h.sweep("model_kwargs.conv_impl", ["xla", "lecture"]), h.sweep("seed", [0, 1, 2])]
  )
