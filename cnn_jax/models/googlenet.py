"""GoogLeNet (Szegedy et al. 2015) and torchvision's variant.

The paper's network follows Table 1: a stem with local response
normalization, nine inception modules 3a-5b with 1x1, 3x3 and 5x5 branches
plus a pooling projection, global average pooling, 40% dropout and a linear
classifier. `googlenet_tv` is torchvision's: batch norm after every conv
(no LRN), a 3x3 conv in the "5x5" branch, a 2x2 last pool and 20% dropout.
Pools keep a last partial window (PyTorch's ceil_mode), which gives Table 1's
sizes 112 -> 56 -> 28 -> 14 -> 7.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import layers
from cnn_jax.models import registry

# Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) per module.
INCEPTION_WIDTHS: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def _torchvision_transform_input(x):
  # torchvision's GoogLeNet(transform_input=True): undo the ImageNet
  # normalization and apply (x - 0.5) / 0.5 instead, per channel.
  mean, std = jnp.asarray(registry.IMAGENET_MEAN), jnp.asarray(registry.IMAGENET_STD)
  return x * (std / 0.5) + (mean - 0.5) / 0.5


class ConvBlock(nn.Module):
  """Conv -> (batch norm) -> ReLU; torchvision's BasicConv2d when batch_norm."""

  features: int
  kernel: int
  stride: int = 1
  batch_norm: bool = False
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    pad = (self.kernel - 1) // 2
    x = layers.conv_class(self.conv_impl)(
        self.features,
        (self.kernel,) * 2,
        strides=(self.stride,) * 2,
        padding=[(pad, pad)] * 2,
        use_bias=not self.batch_norm,
        dtype=self.dtype,
        name="conv",
    )(x)
    if self.batch_norm:
      x = layers.batch_norm(train, self.dtype, epsilon=1e-3)(name="bn")(x)
    return layers.Activation("relu", name="act")(x)


class Inception(nn.Module):
  """Four parallel branches concatenated along depth (Fig. 2b of the paper)."""

  widths: tuple[int, int, int, int, int, int]
  branch3_kernel: int = 5
  block: Any = ConvBlock

  @nn.compact
  def __call__(self, x, train: bool = False):
    n1x1, n3x3_reduce, n3x3, n5x5_reduce, n5x5, pool_proj = self.widths
    block = self.block
    branch1 = block(n1x1, 1, name="branch1")(x, train)
    branch2 = block(n3x3_reduce, 1, name="branch2_reduce")(x, train)
    branch2 = block(n3x3, 3, name="branch2")(branch2, train)
    branch3 = block(n5x5_reduce, 1, name="branch3_reduce")(x, train)
    branch3 = block(n5x5, self.branch3_kernel, name="branch3")(branch3, train)
    branch4 = layers.MaxPool(3, 1, padding=1, ceil_mode=True, name="branch4_pool")(x)
    branch4 = block(pool_proj, 1, name="branch4")(branch4, train)
    return jnp.concatenate([branch1, branch2, branch3, branch4], axis=-1)


class AuxClassifier(nn.Module):
  """The paper's auxiliary classifier on 4a and 4d (used in training only)."""

  num_classes: int
  block: Any = ConvBlock
  dtype: Any = jnp.float32
  adaptive_pool: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    # The paper: 5x5 stride-3 average pool (14x14 -> 4x4); torchvision: adaptive to 4x4.
    if self.adaptive_pool:
      x = layers.AdaptiveAvgPool(4, name="pool")(x)
    else:
      x = layers.AvgPool(5, 3, name="pool")(x)
    x = self.block(128, 1, name="conv")(x, train)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Activation("relu", name="fc1_act")(nn.Dense(1024, dtype=self.dtype, name="fc1")(x))
    x = nn.Dropout(0.7, deterministic=not train, name="dropout")(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="fc2")(x)


