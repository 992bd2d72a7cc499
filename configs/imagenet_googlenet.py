"""GoogLeNet (Inception v1) on ImageNet (Szegedy et al. 2015).

    python -m cnn_jax.data.prepare --dataset=imagenet2012   # once; needs the tar files
    python -m cnn_jax.main --config=configs/imagenet_googlenet.py --workdir=DIR

Recipe (Section 6): SGD momentum 0.9, the learning rate decreased by 4% every
8 epochs, the two auxiliary classifiers' losses added with weight 0.3,
dropout 0.4 (0.7 in the auxiliary heads). The paper trained asynchronously
on a CPU cluster and gives neither the base rate nor the length; the 0.01
at batch 128, weight decay 2e-4 and 250 epochs here are our choices.

Paper (Table 3): 10.07% top-5 error for one model and one crop. Hardware: one
or more GPUs. Time: not yet measured.
"""

from cnn_jax.train.config import base_config, use_imagenet


def get_config():
  config = base_config()
  config.model = "googlenet"
  config.model_kwargs = dict(aux_logits=True)
  config.aux_loss_weight = 0.3
  use_imagenet(config)
  config.batch_size = 128
  config.num_epochs = 250
  config.eval_every_epochs = 2
  config.optimizer = dict(
      name="sgd", learning_rate=0.01, momentum=0.9, nesterov=False, weight_decay=2e-4
  )
  config.schedule = dict(name="step", boundaries_epochs=tuple(range(8, 250, 8)), factor=0.96)
  return config
