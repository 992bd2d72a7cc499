"""U-Net (Ronneberger, Fischer & Brox 2015): an encoder-decoder with skip concatenation.

The contracting path repeats two 3x3 convolutions (each followed by a ReLU)
and a 2x2 max pool, doubling the filters after each of `depth` pools (the
paper: 64 filters, 4 pools). The expanding path repeats a 2x2
up-convolution (a stride-2 transposed convolution) that halves the filters,
the concatenation with the contracting path's features of the same
resolution, and two 3x3 convolutions with ReLU. A 1x1 convolution maps the
last features to the classes. Weights start as the paper's Gaussian with
standard deviation sqrt(2 / fan-in), and dropout follows the end of the
contracting path (the paper gives no rate: `unet` uses 0.5, the rate of
the era's classifiers, `unet_small` none).

Deviation: the paper's convolutions are "valid" (572x572 in, 388x388 out),
so that every output pixel sees only real image, and the skip features are
cropped to the expanding path's size; large images are segmented tile by
tile with mirrored borders ("overlap-tile"). Here the convolutions pad
"same": the output has the input's size, per-pixel labels line up with the
image without tiling or cropping, and any size that the pools divide
works; the price is that border pixels see zero padding. Batch norm after
each convolution (`batch_norm`) is optional and not in the paper.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from cnn_jax import layers
from cnn_jax.errors import GeometryError
from cnn_jax.models import registry


class DoubleConv(nn.Module):
  """Two 3x3 "same" convolutions, each followed by (batch norm and) a ReLU."""

  features: int
  conv: Any
  norm: Any = None

  @nn.compact
  def __call__(self, x):
    for i in (1, 2):
      x = self.conv(self.features, (3, 3), padding=[(1, 1)] * 2, name=f"conv{i}")(x)
      if self.norm is not None:
        x = self.norm(name=f"bn{i}")(x)
      x = layers.Activation("relu", name=f"act{i}")(x)
    return x


class UpConvolution(nn.ConvTranspose):
  """The paper's 2x2 up-convolution: a transposed conv whose kernel tiles its output.

  Attributes:
    in_features: input channels (for the MAC count).
  """

  in_features: int = 0

  def count_macs(self, output_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates per image (read by cnn_jax.summary).

    Args:
      output_shape: (1, H, W, C) of the output.

    Returns:
      Kernel = stride: each output pixel gets one tap per pair of channels
      (not all 2x2 taps, as kernel size x outputs would say).
    """
    return int(np.prod(output_shape[1:])) * self.in_features


class UNet(nn.Module):
  """U-Net family, "same" padding (output size = input size).

  Attributes:
    num_classes: output classes, background (class 0) included.
    width: filters of the first level, doubling per level (the paper: 64).
    depth: 2x2 max pools, i.e. down-steps (the paper: 4); height and width
      must be multiples of 2**depth.
    batch_norm: batch norm after every 3x3 convolution (not in the paper).
    dropout: dropout rate at the end of the contracting path (training only).
    dtype: compute dtype; parameters and batch-norm statistics stay float32.
    conv_impl: one of `cnn_jax.layers.CONV_IMPLS` (see `cnn_jax.layers.conv_class`)
      for the 3x3 and 1x1 convolutions.
  """

  num_classes: int = 2
  width: int = 16
  depth: int = 4
  batch_norm: bool = False
  dropout: float = 0.0
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    layers.check_nhwc(x, "UNet")
    height, width = x.shape[1:3]
    step = 2**self.depth
    if height % step or width % step:
      raise GeometryError(
          f"UNet of depth {self.depth} halves the image {self.depth} times: height and width "
          f"must be multiples of {step}, got {height}x{width}; resize or pad the images, e.g. "
          f"to {-(-height // step) * step}x{-(-width // step) * step}"
      )
    # The paper's initialization: Gaussian, standard deviation sqrt(2 / fan-in).
    init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
    conv = functools.partial(
        layers.conv_class(self.conv_impl),
        dtype=self.dtype,
        kernel_init=init,
        use_bias=not self.batch_norm,  # batch norm's bias replaces it
    )
    norm = layers.batch_norm(train, self.dtype) if self.batch_norm else None
    skips = []
    for level in range(self.depth):
      x = DoubleConv(self.width * 2**level, conv, norm, name=f"down{level}")(x)
      skips.append(x)
      x = layers.MaxPool(2, 2, name=f"pool{level}")(x)
    x = DoubleConv(self.width * 2**self.depth, conv, norm, name="bottom")(x)
    x = nn.Dropout(self.dropout, deterministic=not train, name="bottom_dropout")(x)
    for level in reversed(range(self.depth)):
      features = self.width * 2**level
      x = UpConvolution(
          features,
          (2, 2),
          (2, 2),
          padding="VALID",
          dtype=self.dtype,
          kernel_init=init,
          in_features=x.shape[-1],
          name=f"up{level}",
      )(x)
      x = jnp.concatenate([skips[level], x], axis=-1)
      x = DoubleConv(features, conv, norm, name=f"up{level}_conv")(x)
    x = layers.conv_class(self.conv_impl)(
        self.num_classes, (1, 1), dtype=self.dtype, kernel_init=init, name="score"
    )(x)
    return x.astype(jnp.float32)


unet = functools.partial(UNet, width=64, depth=4, dropout=0.5)
unet_small = functools.partial(UNet, width=16, depth=4)

# YNNPACK off trained unet_small fastest (experiments/benchmarks/README.md).
FAMILY = registry.Family("unet", head_layers=("score",), xla_cpu_ynn_fusion="", task="segmentation")
PAPER = "Ronneberger, Fischer & Brox 2015, U-Net"
registry.register(
    "unet",
    unet,
    family=FAMILY,
    image_size=512,  # the ISBI 2012 EM images ("same" padding: no 572 tile)
    channels=1,
    num_classes=2,
    paper=f"{PAPER} (64 filters, 4 pools; 'same' padding)",
)
registry.register(
    "unet_small",
    unet_small,
    family=FAMILY,
    image_size=64,
    channels=1,
    num_classes=2,
    paper=f"{PAPER}, 16 filters for 64x64 grey images ('same' padding)",
)