class GoogLeNet(nn.Module):
  """GoogLeNet family.

  Attributes:
    num_classes: output classes.
    batch_norm: batch norm after every conv (torchvision) instead of LRN.
    lrn: local response normalization in the stem (the paper).
    branch3_kernel: kernel of the "5x5" branch (5 in the paper, 3 in torchvision).
    last_pool_window: the max pool between 4e and 5a (3 paper, 2 torchvision).
    dropout: dropout rate before the classifier.
    aux_logits: add the two auxiliary classifiers; their logits are stored
      in the "aux_logits" collection (apply with mutable=["aux_logits"]).
    transform_input: torchvision's re-normalization of ImageNet-normalized
      input to the (x - 0.5) / 0.5 scaling its pretrained weights expect.
    dtype: compute dtype; parameters stay float32.
    conv_impl: one of `cnn_jax.layers.CONV_IMPLS` (see `cnn_jax.layers.conv_class`).
  """

  num_classes: int = 1000
  batch_norm: bool = False
  lrn: bool = True
  branch3_kernel: int = 5
  last_pool_window: int = 3
  dropout: float = 0.4
  aux_logits: bool = False
  transform_input: bool = False
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    layers.check_nhwc(x, "GoogLeNet")
    if self.transform_input:
      x = _torchvision_transform_input(x)
    block = functools.partial(
        ConvBlock, batch_norm=self.batch_norm, dtype=self.dtype, conv_impl=self.conv_impl
    )
    pool = functools.partial(layers.MaxPool, 3, 2, ceil_mode=True)
    inception = functools.partial(Inception, branch3_kernel=self.branch3_kernel, block=block)

    x = block(64, 7, stride=2, name="conv1")(x, train)
    x = pool(name="pool1")(x)
    if self.lrn:
      x = layers.LocalResponseNorm(name="lrn1")(x)
    x = block(64, 1, name="conv2")(x, train)
    x = block(192, 3, name="conv3")(x, train)
    if self.lrn:
      x = layers.LocalResponseNorm(name="lrn2")(x)
    x = pool(name="pool2")(x)
    for name in ("3a", "3b"):
      x = inception(INCEPTION_WIDTHS[name], name=f"inception{name}")(x, train)
    x = pool(name="pool3")(x)
    for name in ("4a", "4b", "4c", "4d", "4e"):
      x = inception(INCEPTION_WIDTHS[name], name=f"inception{name}")(x, train)
      if self.aux_logits and name in ("4a", "4d"):
        aux = AuxClassifier(
            self.num_classes, block, self.dtype, adaptive_pool=self.batch_norm, name=f"aux_{name}"
        )(x, train)
        self.sow("aux_logits", name, aux.astype(jnp.float32))
    x = layers.MaxPool(self.last_pool_window, 2, ceil_mode=True, name="pool4")(x)
    for name in ("5a", "5b"):
      x = inception(INCEPTION_WIDTHS[name], name=f"inception{name}")(x, train)
    x = layers.GlobalAvgPool(name="avgpool")(x)
    x = nn.Dropout(self.dropout, deterministic=not train, name="dropout")(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)
    return x.astype(jnp.float32)


googlenet = GoogLeNet
googlenet_tv = functools.partial(
    GoogLeNet, batch_norm=True, lrn=False, branch3_kernel=3, last_pool_window=2, dropout=0.2
)

PAPER = "Szegedy et al. 2015, Going deeper with convolutions, Table 1"
# Not measured on the CPU (ImageNet-sized, too slow there): XLA's default.
FAMILY = registry.Family(
    "googlenet",
    head_layers=("fc", "aux_4a/fc2", "aux_4d/fc2"),
    pretrained=registry.PretrainedWeights(
        models=("googlenet_tv",),
        renames=(
            (r"branch2\.0\.", "branch2_reduce."),
            (r"branch2\.1\.", "branch2."),
            (r"branch3\.0\.", "branch3_reduce."),
            (r"branch3\.1\.", "branch3."),
            (r"branch4\.1\.", "branch4."),
            (r"aux1\.", "aux_4a."),
            (r"aux2\.", "aux_4d."),
        ),
        flattened={"aux_4a/fc1": (128, 4, 4), "aux_4d/fc1": (128, 4, 4)},
        output_weight="fc.weight",
        auxiliary=("aux1.", "aux2."),
        model_kwargs={"transform_input": True},
    ),
)
registry.register("googlenet", googlenet, family=FAMILY, image_size=224, paper=PAPER)
registry.register(
    "googlenet_tv",
    googlenet_tv,
    family=FAMILY,
    image_size=224,
    paper=PAPER + " (torchvision: batch norm, 3x3 in the 5x5 branch)",
)
