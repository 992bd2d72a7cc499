"""Claim 2: parameter sharing: a convolution vs a locally connected layer of the same shape.

    python experiments/parameter_sharing/counts.py
    python -m launch.sweep --config=experiments/parameter_sharing/config.py \
        --workdir_root=/tmp/parameter_sharing --results_dir=experiments/parameter_sharing \
        --curves=eval.accuracy --reach="eval.accuracy>=0.95"

The lecture's template with two 5x5 stages (8 and 16 filters, "same"
padding, 2x2 max pooling) and a linear output, on the digits at 16x16 (they
are 8x8, so nothing is lost): with shared weights (5,994 parameters) and
with every position's filter its own (`shared_weights=False`, flax's
ConvLocal: 261,642), 3 seeds each, the default recipe at half length (Adam
3e-3, cosine, 40 epochs, 1-pixel shifts, 10-degree turns). At 32x32 the
locally connected net has 1,046,538 parameters and takes 1.2 s per step on 2
cores, too slow for 3 seeds here. Hardware: 2 CPU cores. Expected: about 7
minutes in all; 98.6 ± 0.3% shared, 98.5 ± 0.4% locally connected, the latter
8x slower (experiments/parameter_sharing/README.md).
"""

from cnn_jax.sweep import config_files


def get_config():
  config = config_files.load_config("configs/default.py")
  config.model = "standard"
  config.model_kwargs = dict(
      widths=(8, 16), convs_per_stage=1, kernel_size=5, fc_widths=(), shared_weights=True
  )
  config.image_size = 16
  config.augment = "translate(pixels=1)|rotate(degrees=10)"
  config.num_epochs = 40
  config.eval_every_epochs = 2
  return config


def get_sweep(h):
  return h.product(
      [h.sweep("model_kwargs.shared_weights", [True, False]), h.sweep("seed", [0, 1, 2])]
  )
