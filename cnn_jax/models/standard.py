"""The lecture's generic CNN template, built from a config:

    INPUT -> [[CONV -> RELU]*N -> POOL?]*M -> [FC -> RELU]*K -> FC

Every layer's geometry is checked with the lecture's formulas, so an
impossible configuration fails at build time with the layer's name.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import layers
from cnn_jax.errors import ArgumentError
from cnn_jax.models import registry
from cnn_jax.models.lenet import PAPER as LECUN

DOWNSAMPLING = ("max", "avg", "stride", "none")


class StandardCNN(nn.Module):
  """INPUT -> [[CONV -> ACT]*N -> POOL?]*M -> [FC -> ACT]*K -> FC.

  Attributes:
    num_classes: output classes.
    widths: conv filters per stage; its length is M.
    convs_per_stage: N.
    kernel_size: F of every conv ("same" padding P = (F - 1) / 2, stride 1).
    downsampling: after each stage, "max" or "avg" pooling (2x2, stride 2),
      "stride" (the stage's last conv has stride 2, Springenberg et al. 2015;
      it pads F - 2 zeros, the extra one on the high side, so that an even
      input halves exactly), or "none".
    fc_widths: hidden fully-connected widths; its length is K.
    activation: activation name (see `cnn_jax.layers.ACTIVATIONS`).
    negative_slope: leaky_relu slope.
    batch_norm: batch norm after each conv (and hidden FC), before the activation.
    dropout: dropout rate before each FC layer (0 disables it).
    dtype: compute dtype; parameters stay float32.
    conv_impl: one of `cnn_jax.layers.CONV_IMPLS` (see `cnn_jax.layers.conv_class`).
    shared_weights: False makes every conv locally connected (flax's
      ConvLocal): the same receptive fields, but each output position has its
      own filter and bias, the lecture's network without parameter sharing.
  """

  num_classes: int = 10
  widths: Sequence[int] = (32, 64)
  convs_per_stage: int = 2
  kernel_size: int = 3
  downsampling: str = "max"
  fc_widths: Sequence[int] = (128,)
  activation: str = "relu"
  negative_slope: float = 0.1
  batch_norm: bool = False
  dropout: float = 0.0
  dtype: Any = jnp.float32
  conv_impl: str = "auto"
  shared_weights: bool = True

  @nn.compact
  def __call__(self, x, train: bool = False):
    layers.check_nhwc(x, "StandardCNN")
    if self.downsampling not in DOWNSAMPLING:
      raise ArgumentError(f"downsampling={self.downsampling!r}; choose one of {DOWNSAMPLING}")
    if self.downsampling == "stride" and self.kernel_size < 3:
      raise ArgumentError(
          f"kernel_size={self.kernel_size} cannot halve the input with "
          "downsampling='stride'; use kernel_size >= 3"
      )
    if self.kernel_size % 2 == 0:
      raise ArgumentError(
          f"kernel_size={self.kernel_size}: use an odd kernel so that "
          "'same' padding (F - 1)/2 is whole"
      )
    if not self.shared_weights and self.conv_impl not in ("auto", "xla"):
      raise ArgumentError(
          f"conv_impl={self.conv_impl!r} has no locally connected form; "
          "use conv_impl='auto' or 'xla' with shared_weights=False"
      )
    same = ((self.kernel_size - 1) // 2,) * 2
    halving = ((self.kernel_size - 2) // 2, (self.kernel_size - 1) // 2)
    conv_class = layers.conv_class(self.conv_impl) if self.shared_weights else nn.ConvLocal
    conv = functools.partial(
        conv_class,
        dtype=self.dtype,
        kernel_size=(self.kernel_size,) * 2,
        use_bias=not self.batch_norm,
    )
    norm = layers.batch_norm(train, self.dtype)
    act = functools.partial(layers.Activation, self.activation, self.negative_slope)

    for stage, width in enumerate(self.widths, start=1):
      for i in range(1, self.convs_per_stage + 1):
        name = f"conv{stage}_{i}"
        stride = 2 if (self.downsampling == "stride" and i == self.convs_per_stage) else 1
        pad = halving if stride == 2 else same
        layers.check_conv_geometry(x, self.kernel_size, pad, stride, name)
        x = conv(width, strides=(stride, stride), padding=[pad] * 2, name=name)(x)
        if self.batch_norm:
          x = norm(name=f"{name}_bn")(x)
        x = act(name=f"{name}_act")(x)
      if self.downsampling in ("max", "avg"):
        name = f"pool{stage}"
        layers.check_pool_geometry(x, 2, 2, name)
        pool = layers.MaxPool if self.downsampling == "max" else layers.AvgPool
        x = pool(2, 2, name=name)(x)

    x = layers.Flatten(name="flatten")(x)
    for i, width in enumerate(self.fc_widths, start=1):
      x = self._dropout(x, train, f"fc{i}_dropout")
      x = nn.Dense(width, dtype=self.dtype, use_bias=not self.batch_norm, name=f"fc{i}")(x)
      if self.batch_norm:
        x = norm(name=f"fc{i}_bn")(x)
      x = act(name=f"fc{i}_act")(x)
    x = self._dropout(x, train, "output_dropout")
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="output")(x)
    return x.astype(jnp.float32)

  def _dropout(self, x, train: bool, name: str):
    # No module at rate 0, so the summary shows only the layers that exist.
    if not self.dropout:
      return x
    return nn.Dropout(self.dropout, deterministic=not train, name=name)(x)


standard = StandardCNN
# LeCun et al. 1998's 3-layer fully connected baseline (section III.C): 300 and 100
# hidden units, no convolution at all.
mlp = functools.partial(StandardCNN, widths=(), fc_widths=(300, 100))

# Convolutions to Eigen, YNNPACK's other fusions kept: measured fastest on the CPU.
FAMILY = registry.Family(
    "standard", head_layers=("output",), xla_cpu_ynn_fusion="-individual_convolution"
)
registry.register(
    "standard",
    standard,
    family=FAMILY,
    image_size=32,
    channels=3,
    num_classes=10,
    paper="the lecture's INPUT -> [[CONV -> RELU]*N -> POOL?]*M -> [FC -> RELU]*K -> FC",
)
registry.register(
    "mlp",
    mlp,
    family=FAMILY,
    image_size=32,
    channels=1,
    num_classes=10,
    paper=LECUN + ", the 300-100 fully connected net",
)
