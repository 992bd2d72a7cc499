"""VGG (configuration D, "VGG-16" by default) on ImageNet (Simonyan & Zisserman 2015).

    python -m cnn_jax.data.prepare --dataset=imagenet2012   # once; needs the tar files
    python -m cnn_jax.main --config=configs/imagenet_vgg.py:vgg_d --workdir=DIR

The argument is a VGG name (vgg_a ... vgg_e). Recipe (Section 3.1): SGD
momentum 0.9, batch 256, weight decay 5e-4, dropout 0.5 in the first two
fully-connected layers, learning rate 0.01 divided by 10 three times when the
validation accuracy stopped improving, 74 epochs (here at epochs 30, 50, 65).
The paper trained D from A's weights or with Glorot init; we use the
model's own initialisation.

Paper (Table 3, D, train scale 256, single test scale 256): 27.0% top-1 /
8.8% top-5 error. Hardware: 4-8 GPUs (the paper: 4 Titan Black, 2-3 weeks).
Time: not yet measured.
"""

from cnn_jax.train.config import base_config, use_imagenet


def get_config(model: str = "vgg_d"):
  config = base_config()
  config.model = model
  use_imagenet(config)
  config.batch_size = 256
  config.num_epochs = 74
  config.eval_every_epochs = 1
  config.optimizer = dict(
      name="sgd", learning_rate=0.01, momentum=0.9, nesterov=False, weight_decay=5e-4
  )
  config.schedule = dict(name="step", boundaries_epochs=(30, 50, 65), factor=0.1)
  return config
