"""All-CNN-C on CIFAR-10 (Springenberg, Dosovitskiy, Brox & Riedmiller 2015).

    python -m cnn_jax.data.prepare --dataset=cifar10        # once, needs network
    python -m cnn_jax.main --config=configs/cifar10_allcnn.py --workdir=/tmp/allcnn

Recipe (Section 3.2.1): SGD momentum 0.9, learning rate 0.01 (the best of
their grid {0.25, 0.1, 0.05, 0.01}), multiplied by 0.1 after epochs 200, 250
and 300, 350 epochs, weight decay 0.001; dropout 20% on the input and 50%
after each stride-2 layer (in the model); horizontal flips and translations
of up to 5 pixels. The batch size is not stated; 128 here. The paper
whitens the images (ZCA) and normalizes contrast; we standardize per channel.

Paper test error: 7.25% with this augmentation (9.08% without). Hardware: one
GPU. Time: not yet measured.
"""

from cnn_jax.train.config import base_config


def get_config():
  config = base_config()
  config.model = "allcnn_c"
  config.dataset = "cifar10"
  config.image_size = 32
  config.input_pipeline = "device"
  config.augment = "flip_lr|translate(pixels=5)"
  config.batch_size = 128
  config.num_epochs = 350
  config.eval_every_epochs = 10
  config.log_every_steps = 200
  config.keep_best = True
  config.optimizer = dict(
      name="sgd", learning_rate=0.01, momentum=0.9, nesterov=False, weight_decay=1e-3
  )
  config.schedule = dict(name="step", boundaries_epochs=(200, 250, 300), factor=0.1)
  return config
