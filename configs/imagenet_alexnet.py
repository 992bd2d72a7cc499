"""AlexNet (the two-tower paper model) on ImageNet (Krizhevsky et al. 2012).

    python -m cnn_jax.data.prepare --dataset=imagenet2012   # once; needs the tar files
    python -m cnn_jax.main --config=configs/imagenet_alexnet.py --workdir=DIR

Recipe (Section 5): SGD momentum 0.9, weight decay 5e-4, batch 128, learning
rate 0.01 divided by 10 when the validation error stopped improving (three
times in about 90 epochs; here at epochs 30, 60 and 80), dropout 0.5 in the
first two fully-connected layers (in the model). The paper's 224 crops and
PCA colour noise become 227x227 inputs with an Inception-style crop and flip.

Paper (Table 2): 40.7% top-1 / 18.2% top-5 error for one net. Hardware: one
GPU (the paper used two GTX 580 for five to six days). Time: not yet measured.
"""

from cnn_jax.train.config import base_config, use_imagenet


def get_config():
  config = base_config()
  config.model = "alexnet"
  use_imagenet(config, image_size=227)
  config.batch_size = 128
  config.num_epochs = 90
  config.eval_every_epochs = 1
  config.optimizer = dict(
      name="sgd", learning_rate=0.01, momentum=0.9, nesterov=False, weight_decay=5e-4
  )
  config.schedule = dict(name="step", boundaries_epochs=(30, 60, 80), factor=0.1)
  return config
