"""Claim 6: raw pixels vs mean subtraction vs per-channel normalization.

    python -m launch.sweep --config=experiments/preprocessing/config.py \
        --workdir_root=/tmp/preprocessing --results_dir=experiments/preprocessing \
        --curves=train.loss --curves=eval.accuracy --reach="eval.accuracy>=0.95" \
        --reach="train.loss<=0.02"
    python -m launch.sweep --config=experiments/preprocessing/config.py:fashion_mnist \
        --workdir_root=/tmp/preprocessing_fashion_mnist \
        --results_dir=experiments/preprocessing/fashion_mnist \
        --curves=train.loss --curves=eval.accuracy --reach="train.loss<=0.5" \
        --reach="train.loss<=0.35" --baseline=normalize=none

The network and recipe of the activations experiment (LeNet-5-sized
template with ReLU, plain SGD with momentum 0.9 at 0.01, no augmentation,
400 steps, eval every 10) on the digits at 32x32, fed raw pixels in [0, 1]
(`normalize="none"`), pixels minus the training mean ("center"), or
standardized by the training mean and standard deviation ("standardize",
the default); 3 seeds each. Hardware: 2 CPU cores. Expected: about 5
minutes in all; training loss 0.02 after about 140 steps standardized, 220
raw, 250 centered; test accuracy 96.3-97.1% (experiments/preprocessing/README.md).

The second command runs the same on Fashion-MNIST (the activations
experiment's fashion_mnist group: 28x28, 900 steps of 128, the test set
every 100 steps). Expected: about 10 minutes in all.
"""

from cnn_jax.sweep import config_files


def get_config(group: str = "digits"):
  config = config_files.load_config("experiments/activations/config.py", group)
  config.normalize = "standardize"
  return config


def get_sweep(h, group: str = "digits"):
  return h.product(
      [h.sweep("normalize", ["none", "center", "standardize"]), h.sweep("seed", [0, 1, 2])]
  )
