"""Claim 3: ReLU vs Leaky ReLU (0.1) vs ELU vs tanh on the same network.

    python -m launch.sweep --config=experiments/activations/config.py \
        --workdir_root=/tmp/activations --results_dir=experiments/activations \
        --curves=train.loss --curves=eval.accuracy --reach="eval.accuracy>=0.95" \
        --reach="train.loss<=0.02"
    python -m launch.sweep --config=experiments/activations/config.py:fashion_mnist \
        --workdir_root=/tmp/activations_fashion_mnist \
        --results_dir=experiments/activations/fashion_mnist \
        --curves=train.loss --curves=eval.accuracy --reach="train.loss<=0.5" \
        --reach="train.loss<=0.35" --baseline=model_kwargs.activation=relu

A LeNet-5-sized template (5x5 convs with 6 and 16 filters, "same" padding,
max pooling, fully connected 120 and 84) on the digits at 32x32, trained as
Krizhevsky et al. did when they compared ReLU with tanh: plain SGD with
momentum 0.9 at a constant 0.01, no augmentation, batch 128, 400 steps, eval
every 10 steps; 4 activations x 3 seeds. Hardware: 2 CPU cores. Expected:
about 8 minutes in all; training loss 0.02 after about 120-150 steps with
ReLU, leaky ReLU and ELU, about 360 with tanh; test accuracy 96.8-97.3% for all
(experiments/activations/README.md).

The second command runs the same on Fashion-MNIST's 60,000 / 10,000 28x28
images (prepared offline on first use, from the Debian package
dataset-fashion-mnist): 900 steps of 128 (2 epochs), the test set every 100
steps. Expected: about 13 minutes in all.
"""

from cnn_jax.sweep import config_files

GROUPS = ("digits", "fashion_mnist")


def get_config(group: str = "digits"):
  config_files.check_group(group, GROUPS)
  config = config_files.load_config("configs/default.py")
  config.model = "standard"
  config.model_kwargs = dict(
      widths=(6, 16),
      convs_per_stage=1,
      kernel_size=5,
      fc_widths=(120, 84),
      activation="relu",
      negative_slope=0.1,
  )
  config.augment = ""
  config.optimizer = dict(
      name="sgd",
      learning_rate=0.01,
      momentum=0.9,
      nesterov=False,
      weight_decay=0.0,
      grad_clip_norm=0.0,
  )
  config.schedule = dict(name="constant")
  config.num_train_steps = 400
  config.eval_every_steps = 10
  config.log_every_steps = 10
  if group == "fashion_mnist":
    config_files.on_mnist_like(config)
    config.num_train_steps = 900  # 2 epochs of 128; the 10,000 test images every 100 steps
    config.eval_every_steps = 100
  return config


def get_sweep(h, group: str = "digits"):
  return h.product(
      [
          h.sweep("model_kwargs.activation", ["relu", "leaky_relu", "elu", "tanh"]),
          h.sweep("seed", [0, 1, 2]),
      ]
  )
