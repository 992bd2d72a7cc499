"""Fully convolutional networks (Long, Shelhamer & Darrell 2015) on zoo backbones.

A classification network of the zoo becomes a segmentation network: its
features at strides 32, 16 and 8 (taken by layer name) are scored per class
by 1x1 convolutions, and the coarse scores are upsampled back to the input
resolution by transposed convolutions initialized to bilinear interpolation
(Section 3.3). FCN-32s upsamples the stride-32 scores by 32 at once; the skip
architectures of Section 4.2 first refine them: FCN-16s adds the stride-16
scores to their 2x upsampling, FCN-8s then also the stride-8 scores, before
the final 16x or 8x upsampling. As in the paper the score layers start at
zero (the net starts out predicting every class equally, and the skips start
as no-ops) and every upsampling is learned from its bilinear start.

The backbone is the zoo model itself, built by the registry under the
submodule name "backbone", so its parameters are exactly the zoo model's
(ImageNet weights that load into the zoo model load into
params["backbone"]). Its features are caught with `nn.intercept_methods`
while it runs: the hook is plain Python around the backbone's call, so the
features are ordinary intermediate values of the same trace (jit, grad and
vmap see nothing special), no backbone has to be changed to sow them, and
nothing is stored in a collection. (`capture_intermediates` is an argument
of the outermost `apply`, which the FCN cannot turn on for its child alone,
and it would return every layer's output as state.)

The backbone runs whole, classifier included, because its parameters must
be created at init to stay the zoo model's tree; the classifier's output is
unused, so under jit XLA removes its computation (a test checks the
compiled program), and it gets zero gradient.

Alignment: a stride-s feature's pixel j stands for input pixels
[j*s, (j+1)*s), centre j*s + s/2 - 1/2 (the half-pixel convention of
`jax.image.resize` and of torchvision's FCN, `F.interpolate(...,
align_corners=False)`). A 2f x 2f transposed convolution with stride f puts
that centre at j*f + f - 1/2; cropping f/2 on each side moves it to
j*f + f/2 - 1/2 and leaves exactly f times the input size. The paper's Caffe
nets instead pad the input by 100 and crop by offsets; our backbones pad
"same", so every stride-s feature is exactly (H/s, W/s) and inputs must be
multiples of 32.

VGG (the paper's own backbone): the paper turns fc6 and fc7 into 7x7 and
1x1 convolutions ("convolutionalization"); `fc_as_conv` does that with the
backbone's own fc6/fc7 weights (padding "same" instead of the paper's input
padding of 100), so the stride-32 features are fc7's, as in the paper.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax import layers
from cnn_jax.errors import ArgumentError, GeometryError, UnknownLayerError
from cnn_jax.models import backbone_features, registry

# The feature strides of the fusions, coarsest first.
STRIDES = (32, 16, 8)


def bilinear_kernel(factor: int, channels: int) -> np.ndarray:
  """The paper's bilinear upsampling kernel for a transposed convolution.

  Args:
    factor: the upsampling factor f (the stride); the kernel is 2f x 2f.
    channels: input = output channels; each channel upsamples itself only.

  Returns:
    (2f, 2f, channels, channels) float32 HWIO kernel, zero off the channel
    diagonal (Caffe's `surgery.interp` of the reference code).
  """
  size = 2 * factor
  taps = 1 - np.abs(np.arange(size) - (size - 1) / 2) / factor
  kernel = np.zeros((size, size, channels, channels), np.float32)
  kernel[:, :, np.arange(channels), np.arange(channels)] = np.outer(taps, taps)[..., None]
  return kernel


def _bilinear_init(factor: int):
  def init(key, shape, dtype=jnp.float32):
    del key  # deterministic
    return jnp.asarray(bilinear_kernel(factor, shape[-1]), dtype)

  return init


def transposed_conv_by_blocks(x: jax.Array, kernel: jax.Array, factor: int) -> jax.Array:
  """`lax.conv_transpose(x, kernel, (f, f), "VALID")` (NHWC, HWIO) for a 2f x 2f kernel.

  XLA:CPU computes a transposed convolution as a convolution of the input
  dilated by f, which it runs in a generic loop, slow in training and slower
  still at the tests' LLVM level 0 (experiments/segmentation/README.md). With
  stride f a 2f x 2f kernel lands each input pixel on 2 x 2 output blocks of
  f x f pixels: one matrix product gives every pixel's four blocks, and four
  shifted pads and adds lay them out. Its gradients are matrix products,
  slices and pads too.

  Args:
    x: (N, H, W, C).
    kernel: (2f, 2f, C, O), used as `lax.conv_transpose` uses it (not flipped
      by transpose_kernel).
    factor: the stride f.

  Returns:
    (N, (H + 1) f, (W + 1) f, O), `lax.conv_transpose`'s output.
  """
  f = factor
  n, h, w, c = x.shape
  o = kernel.shape[-1]
  # conv_transpose correlates the dilated input with the kernel: input pixel
  # (i, j) adds kernel[2f-1-a, 2f-1-b] to output (i f + a, j f + b).
  per_pixel = kernel[::-1, ::-1].transpose(2, 0, 1, 3).reshape(c, 4 * f * f * o)
  blocks = (x.reshape(n * h * w, c) @ per_pixel).reshape(n, h, w, 2, f, 2, f, o)
  y = sum(
      jnp.pad(blocks[:, :, :, a, :, b], ((0, 0), (a, 1 - a), (b, 1 - b), (0, 0), (0, 0), (0, 0)))
      for a in (0, 1)
      for b in (0, 1)
  )
  return y.transpose(0, 1, 3, 2, 4, 5).reshape(n, (h + 1) * f, (w + 1) * f, o)


class BilinearUpsampling(nn.Module):
  """Learned upsampling by an even factor f: a 2f x 2f transposed conv, stride f.

  Initialized to bilinear interpolation with half-pixel centres; the output
  is cropped by f/2 on each side to exactly f times the input size. It then
  equals `jax.image.resize(x, ..., "bilinear")` of the zero-padded input: in
  the interior it equals the resize of x itself, and within f/2 pixels of
  the border it fades towards zero where the resize repeats the edge.

  Attributes:
    features: channels in and out (the classes).
    factor: the upsampling factor, even.
    dtype: compute dtype; the kernel stays float32.
  """

  features: int
  factor: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    f = self.factor
    if f < 2 or f % 2:
      raise ArgumentError(f"BilinearUpsampling factor={f}; use an even factor (2, 8, 16, 32)")
    kernel = self.param(
        "kernel", _bilinear_init(f), (2 * f, 2 * f, x.shape[-1], self.features), jnp.float32
    )
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    y = transposed_conv_by_blocks(x, kernel, f)
    return y[:, f // 2 : -(f // 2), f // 2 : -(f // 2), :]

  def count_macs(self, output_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates per image (read by cnn_jax.summary).

    Args:
      output_shape: (1, H, W, C) of the output.

    Returns:
      Each output pixel is reached by 2x2 of the kernel's taps per pair of
      channels (not by all (2f)^2 taps, as kernel size x outputs would say).
    """
    return int(np.prod(output_shape[1:])) * 4 * self.features


class DenseAsConv(nn.Module):
  """A dense layer of a flattened k x k x C map, applied as a k x k convolution.

  The paper's convolutionalization of VGG's fc6 (k = 7) and fc7 (k = 1). The
  weights are the backbone's (passed in), so this layer has no parameters.

  Attributes:
    in_features: the dense layer's inputs, k * k * C.
  """

  in_features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, kernel, bias):
    kernel = dense_as_conv_kernel(kernel, x.shape[-1])
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return y + bias

  def count_macs(self, output_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates per image: the dense layer's, once per output pixel."""
    return int(np.prod(output_shape[1:])) * self.in_features


def dense_as_conv_kernel(kernel: jax.Array, channels: int) -> jax.Array:
  """A dense kernel of NHWC-flattened k x k x C maps as a k x k conv kernel.

  Args:
    kernel: (k * k * C, out), rows in NHWC flattening order (`layers.Flatten`).
    channels: C.

  Returns:
    (k, k, C, out).

  Raises:
    ArgumentError: if the rows are not k * k * C for a whole k.
  """
  rows, out = kernel.shape
  k = math.isqrt(rows // channels)
  if k * k * channels != rows:
    raise ArgumentError(
        f"a dense layer of {rows} inputs is no k x k x {channels} convolution; "
        "fc_as_conv needs the dense layers right after the stride-32 feature"
    )
  return kernel.reshape(k, k, channels, out)


class FCN(nn.Module):
  """FCN-32s / 16s / 8s on a zoo backbone.

  Attributes:
    num_classes: output classes, background (class 0) included.
    backbone: the zoo model's name (cnn_jax.models.names()).
    feature_layers: the backbone's layer paths whose outputs have strides 32,
      16 and 8, in that order (see `introspection.layer_shapes`).
    finest_stride: 32, 16 or 8: FCN-32s, FCN-16s or FCN-8s.
    backbone_kwargs: other fields of the backbone, as (name, value) pairs or
      a mapping (e.g. (("bn_momentum", 0.9),)); dtype and conv_impl are the
      FCN's.
    fc_as_conv: parameter paths, in the backbone, of dense layers applied as
      convolutions after the stride-32 feature, each with ReLU and dropout
      (VGG's ("head/fc6", "head/fc7")).
    fc_dropout: dropout rate after each of those (VGG's 0.5).
    dtype: compute dtype; parameters and batch-norm statistics stay float32.
    conv_impl: one of `cnn_jax.layers.CONV_IMPLS` (see `cnn_jax.layers.conv_class`),
      for the backbone and the score layers.
  """

  num_classes: int = 21
  backbone: str = "resnet18"
  feature_layers: Sequence[str] = ("layer4_1", "layer3_1", "layer2_1")
  finest_stride: int = 8
  backbone_kwargs: Any = ()
  fc_as_conv: Sequence[str] = ()
  fc_dropout: float = 0.5
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    layers.check_nhwc(x, "FCN")
    self._check_arguments(x)
    features = self._backbone_features(x, train)
    score = functools.partial(
        layers.conv_class(self.conv_impl),
        self.num_classes,
        (1, 1),
        dtype=self.dtype,
        kernel_init=nn.initializers.zeros,
        bias_init=nn.initializers.zeros,
    )
    y = score(name="score_32")(features[32])
    stride = 32
    while stride > self.finest_stride:
      y = BilinearUpsampling(self.num_classes, 2, self.dtype, name=f"up_{stride}to{stride // 2}")(y)
      stride //= 2
      y = y + score(name=f"score_{stride}")(features[stride])
    y = BilinearUpsampling(self.num_classes, stride, self.dtype, name=f"up_{stride}to1")(y)
    return y.astype(jnp.float32)

  def _check_arguments(self, x) -> None:
    if self.finest_stride not in STRIDES:
      raise ArgumentError(
          f"finest_stride={self.finest_stride}; choose 32 (FCN-32s), 16 (FCN-16s) or 8 (FCN-8s)"
      )
    if len(self.feature_layers) != len(STRIDES):
      raise ArgumentError(
          f"feature_layers={tuple(self.feature_layers)}; name the backbone's layers of "
          "strides 32, 16 and 8, in that order"
      )
    height, width = x.shape[1:3]
    if height % 32 or width % 32:
      raise GeometryError(
          f"FCN needs height and width that are multiples of 32 (its coarsest features have "
          f"stride 32), got {height}x{width}; resize or pad the images, e.g. to "
          f"{-(-height // 32) * 32}x{-(-width // 32) * 32}"
      )

  def _backbone_features(self, x, train: bool) -> dict[int, jax.Array]:
    """{stride: the backbone's feature of that stride} for the strides this FCN fuses."""
    backbone = backbone_features.zoo_backbone(
        self.backbone, self.dtype, self.conv_impl, self.backbone_kwargs
    )
    # The layers of the strides this FCN fuses (FCN-32s reads one).
    wanted = {s: layer for s, layer in zip(STRIDES, self.feature_layers) if s >= self.finest_stride}
    features = backbone_features.capture(self, backbone, self.backbone, x, train, wanted)
    if self.fc_as_conv:
      features[32] = self._convolutionalized(backbone, features[32], train)
    return features

  def _convolutionalized(self, backbone: nn.Module, x, train: bool):
    params = backbone.variables["params"]
    for path in self.fc_as_conv:
      dense = params
      for key in path.split("/"):
        dense = dense.get(key, {}) if isinstance(dense, Mapping) else {}
      if "kernel" not in dense or "bias" not in dense:
        raise UnknownLayerError(
            f"fc_as_conv: backbone {self.backbone!r} has no dense layer {path!r}; its layers: "
            f"{', '.join(sorted({p.rsplit('/', 1)[0] for p in _paths(params)}))}"
        )
      name = path.split("/")[-1]
      x = DenseAsConv(dense["kernel"].shape[0], self.dtype, name=f"{name}_conv")(
          x, dense["kernel"], dense["bias"]
      )
      x = layers.Activation("relu", name=f"{name}_conv_act")(x)
      x = nn.Dropout(self.fc_dropout, deterministic=not train, name=f"{name}_conv_dropout")(x)
    return x


def _paths(tree, prefix: str = "") -> list[str]:
  if not isinstance(tree, Mapping):
    return [prefix]
  return [p for key, sub in tree.items() for p in _paths(sub, f"{prefix}/{key}" if prefix else key)]


fcn32s = functools.partial(FCN, finest_stride=32)
fcn16s = functools.partial(FCN, finest_stride=16)
fcn8s = functools.partial(FCN, finest_stride=8)

# Each backbone's last layer at strides 32, 16 and 8, and its dense layers to convolutionalize.
BACKBONES: dict[str, dict[str, Any]] = {
    "resnet18": dict(feature_layers=("layer4_1", "layer3_1", "layer2_1")),
    "efficientnet_lite0": dict(feature_layers=("act_head", "blocks_10", "blocks_4")),
    "vgg16": dict(feature_layers=("pool5", "pool4", "pool3"), fc_as_conv=("head/fc6", "head/fc7")),
}

# Every layer whose shape follows num_classes: what fine-tuning re-initializes.
HEAD_LAYERS = (
    "score_32",
    "score_16",
    "score_8",
    "up_32to16",
    "up_16to8",
    "up_32to1",
    "up_16to1",
    "up_8to1",
)
# Convolutions to Eigen trained FCN-8s on Lite0 fastest (experiments/benchmarks/README.md).
FAMILY = registry.Family(
    "fcn",
    head_layers=HEAD_LAYERS,
    xla_cpu_ynn_fusion="-individual_convolution",
    task="segmentation",
)
PAPER = "Long, Shelhamer & Darrell 2015, Fully convolutional networks for semantic segmentation"


# The paper's three nets on its own backbone; FCN-8s, its best, on the
# others (any backbone takes finest_stride=16 or 32 as an override).
REGISTERED = (
    ("vgg16", 32),
    ("vgg16", 16),
    ("vgg16", 8),
    ("resnet18", 8),
    ("efficientnet_lite0", 8),
)


def _register() -> None:
  variants: Mapping[int, Any] = {32: fcn32s, 16: fcn16s, 8: fcn8s}
  for backbone, stride in REGISTERED:
    registry.register(
        f"fcn{stride}s_{backbone}",
        functools.partial(variants[stride], backbone=backbone, **BACKBONES[backbone]),
        family=FAMILY,
        image_size=224,
        num_classes=21,  # PASCAL VOC: 20 classes and background
        paper=f"{PAPER}, FCN-{stride}s on {backbone}",
    )


_register()
