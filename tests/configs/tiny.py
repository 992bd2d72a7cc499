"""A run small enough for tests: a 2-stage CNN with batch norm on 8x8 digits.

    python -m cnn_jax.main --config=tests/configs/tiny.py --workdir=/tmp/tiny

Arg: the input pipeline, "device" (default) or "grain".
"""

from cnn_jax.train.config import base_config


def get_config(pipeline: str = "device"):
  config = base_config()
  config.model = "standard"
  config.model_kwargs = dict(
      widths=(8, 16), convs_per_stage=1, fc_widths=(32,), batch_norm=True, dropout=0.1
  )
  config.dataset = "digits"
  config.image_size = 8
  config.input_pipeline = pipeline
  config.augment = "translate(pixels=1)"
  config.batch_size = 32
  config.num_train_steps = 40
  config.eval_every_steps = 20
  config.log_every_steps = 10
  config.checkpoint_every_steps = 10
  config.keep_checkpoints = 3
  config.optimizer = dict(
      name="sgd",
      learning_rate=0.1,
      momentum=0.9,
      nesterov=False,
      weight_decay=1e-4,
      grad_clip_norm=0.0,
  )
  config.schedule = dict(name="constant")
  return config
