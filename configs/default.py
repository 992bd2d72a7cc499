"""The embedded default: LeNet-5 on the scikit-learn digits, 32x32.

    python -m cnn_jax.main --config=configs/default.py --workdir=/tmp/cnn_jax_default

Hardware: 2 CPU cores. Expected: ~99% test accuracy on the 359 held-out digits
in about a minute including compilation (not yet measured).
"""

from cnn_jax.train.config import base_config


def get_config():
  config = base_config()
  config.model = "lenet5_modern"
  config.dataset = "digits"
  config.image_size = 32
  config.input_pipeline = "device"
  config.augment = "translate(pixels=2)|rotate(degrees=10)"
  config.batch_size = 64
  config.num_epochs = 60
  config.eval_every_epochs = 20
  config.log_every_steps = 50
  config.optimizer = dict(name="adam", learning_rate=3e-3, weight_decay=0.0)
  config.schedule = dict(name="cosine", warmup_epochs=2)
  return config
