"""CenterNet ("Objects as Points", Zhou, Wang & Krähenbühl 2019) on zoo backbones.

Why CenterNet and not FCOS: an object is one point, the peak of its class's
heatmap, so training needs no anchor or point-to-box assignment rules and
decoding needs no NMS (the peaks are a 3x3 max-pool's fixed points), which
keeps every shape fixed under jit; and its single stride-4 output suits
small objects such as the digits of the scenes, where FCOS's FPN levels
of strides 8 to 128 would leave most levels without objects to learn.
The targets, loss and decoding are `cnn_jax.tasks.centernet`'s.

Network: the zoo backbone's features at strides 32, 16, 8 and 4 (taken by
layer name, `backbone_features`) meet in a small FPN-style neck (Lin et al.
2017: 1x1 lateral convolutions, nearest 2x upsampling and addition from
the coarsest down, then a 3x3 convolution and ReLU) at stride 4, where the
paper's ResNet variant upsamples the stride-32 features alone with three
transposed convolutions (Section 5): the skips give the stride-4 map the
finer features directly. Three heads, each a 3x3 convolution, a ReLU and a
1x1 convolution (the paper's, with `head_features` channels), predict the
class heatmap (logits; bias -2.19, a prior of 0.1, as the reference code),
the box size and the centre offset. Output: (N, H/4, W/4, C + 4): the C
heatmap logits, then size (height, width) and offset (y, x) in map pixels.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax import layers
from cnn_jax.errors import ArgumentError, GeometryError
from cnn_jax.models import backbone_features, registry

# The strides of the backbone features the neck fuses, coarsest first; the
# output has the last.
STRIDES = (32, 16, 8, 4)
# The heatmap's bias: sigmoid(-2.19) = 0.1, so the focal loss starts small.
HEATMAP_PRIOR = 0.1
# The layer whose output every head reads (the neck's, at stride 4).
HEADS_INPUT = "neck_act"


class CenterNet(nn.Module):
  """CenterNet on a zoo backbone with an FPN-style neck.

  Attributes:
    num_classes: the object classes C (the heatmap's channels; no background).
    backbone: the zoo model's name (cnn_jax.models.names()).
    feature_layers: the backbone's layer paths whose outputs have strides
      32, 16, 8 and 4, in that order (see `introspection.layer_shapes`).
    neck_features: channels of the neck.
    head_features: channels of each head's 3x3 convolution (the paper: 64 on ResNets).
    backbone_kwargs: other fields of the backbone, as (name, value) pairs.
    dtype: compute dtype; parameters and batch-norm statistics stay float32.
    conv_impl: one of `cnn_jax.layers.CONV_IMPLS` (see `cnn_jax.layers.conv_class`).
  """

  num_classes: int = 80
  backbone: str = "resnet18"
  feature_layers: Sequence[str] = ("layer4_1", "layer3_1", "layer2_1", "layer1_1")
  neck_features: int = 64
  head_features: int = 64
  backbone_kwargs: Any = ()
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    layers.check_nhwc(x, "CenterNet")
    self._check_arguments(x)
    backbone = backbone_features.zoo_backbone(
        self.backbone, self.dtype, self.conv_impl, self.backbone_kwargs
    )
    wanted = dict(zip(STRIDES, self.feature_layers))
    features = backbone_features.capture(self, backbone, self.backbone, x, train, wanted)
    conv = functools.partial(layers.conv_class(self.conv_impl), dtype=self.dtype)
    y = conv(self.neck_features, (1, 1), name="lateral_32")(features[32])
    for stride in STRIDES[1:]:
      y = jnp.repeat(jnp.repeat(y, 2, axis=1), 2, axis=2)  # nearest, as FPN
      y = y + conv(self.neck_features, (1, 1), name=f"lateral_{stride}")(features[stride])
    y = conv(self.neck_features, (3, 3), name="neck")(y)
    y = layers.Activation("relu", name=HEADS_INPUT)(y)
    prior = -math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR)
    outputs = [
        self._head(conv, y, "heatmap", self.num_classes, nn.initializers.constant(prior)),
        self._head(conv, y, "size", 2, nn.initializers.zeros),
        self._head(conv, y, "offset", 2, nn.initializers.zeros),
    ]
    return jnp.concatenate(outputs, axis=-1).astype(jnp.float32)

  def _head(self, conv, y, name: str, features: int, bias_init) -> jax.Array:
    y = conv(self.head_features, (3, 3), name=f"{name}_hidden")(y)
    y = layers.Activation("relu", name=f"{name}_hidden_act")(y)
    return conv(features, (1, 1), bias_init=bias_init, name=name)(y)

  def _check_arguments(self, x) -> None:
    if len(self.feature_layers) != len(STRIDES):
      raise ArgumentError(
          f"feature_layers={tuple(self.feature_layers)}; name the backbone's layers of "
          f"strides {', '.join(map(str, STRIDES))}, in that order"
      )
    height, width = x.shape[1:3]
    if height % 32 or width % 32:
      raise GeometryError(
          f"CenterNet needs height and width that are multiples of 32 (its coarsest features "
          f"have stride 32), got {height}x{width}; resize or pad the images, e.g. to "
          f"{-(-height // 32) * 32}x{-(-width // 32) * 32}"
      )


# Each backbone's last layer at strides 32, 16, 8 and 4.
BACKBONES: dict[str, tuple[str, ...]] = {
    "resnet18": ("layer4_1", "layer3_1", "layer2_1", "layer1_1"),
    "efficientnet_lite0": ("act_head", "blocks_10", "blocks_4", "blocks_2"),
}
FAMILY = registry.Family("centernet", head_layers=("heatmap",), task="detection")
PAPER = "Zhou, Wang & Krähenbühl 2019, Objects as points"


def _register() -> None:
  for backbone, feature_layers in BACKBONES.items():
    registry.register(
        f"centernet_{backbone}",
        functools.partial(CenterNet, backbone=backbone, feature_layers=feature_layers),
        family=FAMILY,
        image_size=512,  # the paper's COCO input
        num_classes=80,  # COCO's classes
        paper=f"{PAPER}, on {backbone} with an FPN-style neck",
    )


_register()
