"""ResNet-20/32/44/56/110 on CIFAR-10 with He et al.'s recipe (2016, Section 4.2).

    python -m cnn_jax.data.prepare --dataset=cifar10        # once, needs network
    python -m cnn_jax.main --config=configs/cifar10_resnet.py:56 --workdir=/tmp/resnet56

The argument is the depth (default 20). Recipe: SGD momentum 0.9, weight
decay 1e-4, batch 128, learning rate 0.1 divided by 10 at 32k and 48k
iterations, stop at 64k; 4-pixel zero padding, a random 32x32 crop and a
horizontal flip. ResNet-110 starts at 0.01 for 400 iterations (the paper
warms up until the training error is below 80%, "about 400 iterations").
The paper subtracts the per-pixel mean; we standardize per channel.

Paper test error (Table 6): ResNet-20 8.75%, 32 7.51%, 44 7.17%, 56 6.97%,
110 6.43% (best of 5 runs; mean 6.61%). Hardware: one GPU. On 2 CPU cores
ResNet-20's step takes 1.09 s (118 images/s, `python -m cnn_jax.benchmark
--model=resnet20 --batch_size=128`), about 19 hours for 64k steps. Time on a
GPU: not yet measured.
"""

from cnn_jax.errors import ConfigError
from cnn_jax.train.config import base_config

DEPTHS = (20, 32, 44, 56, 110)


def get_config(depth: str = "20"):
  if not str(depth).isdigit() or int(depth) not in DEPTHS:
    raise ConfigError(
        f"cifar10_resnet.py:{depth} is not a depth this recipe covers; use one of {DEPTHS}"
    )
  depth = int(depth)
  config = base_config()
  config.model = f"resnet{depth}"
  config.dataset = "cifar10"
  config.image_size = 32
  config.input_pipeline = "device"  # 50,000 x 32 x 32 x 3 bytes = 150 MB
  config.augment = "crop(pad=4)|flip_lr"
  config.batch_size = 128
  config.num_train_steps = 64_000
  config.eval_every_steps = 2_000
  config.log_every_steps = 200
  config.keep_best = True
  config.optimizer = dict(
      name="sgd", learning_rate=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4
  )
  if depth == 110:
    config.optimizer.learning_rate = 0.01
    config.schedule = dict(name="step", boundaries=(400, 32_000, 48_000), factors=(10, 0.1, 0.1))
  else:
    config.schedule = dict(name="step", boundaries=(32_000, 48_000), factor=0.1)
  return config
