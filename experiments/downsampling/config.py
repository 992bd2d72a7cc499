"""Claim 4: max pooling vs average pooling vs stride-2 convolution (Springenberg et al. 2015).

    python -m launch.sweep --config=experiments/downsampling/config.py \
        --workdir_root=/tmp/downsampling --results_dir=experiments/downsampling \
        --curves=eval.accuracy --reach="eval.accuracy>=0.95"
    python -m launch.sweep --config=experiments/downsampling/config.py:fashion_mnist \
        --workdir_root=/tmp/downsampling_fashion_mnist \
        --results_dir=experiments/downsampling/fashion_mnist \
        --curves=eval.accuracy --reach="eval.accuracy>=0.88" \
        --baseline=model_kwargs.downsampling=max

The lecture's template INPUT -> [[CONV -> RELU]*2 -> DOWNSAMPLE]*2 -> FC 128
-> FC with 16 and 32 filters of 3x3 on the digits at 16x16 (the digits are
8x8, so nothing is lost), downsampling by 2x2 max pooling, 2x2 average
pooling, or by giving each stage's last conv a stride of 2; the default
recipe shortened to 40 epochs (Adam 3e-3, cosine, small shifts and turns),
3 seeds each. Hardware: 2 CPU cores. Expected: about 4 minutes in all;
max 99.2%, average 98.9%, stride 99.4% (experiments/downsampling/README.md).

The second command runs the same comparison on Fashion-MNIST at 28x28 with
half the widths (8 and 16 filters, so that 2 CPU cores train each run in
about a minute), the same augmentation, Adam 3e-3 with a cosine decay over
2 epochs of 128 (938 steps), the 10,000 test images every 94 steps.
Expected: about 12 minutes in all.
"""

from cnn_jax.sweep import config_files

GROUPS = ("digits", "fashion_mnist")


def get_config(group: str = "digits"):
  config_files.check_group(group, GROUPS)
  config = config_files.load_config("configs/default.py")
  config.model = "standard"
  config.model_kwargs = dict(
      widths=(16, 32), convs_per_stage=2, kernel_size=3, fc_widths=(128,), downsampling="max"
  )
  config.image_size = 16
  config.augment = "translate(pixels=1)|rotate(degrees=10)"
  config.num_epochs = 40
  config.eval_every_epochs = 2
  if group == "fashion_mnist":
    config_files.on_mnist_like(config)
    config.model_kwargs.widths = (8, 16)
    config.num_epochs = 2
    config.eval_every_epochs = 0
    config.eval_every_steps = 94
    config.schedule.warmup_epochs = 0
  return config


def get_sweep(h, group: str = "digits"):
  return h.product(
      [h.sweep("model_kwargs.downsampling", ["max", "avg", "stride"]), h.sweep("seed", [0, 1, 2])]
  )
