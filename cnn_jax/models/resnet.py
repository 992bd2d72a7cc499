"""ResNets (He, Zhang, Ren & Sun 2015): ImageNet and CIFAR designs.

ImageNet ResNets follow torchvision (v1.5: a bottleneck's stride sits on its
3x3 conv), with a 1x1 projection + batch norm wherever a block changes shape
(shortcut option B). CIFAR ResNets follow Section 4.2: 6n+2 layers of 3x3
convs with 16, 32, 64 filters on 32x32 input and parameter-free option-A
shortcuts (subsample by 2 and zero-pad the new channels); `shortcut="B"`
switches them to projections, and `shortcut="none"` removes them: the
"plain" nets of Section 4.1, the same stack of layers without the identity.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import layers
from cnn_jax.errors import ArgumentError
from cnn_jax.models import registry

SHORTCUTS = ("A", "B", "none")


class BasicBlock(nn.Module):
  """Two 3x3 convs with an identity (or projected) shortcut."""

  features: int
  stride: int = 1
  shortcut: str = "B"
  conv: Any = nn.Conv
  norm: Any = nn.BatchNorm
  zero_init_last: bool = False
  expansion = 1

  @nn.compact
  def __call__(self, x):
    y = self.conv(self.features, (3, 3), (self.stride,) * 2, padding=[(1, 1)] * 2, name="conv1")(x)
    y = layers.Activation("relu", name="act1")(self.norm(name="bn1")(y))
    y = self.conv(self.features, (3, 3), padding=[(1, 1)] * 2, name="conv2")(y)
    y = self._last_norm("bn2")(y)
    return layers.Activation("relu", name="act_out")(y + self._shortcut(x, y.shape[-1]))

  def _last_norm(self, name: str):
    # Zero-initialized last scale: each block starts as the identity (Goyal et al. 2017).
    if self.zero_init_last:
      return self.norm(name=name, scale_init=nn.initializers.zeros)
    return self.norm(name=name)

  def _shortcut(self, x, features: int):
    if self.shortcut == "none":  # a plain net
      return 0.0
    if x.shape[-1] == features and self.stride == 1:
      return x
    if self.shortcut == "A":
      # Option A: parameter-free; subsample and zero-pad the extra channels.
      x = x[:, :: self.stride, :: self.stride, :]
      return jnp.pad(x, [(0, 0), (0, 0), (0, 0), (0, features - x.shape[-1])])
    x = self.conv(features, (1, 1), (self.stride,) * 2, padding="VALID", name="downsample_conv")(x)
    return self.norm(name="downsample_bn")(x)


class Bottleneck(BasicBlock):
  """1x1 reduce -> 3x3 (carries the stride, v1.5) -> 1x1 expand by 4."""

  expansion = 4

  @nn.compact
  def __call__(self, x):
    y = self.conv(self.features, (1, 1), padding="VALID", name="conv1")(x)
    y = layers.Activation("relu", name="act1")(self.norm(name="bn1")(y))
    y = self.conv(self.features, (3, 3), (self.stride,) * 2, padding=[(1, 1)] * 2, name="conv2")(y)
    y = layers.Activation("relu", name="act2")(self.norm(name="bn2")(y))
    y = self.conv(self.features * 4, (1, 1), padding="VALID", name="conv3")(y)
    y = self._last_norm("bn3")(y)
    return layers.Activation("relu", name="act_out")(y + self._shortcut(x, y.shape[-1]))


class ResNet(nn.Module):
  """ResNet family.

  Attributes:
    num_classes: output classes.
    stage_sizes: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50.
    block: `BasicBlock` or `Bottleneck`.
    width: filters of the first stage (doubling per stage): 64 ImageNet, 16 CIFAR.
    stem: "imagenet" (7x7/2 conv + 3x3/2 max pool) or "cifar" (one 3x3 conv).
    shortcut: "B" (projection where the shape changes), "A" (zero padding)
      or "none" (no shortcut: He et al.'s plain net).
    zero_init_residual: start each block's last batch-norm scale at zero.
    dtype: compute dtype; parameters and batch-norm statistics stay float32.
    conv_impl: one of `cnn_jax.layers.CONV_IMPLS` (see `cnn_jax.layers.conv_class`).
  """

  num_classes: int = 1000
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  block: Any = BasicBlock
  width: int = 64
  stem: str = "imagenet"
  shortcut: str = "B"
  zero_init_residual: bool = False
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    layers.check_nhwc(x, "ResNet")
    if self.shortcut not in SHORTCUTS:
      raise ArgumentError(
          f"shortcut={self.shortcut!r}; choose 'A' (zero padding), "
          "'B' (projection) or 'none' (a plain net)"
      )
    conv = functools.partial(
        layers.conv_class(self.conv_impl),
        use_bias=False,
        dtype=self.dtype,
        kernel_init=layers.he_normal_fan_out(),
    )
    norm = layers.batch_norm(train, self.dtype)
    if self.stem == "imagenet":
      x = conv(self.width, (7, 7), (2, 2), padding=[(3, 3)] * 2, name="conv1")(x)
      x = layers.Activation("relu", name="act1")(norm(name="bn1")(x))
      x = layers.MaxPool(3, 2, padding=1, name="maxpool")(x)
    elif self.stem == "cifar":
      x = conv(self.width, (3, 3), padding=[(1, 1)] * 2, name="conv1")(x)
      x = layers.Activation("relu", name="act1")(norm(name="bn1")(x))
    else:
      raise ArgumentError(f"stem={self.stem!r}; choose 'imagenet' or 'cifar'")

    for stage, blocks in enumerate(self.stage_sizes):
      for i in range(blocks):
        stride = 2 if stage > 0 and i == 0 else 1
        x = self.block(
            self.width * 2**stage,
            stride,
            self.shortcut,
            conv,
            norm,
            self.zero_init_residual,
            name=f"layer{stage + 1}_{i}",
        )(x)
    x = layers.GlobalAvgPool(name="avgpool")(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)
    return x.astype(jnp.float32)


imagenet_resnet = functools.partial(ResNet, num_classes=1000, stem="imagenet", width=64)
resnet18 = functools.partial(imagenet_resnet, stage_sizes=(2, 2, 2, 2), block=BasicBlock)
resnet34 = functools.partial(imagenet_resnet, stage_sizes=(3, 4, 6, 3), block=BasicBlock)
resnet50 = functools.partial(imagenet_resnet, stage_sizes=(3, 4, 6, 3), block=Bottleneck)
resnet101 = functools.partial(imagenet_resnet, stage_sizes=(3, 4, 23, 3), block=Bottleneck)
resnet152 = functools.partial(imagenet_resnet, stage_sizes=(3, 8, 36, 3), block=Bottleneck)


def cifar_resnet(depth: int, **kwargs) -> ResNet:
  """The CIFAR ResNet with 6n+2 layers (He et al. 2015, Section 4.2).

  Args:
    depth: 6n + 2 (20, 32, 44, 56, 110, 1202, ...).
    **kwargs: other `ResNet` fields (num_classes, shortcut, dtype, ...).

  Returns:
    The module.

  Raises:
    ValueError: if depth is not of the form 6n + 2.
  """
  if depth < 8 or (depth - 2) % 6:
    raise ArgumentError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
  n = (depth - 2) // 6
  options = dict(
      num_classes=10, stage_sizes=(n, n, n), block=BasicBlock, width=16, stem="cifar", shortcut="A"
  )
  options.update(kwargs)
  return ResNet(**options)


PAPER = "He et al. 2016, Deep residual learning for image recognition"
IMAGENET_DEPTHS = (18, 34, 50, 101, 152)
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
# Convolutions to Eigen, YNNPACK's other fusions kept: measured fastest on the CPU.
FAMILY = registry.Family(
    "resnet",
    head_layers=("fc",),
    pretrained=registry.PretrainedWeights(
        models=tuple(f"resnet{depth}" for depth in IMAGENET_DEPTHS),
        renames=(
            (r"^layer(\d)\.(\d+)\.", r"layer\1_\2/"),  # layer1.0.conv1 -> layer1_0/conv1
            (r"downsample\.0\.", "downsample_conv."),
            (r"downsample\.1\.", "downsample_bn."),
        ),
        output_weight="fc.weight",
    ),
    xla_cpu_ynn_fusion="-individual_convolution",
)
for _depth, _constructor in zip(
    IMAGENET_DEPTHS, (resnet18, resnet34, resnet50, resnet101, resnet152)
):
  registry.register(
      f"resnet{_depth}",
      _constructor,
      family=FAMILY,
      image_size=224,
      paper=PAPER + " (torchvision v1.5)",
  )
for _depth in CIFAR_DEPTHS:
  registry.register(
      f"resnet{_depth}",
      functools.partial(cifar_resnet, _depth),
      family=FAMILY,
      image_size=32,
      num_classes=10,
      paper=PAPER + ", Section 4.2 (CIFAR-10, option A)",
  )
