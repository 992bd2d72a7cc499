"""ResNet-50 on ImageNet with the flax example's recipe (google/flax examples/imagenet).

    python -m cnn_jax.data.prepare --dataset=imagenet2012   # once; needs the tar files
    python -m cnn_jax.main --config=configs/imagenet_resnet50.py --workdir=DIR

Recipe: SGD with Nesterov momentum 0.9, learning rate 0.1 x batch / 256,
5 warm-up epochs then cosine decay to 0 over 100 epochs, weight decay 1e-4,
bfloat16 compute (params and batch-norm statistics stay float32), batch
1024 over all devices of all hosts.

Expected: the flax example reports about 76.5% top-1 after 100 epochs
(He et al. 2016, Table 3: 22.85% top-1 error for ResNet-50, 10-crop). Hardware: a
TPU v3-32 / v4-32 slice or 8 GPUs. Our eval squashes the whole image to
224x224 instead of a 224 centre crop of a 256 resize, which costs a little
accuracy. Time: not yet measured.
"""

from cnn_jax.train.config import base_config, use_imagenet


def get_config():
  config = base_config()
  config.model = "resnet50"
  config.dtype = "bfloat16"
  use_imagenet(config)
  config.batch_size = 1024
  config.num_epochs = 100
  config.eval_every_epochs = 1
  config.optimizer = dict(
      name="sgd",
      learning_rate=0.1 * config.batch_size / 256,
      momentum=0.9,
      nesterov=True,
      weight_decay=1e-4,
  )
  config.schedule = dict(name="cosine", warmup_epochs=5)
  return config
