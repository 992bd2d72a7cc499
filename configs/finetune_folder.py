"""Fine-tune an ImageNet network from torchvision on your own image folder.

    # once, with network: torchvision's weights as a state-dict file
    python -c "import torch, torchvision; torch.save(torchvision.models.resnet18(\\
        weights='IMAGENET1K_V1').state_dict(), 'resnet18.pth')"
    # your images: DIR/train/<class>/*.jpg and DIR/test/<class>/*.jpg
    python -m cnn_jax.main --config=configs/finetune_folder.py \\
        --config.dataset=folder:/path/to/DIR --config.init_from=resnet18.pth --workdir=/tmp/mine

The argument picks the network (resnet18 by default; resnet34/50/101/152,
vgg_a/b/d/e, alexnet_tv, googlenet_tv); the weights file defaults to
MODEL.pth and must hold that network's torchvision weights.
Recipe, the lecture's for a small dataset: the pretrained body is frozen
(batch norms on their ImageNet statistics) and only a new output layer trains
for 5 epochs; then every layer trains, the body at a tenth of the head's rate.
Inputs are normalized as the weights expect, and the head is the network's
output layer: both as its family's record in cnn_jax/models says.

Hardware: one GPU for 224x224 images; on 2 CPU cores use
--config.image_size=64 for a first try. Expected result and time: not yet
measured (it depends on your images).
"""

from cnn_jax import models
from cnn_jax.train.config import base_config
from cnn_jax.transfer.imagenet_weights import pixel_normalization


def get_config(model: str = "resnet18"):
  config = base_config()
  config.model = model
  config.dataset = "folder:/path/to/DIR"
  config.train_split = "train"
  config.eval_split = "test"
  config.image_size = 224
  config.input_pipeline = "device"  # a small folder fits on the device; "grain" streams
  config.augment = "random_resized_crop(scale=(0.35, 1.0))|flip_lr"
  config.mean, config.std = pixel_normalization(model)
  config.batch_size = 32
  config.num_epochs = 15
  config.eval_every_epochs = 5
  config.log_every_steps = 20
  config.keep_best = True
  config.init_from = f"{model}.pth"
  if models.family(model).pretrained.model_kwargs:  # e.g. GoogLeNet's transform_input
    config.model_kwargs = dict(models.family(model).pretrained.model_kwargs)
  config.freeze = "all_but_head"
  config.unfreeze_after_epochs = 5
  config.lr_mults = ((models.body_pattern(model), 0.1),)
  config.optimizer = dict(
      name="sgd", learning_rate=0.01, momentum=0.9, nesterov=False, weight_decay=1e-4
  )
  config.schedule = dict(name="cosine", warmup_epochs=0)
  return config
