"""AlexNet (Krizhevsky, Sutskever & Hinton 2012) and torchvision's variant.

`alexnet` is the paper's two-tower network on 227x227 input: conv2, conv4
and conv5 are grouped convolutions (each tower sees only its own 48/192
maps), conv3 and the FC layers connect across towers, and local response
normalization follows conv1 and conv2. `alexnet_tv` is torchvision's
one-tower variant (Krizhevsky 2014, "One weird trick"), without LRN.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import layers
from cnn_jax.models import registry


class ConvSpec(NamedTuple):
  features: int
  kernel: int
  stride: int = 1
  padding: int = 0
  groups: int = 1
  lrn: bool = False  # LRN after the ReLU (paper: conv1, conv2)
  pool: bool = False  # 3x3 stride-2 overlapping max pool after


PAPER_CONVS = (
    ConvSpec(96, 11, stride=4, lrn=True, pool=True),
    ConvSpec(256, 5, padding=2, groups=2, lrn=True, pool=True),
    ConvSpec(384, 3, padding=1),
    ConvSpec(384, 3, padding=1, groups=2),
    ConvSpec(256, 3, padding=1, groups=2, pool=True),
)

TORCHVISION_CONVS = (
    ConvSpec(64, 11, stride=4, padding=2, pool=True),
    ConvSpec(192, 5, padding=2, pool=True),
    ConvSpec(384, 3, padding=1),
    ConvSpec(256, 3, padding=1),
    ConvSpec(256, 3, padding=1, pool=True),
)


class AlexNet(nn.Module):
  """AlexNet family.

  Attributes:
    num_classes: output classes.
    convs: the five conv layers (see `ConvSpec`).
    towers: GPUs of the paper's design; conv1's maps are split between them,
      so conv1's LRN normalizes within each tower's half.
    check_geometry: enforce the lecture's whole-number rule on every layer
      (the paper's 227x227 design satisfies it; torchvision's 224x224 floors).
    adaptive_pool: torchvision's adaptive average pool to 6x6 before the
      classifier, which lets the network accept other image sizes.
    fc_width: width of the two hidden FC layers.
    dropout: dropout rate of the hidden FC layers.
    dropout_before_fc: dropout on the inputs of fc6 and fc7 (torchvision)
      instead of on their outputs (the paper).
    dtype: compute dtype; parameters stay float32.
    conv_impl: one of `cnn_jax.layers.CONV_IMPLS` (see `cnn_jax.layers.conv_class`).
  """

  num_classes: int = 1000
  convs: Sequence[ConvSpec] = PAPER_CONVS
  towers: int = 2
  check_geometry: bool = True
  adaptive_pool: bool = False
  fc_width: int = 4096
  dropout: float = 0.5
  dropout_before_fc: bool = False
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    layers.check_nhwc(x, "AlexNet")
    conv_cls = layers.conv_class(self.conv_impl)
    for i, spec in enumerate(self.convs, start=1):
      name = f"conv{i}"
      if self.check_geometry:
        layers.check_conv_geometry(x, spec.kernel, spec.padding, spec.stride, name)
      x = conv_cls(
          spec.features,
          (spec.kernel,) * 2,
          strides=(spec.stride,) * 2,
          padding=[(spec.padding,) * 2] * 2,
          feature_group_count=spec.groups,
          dtype=self.dtype,
          name=name,
      )(x)
      x = layers.Activation("relu", name=f"{name}_act")(x)
      if spec.lrn:
        # Each tower normalizes its own maps: conv1's are split between the GPUs.
        groups = spec.groups if i > 1 else self.towers
        x = layers.LocalResponseNorm(groups=groups, name=f"{name}_lrn")(x)
      if spec.pool:
        if self.check_geometry:
          layers.check_pool_geometry(x, 3, 2, f"pool{i}")
        x = layers.MaxPool(3, 2, name=f"pool{i}")(x)
    if self.adaptive_pool:
      x = layers.AdaptiveAvgPool(6, name="avgpool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.FullyConnectedHead(
        (self.fc_width,) * 2,
        self.num_classes,
        self.dropout,
        self.dropout_before_fc,
        dtype=self.dtype,
        name="head",
    )(x, train)
    return x.astype(jnp.float32)


alexnet = functools.partial(AlexNet, convs=PAPER_CONVS)
alexnet_tv = functools.partial(
    AlexNet,
    convs=TORCHVISION_CONVS,
    towers=1,
    check_geometry=False,
    adaptive_pool=True,
    dropout_before_fc=True,
)

# Not measured on the CPU (ImageNet-sized, too slow there): XLA's default.
FAMILY = registry.Family(
    "alexnet",
    head_layers=("head/fc8",),
    pretrained=registry.PretrainedWeights(
        models=("alexnet_tv",), numbered_in_order=True, flattened={"head/fc6": (256, 6, 6)}
    ),
)
registry.register(
    "alexnet",
    alexnet,
    family=FAMILY,
    image_size=227,
    paper="Krizhevsky et al. 2012, ImageNet classification with deep CNNs (two towers)",
)
registry.register(
    "alexnet_tv",
    alexnet_tv,
    family=FAMILY,
    image_size=224,
    paper="Krizhevsky 2014, One weird trick (torchvision's AlexNet)",
)
