"""VGG (Simonyan & Zisserman 2015), configurations A, A-LRN, B, C, D, E.

Each configuration of the paper's Table 1 is a tuple of stages; a stage is
the kernel sizes of its convs (C has 1x1 convs in its last three stages).
Stages end with 2x2 max pooling; torchvision's adaptive 7x7 average pool
(the identity at 224x224) lets the classifier take smaller test images.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import layers
from cnn_jax.models import registry

STAGE_WIDTHS = (64, 128, 256, 512, 512)

CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "A": ((3,), (3,), (3, 3), (3, 3), (3, 3)),
    "B": ((3, 3), (3, 3), (3, 3), (3, 3), (3, 3)),
    "C": ((3, 3), (3, 3), (3, 3, 1), (3, 3, 1), (3, 3, 1)),
    "D": ((3, 3), (3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
    "E": ((3, 3), (3, 3), (3, 3, 3, 3), (3, 3, 3, 3), (3, 3, 3, 3)),
}


class VGG(nn.Module):
  """VGG family.

  Attributes:
    num_classes: output classes.
    stages: kernel sizes of the convs of each stage (see `CONFIGS`).
    lrn: local response normalization after the first conv (config A-LRN).
    fc_width: width of the two hidden FC layers.
    dropout: dropout rate after the hidden FC layers.
    dtype: compute dtype; parameters stay float32.
    conv_impl: one of `cnn_jax.layers.CONV_IMPLS` (see `cnn_jax.layers.conv_class`).
  """

  num_classes: int = 1000
  stages: Sequence[Sequence[int]] = CONFIGS["D"]
  lrn: bool = False
  fc_width: int = 4096
  dropout: float = 0.5
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    layers.check_nhwc(x, "VGG")
    conv_cls = layers.conv_class(self.conv_impl)
    for stage, (kernels, width) in enumerate(zip(self.stages, STAGE_WIDTHS), start=1):
      for i, kernel in enumerate(kernels, start=1):
        name = f"conv{stage}_{i}"
        pad = (kernel - 1) // 2
        x = conv_cls(
            width, (kernel, kernel), padding=[(pad, pad)] * 2, dtype=self.dtype, name=name
        )(x)
        x = layers.Activation("relu", name=f"{name}_act")(x)
        if self.lrn and stage == 1 and i == 1:
          x = layers.LocalResponseNorm(name=f"{name}_lrn")(x)
      x = layers.MaxPool(2, 2, name=f"pool{stage}")(x)
    x = layers.AdaptiveAvgPool(7, name="avgpool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.FullyConnectedHead(
        (self.fc_width,) * 2, self.num_classes, self.dropout, dtype=self.dtype, name="head"
    )(x, train)
    return x.astype(jnp.float32)


vgg_a = functools.partial(VGG, stages=CONFIGS["A"])
vgg_a_lrn = functools.partial(VGG, stages=CONFIGS["A"], lrn=True)
vgg_b = functools.partial(VGG, stages=CONFIGS["B"])
vgg_c = functools.partial(VGG, stages=CONFIGS["C"])
vgg_d = functools.partial(VGG, stages=CONFIGS["D"])
vgg_e = functools.partial(VGG, stages=CONFIGS["E"])

# Not measured on the CPU (ImageNet-sized, too slow there): XLA's default.
FAMILY = registry.Family(
    "vgg",
    head_layers=("head/fc8",),
    pretrained=registry.PretrainedWeights(
        models=("vgg_a", "vgg_b", "vgg_d", "vgg_e", "vgg11", "vgg13", "vgg16", "vgg19"),
        numbered_in_order=True,
        flattened={"head/fc6": (512, 7, 7)},
    ),
)
for _letter, _constructor, _aliases in (
    ("a", vgg_a, ("vgg11",)),
    ("a_lrn", vgg_a_lrn, ()),
    ("b", vgg_b, ("vgg13",)),
    ("c", vgg_c, ()),
    ("d", vgg_d, ("vgg16",)),
    ("e", vgg_e, ("vgg19",)),
):
  registry.register(
      f"vgg_{_letter}",
      _constructor,
      family=FAMILY,
      image_size=224,
      paper=(
          "Simonyan & Zisserman 2015, Very deep convolutional networks, Table 1, "
          f"configuration {_letter.upper().replace('_', '-')}"
      ),
      aliases=_aliases,
  )
