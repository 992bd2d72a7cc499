"""All-CNN-C (Springenberg, Dosovitskiy, Brox & Riedmiller 2015, Table 2).

"Striving for simplicity": every max pool of the base network is replaced
by a stride-2 3x3 convolution, and the classifier is a 1x1 convolution to
the classes followed by global average pooling; no fully-connected layer.
Dropout: 20% on the input, 50% after each downsampling layer.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import layers
from cnn_jax.models import registry

# (filters, kernel, stride, padding) in the order of Table 2, model C.
LAYERS = (
    (96, 3, 1, 1),
    (96, 3, 1, 1),
    (96, 3, 2, 1),
    (192, 3, 1, 1),
    (192, 3, 1, 1),
    (192, 3, 2, 1),
    (192, 3, 1, 0),
    (192, 1, 1, 0),
)


class AllCNN(nn.Module):
  """All-CNN-C on 32x32x3.

  Attributes:
    num_classes: output classes (the last 1x1 conv's filters).
    input_dropout: dropout rate on the input image.
    dropout: dropout rate after each stride-2 conv.
    dtype: compute dtype; parameters stay float32.
    conv_impl: one of `cnn_jax.layers.CONV_IMPLS` (see `cnn_jax.layers.conv_class`).
  """

  num_classes: int = 10
  input_dropout: float = 0.2
  dropout: float = 0.5
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    layers.check_nhwc(x, "AllCNN")
    conv_cls = functools.partial(layers.conv_class(self.conv_impl), dtype=self.dtype)
    x = nn.Dropout(self.input_dropout, deterministic=not train, name="input_dropout")(x)
    for i, (filters, kernel, stride, pad) in enumerate(LAYERS, start=1):
      x = conv_cls(
          filters, (kernel,) * 2, (stride,) * 2, padding=[(pad, pad)] * 2, name=f"conv{i}"
      )(x)
      x = layers.Activation("relu", name=f"conv{i}_act")(x)
      if stride == 2:
        x = nn.Dropout(self.dropout, deterministic=not train, name=f"conv{i}_dropout")(x)
    # Table 2 lists a ReLU on the class maps too; we keep it, as in the paper.
    x = conv_cls(self.num_classes, (1, 1), name="classifier")(x)
    x = layers.Activation("relu", name="classifier_act")(x)
    x = layers.GlobalAvgPool(name="avgpool")(x)
    return x.astype(jnp.float32)


allcnn_c = AllCNN

# Convolutions to Eigen, YNNPACK's other fusions kept: measured fastest on the CPU.
FAMILY = registry.Family(
    "allcnn", head_layers=("classifier",), xla_cpu_ynn_fusion="-individual_convolution"
)
registry.register(
    "allcnn_c",
    allcnn_c,
    family=FAMILY,
    image_size=32,
    num_classes=10,
    paper="Springenberg et al. 2015, Striving for simplicity, All-CNN-C",
)
