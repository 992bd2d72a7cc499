"""LeNet-5 (modern) trained on the digits, a short version of configs/default.py:
the trained model that tests/visualize/test_visualize.py explains."""

from cnn_jax.train.config import base_config


def get_config():
  config = base_config()
  config.model = "lenet5_modern"
  config.augment = "translate(pixels=2)|rotate(degrees=10)"
  config.batch_size = 128
  config.num_epochs = 30
  config.eval_every_epochs = 30
  config.optimizer = dict(name="adam", learning_rate=3e-3, weight_decay=0.0)
  config.schedule = dict(name="cosine", warmup_epochs=2)
  return config
