"""Claim 7: plain vs residual networks of growing depth (He et al. 2016, Figure 6).

    python -m launch.sweep --config=experiments/depth/config.py \
        --workdir_root=/tmp/depth --results_dir=experiments/depth \
        --curves=train.loss --panels=model_kwargs.shortcut
    python -m launch.sweep --config=experiments/depth/config.py:fashion_mnist \
        --workdir_root=/tmp/depth_fashion_mnist --results_dir=experiments/depth/fashion_mnist \
        --curves=train.loss --panels=model_kwargs.shortcut --last=train.loss \
        --baseline=model_kwargs.shortcut=none

CIFAR-style ResNets of 8, 20 and 56 layers (6n+2, n = 1, 3, 9) with option-A
shortcuts, and the same stacks without shortcuts (`shortcut="none"`, the
paper's plain nets), on the digits at 16x16 with half the paper's widths (8,
16, 32 filters) so that the 56-layer nets train on 2 CPU cores; the paper's
optimizer (SGD, momentum 0.9, weight decay 1e-4, lr 0.1) with a cosine decay
over 400 steps of 64, 1-pixel shifts, 3 seeds each. Hardware: 2 CPU cores.
Expected: about 12 minutes in all; final training loss plain 0.016 / 0.030 /
1.7 (8 / 20 / 56 layers), residual 0.014 / 0.007 / 0.039 (experiments/depth/README.md).

The second command runs the same on Fashion-MNIST resized to 16x16 (the
digits' cost per step; Fashion-MNIST's 60,000 images are not fitted in
400 steps, so the training loss compares how fast each depth optimizes).
Expected: about 13 minutes in all.
"""

from cnn_jax.sweep import config_files

GROUPS = ("digits", "fashion_mnist")


def get_config(group: str = "digits"):
  config_files.check_group(group, GROUPS)
  config = config_files.load_config("configs/default.py")
  config.model = "resnet20"
  config.model_kwargs = dict(stage_sizes=(3, 3, 3), shortcut="A", width=8)
  config.image_size = 16
  config.augment = "translate(pixels=1)"
  config.optimizer = dict(
      name="sgd",
      learning_rate=0.1,
      momentum=0.9,
      nesterov=False,
      weight_decay=1e-4,
      grad_clip_norm=0.0,
  )
  config.schedule = dict(name="cosine", warmup_steps=0)
  config.batch_size = 64
  config.num_train_steps = 400
  config.eval_every_steps = 100
  config.log_every_steps = 20
  if group == "fashion_mnist":
    config_files.on_mnist_like(config, image_size=16)
  return config


def get_sweep(h, group: str = "digits"):
  # 6n + 2 layers: n blocks of two 3x3 convs in each of 3 stages, plus the stem and the output.
  return h.product(
      [
          h.sweep("model_kwargs.shortcut", ["none", "A"]),
          h.sweep("model_kwargs.stage_sizes", [(1, 1, 1), (3, 3, 3), (9, 9, 9)]),
          h.sweep("seed", [0, 1, 2]),
      ]
  )
