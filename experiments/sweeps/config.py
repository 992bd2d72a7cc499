"""The default recipe's learning-rate sweep, on Fashion-MNIST.

    python -m launch.sweep --config=experiments/sweeps/config.py \
        --workdir_root=/tmp/lr_sweep_fashion_mnist --results_dir=experiments/sweeps/fashion_mnist \
        --curves=eval.accuracy --baseline=optimizer.learning_rate=0.003

configs/default.py (LeNet-5 modern, Adam, cosine decay, small shifts and
turns, batch 128) with its learning rates 1e-3, 3e-3 (the default) and 1e-2,
on Fashion-MNIST's 60,000 / 10,000 images centred in 32x32, shortened to 3
epochs (warm-up 0.1 epoch), the test set every half epoch; 3 seeds each.
The digits' sweep (`python -m launch.sweep --config=configs/default.py`) has
359 test images, too few to tell these rates apart. Hardware: 2 CPU cores.
Expected: about 12 minutes in all (experiments/sweeps/README.md).
"""

from cnn_jax.sweep import config_files


def get_config():
  config = config_files.load_config("configs/default.py")
  config_files.on_mnist_like(config, image_size=32)
  config.resize = "pad"  # LeNet-5's 32x32 field, the 28x28 image in its centre
  config.num_epochs = 3
  config.eval_every_epochs = 0.5
  config.schedule = dict(name="cosine", warmup_steps=47)  # 0.1 epoch
  return config


def get_sweep(h):
  return h.product(
      [h.sweep("optimizer.learning_rate", [1e-3, 3e-3, 1e-2]), h.sweep("seed", [0, 1, 2])]
  )
