"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998), faithful and modern.

The faithful variant keeps everything that makes the paper's 60,000
parameters and 340,908 connections: trainable subsampling (a coefficient and
a bias per map), the partial C3 connection table (Table I), the scaled tanh
squashing function and Euclidean RBF output units with fixed centres.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax import layers
from cnn_jax.errors import ArgumentError
from cnn_jax.models import registry

# Table I of the paper: the S2 maps that each of the 16 C3 maps reads.
C3_CONNECTIONS: tuple[tuple[int, ...], ...] = (
    (0, 1, 2),
    (1, 2, 3),
    (2, 3, 4),
    (3, 4, 5),
    (0, 4, 5),
    (0, 1, 5),
    (0, 1, 2, 3),
    (1, 2, 3, 4),
    (2, 3, 4, 5),
    (0, 3, 4, 5),
    (0, 1, 4, 5),
    (0, 1, 2, 5),
    (0, 1, 3, 4),
    (1, 2, 4, 5),
    (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)

# The RBF centres: stylized 7x12 bitmaps of the digits in the spirit of the
# paper's Fig. 3 ('#' = +1, '.' = -1). They are constants, not parameters.
_DIGIT_BITMAPS = """
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
..###.. ...#... ..###.. .####.. .....#. ####### ...###. ####### ..###.. ..###..
.#...#. ..##... .#...#. .....#. ....##. #...... ..#.... ......# .#...#. .#...#.
#.....# .#.#... #.....# ......# ...#.#. #...... .#..... .....#. #.....# #.....#
#.....# ...#... ......# .....#. ..#..#. #####.. #...... ....#.. .#...#. #.....#
#.....# ...#... .....#. ..###.. .#...#. .....#. #.###.. ...#... ..###.. .#...##
#.....# ...#... ....#.. .....#. #....#. ......# ##...#. ...#... .#...#. ..###.#
#.....# ...#... ...#... ......# ####### ......# #.....# ..#.... #.....# ......#
#.....# ...#... ..#.... ......# .....#. ......# #.....# ..#.... #.....# .....#.
.#...#. ...#... .#..... .....#. .....#. .....#. .#...#. ..#.... .#...#. ....#..
..###.. .#####. ####### .####.. .....#. #####.. ..###.. ..#.... ..###.. .###...
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
"""


def digit_rbf_centres() -> np.ndarray:
  """The 10 RBF centres as a (10, 84) array of +-1 (row-major 12x7 bitmaps)."""
  rows = [line.split() for line in _DIGIT_BITMAPS.strip().splitlines()]
  bitmaps = np.array([[list(row[d]) for row in rows] for d in range(10)])
  assert bitmaps.shape == (10, 12, 7), bitmaps.shape
  return np.where(bitmaps == "#", 1.0, -1.0).reshape(10, 84).astype(np.float32)


class Subsampling(nn.Module):
  """The paper's S2/S4: sum a 2x2 window, times a trainable coefficient, plus a
  trainable bias, per feature map (2 parameters per map)."""

  window: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    coefficient = self.param("coefficient", nn.initializers.constant(0.25), (channels,))
    bias = self.param("bias", nn.initializers.zeros, (channels,))
    x, coefficient, bias = nn.dtypes.promote_dtype(x, coefficient, bias, dtype=self.dtype)
    summed = nn.avg_pool(x, (self.window,) * 2, (self.window,) * 2) * self.window**2
    return summed * coefficient + bias

  def count_macs(self, output_shape: tuple[int, ...]) -> int:
    # Each output unit adds window**2 inputs weighted by its map's coefficient.
    return int(np.prod(output_shape[1:])) * self.window**2


class PartialConv(nn.Module):
  """A convolution where output map j reads only the input maps `table[j]`.

  Only the connected kernels are parameters: `kernel` has shape
  (F, F, number of connections), so C3 holds exactly 60 * 25 + 16 weights.
  """

  table: tuple[tuple[int, ...], ...] = C3_CONNECTIONS
  kernel_size: int = 5
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    in_maps = x.shape[-1]
    pairs = [(i, j) for j, inputs in enumerate(self.table) for i in inputs]
    fan_in = [len(inputs) * self.kernel_size**2 for inputs in self.table]
    # The paper's initialization (see `paper_uniform`), with each output map's
    # own fan-in: maps reading 3, 4 or 6 inputs get different ranges.
    limits = jnp.array([2.4 / fan_in[j] for _, j in pairs])

    def init(key, shape, dtype=jnp.float32):
      return jax.random.uniform(key, shape, dtype, -1.0, 1.0) * limits

    k = self.kernel_size
    kernel = self.param("kernel", init, (k, k, len(pairs)))
    bias = self.param("bias", nn.initializers.zeros, (len(self.table),))
    inputs, outputs = (np.array(v) for v in zip(*pairs))
    dense = jnp.zeros((k, k, in_maps, len(self.table)), kernel.dtype)
    dense = dense.at[:, :, inputs, outputs].set(kernel)
    x, dense, bias = nn.dtypes.promote_dtype(x, dense, bias, dtype=self.dtype)
    conv = layers.conv_general_dilated_fn(self.conv_impl)
    y = conv(x, dense, (1, 1), [(0, 0), (0, 0)], dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias


class EuclideanRBF(nn.Module):
  """Output units y_i = sum_j (x_j - w_ij)^2 with fixed centres w; the logits
  are -y (the closest centre is the most probable class)."""

  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    if self.num_classes > 10:
      raise ArgumentError(
          "the faithful LeNet-5 RBF layer has 10 digit centres; "
          "use lenet5_modern for more classes"
      )
    # float32 even under bfloat16 compute: distances reach ~340, where bf16
    # would resolve only steps of 2 and blur the logits.
    x = x.astype(jnp.float32)
    centres = jnp.asarray(digit_rbf_centres()[: self.num_classes])
    distance = jnp.sum(jnp.square(x[:, None, :] - centres[None]), axis=-1)
    return -distance

  def count_macs(self, output_shape: tuple[int, ...]) -> int:
    return output_shape[-1] * 84


def paper_uniform(fan_in_axes: tuple[int, ...] = (0, 1, 2)):
  """The paper's initialization: uniform in +-2.4 / F_i, F_i the unit's fan-in.

  Args:
    fan_in_axes: the kernel axes that make up the fan-in ((0, 1, 2) for an
      HWIO conv kernel, (0,) for a dense kernel).

  Returns:
    A flax initializer.
  """

  def init(key, shape, dtype=jnp.float32):
    fan_in = int(np.prod([shape[a] for a in fan_in_axes]))
    return jax.random.uniform(key, shape, dtype, -1.0, 1.0) * (2.4 / fan_in)

  return init


class LeNet5(nn.Module):
  """LeNet-5 on 32x32x1 input.

  Attributes:
    num_classes: output classes (the faithful RBF output supports up to 10).
    faithful: the paper's network (subsampling, C3 table, scaled tanh, RBF
      output) if True; otherwise the modern one (ReLU, max-pool, full C3,
      dense output).
    dtype: compute dtype; parameters stay float32.
    conv_impl: "auto", "xla", "lecture" or "gemm" (see `cnn_jax.layers.conv_class`).
  """

  num_classes: int = 10
  faithful: bool = True
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # LeNet-5 has neither dropout nor batch norm.
    layers.check_nhwc(x, "LeNet5")
    act = "scaled_tanh" if self.faithful else "relu"
    conv_init = paper_uniform((0, 1, 2)) if self.faithful else nn.initializers.lecun_normal()
    dense_init = paper_uniform((0,)) if self.faithful else nn.initializers.lecun_normal()
    conv = functools.partial(
        layers.conv_class(self.conv_impl),
        kernel_size=(5, 5),
        padding="VALID",
        dtype=self.dtype,
        kernel_init=conv_init,
    )
    dense = functools.partial(nn.Dense, dtype=self.dtype, kernel_init=dense_init)
    if self.faithful:
      pool = functools.partial(Subsampling, dtype=self.dtype)
      c3 = PartialConv(dtype=self.dtype, conv_impl=self.conv_impl, name="C3")
    else:
      pool = layers.MaxPool
      c3 = conv(16, name="C3")

    layers.check_conv_geometry(x, 5, 0, 1, "C1")
    x = layers.Activation(act, name="C1_act")(conv(6, name="C1")(x))
    layers.check_pool_geometry(x, 2, 2, "S2")
    x = pool(name="S2")(x)
    if self.faithful:
      x = layers.Activation(act, name="S2_act")(x)
    layers.check_conv_geometry(x, 5, 0, 1, "C3")
    x = layers.Activation(act, name="C3_act")(c3(x))
    layers.check_pool_geometry(x, 2, 2, "S4")
    x = pool(name="S4")(x)
    if self.faithful:
      x = layers.Activation(act, name="S4_act")(x)
    layers.check_conv_geometry(x, 5, 0, 1, "C5")
    x = layers.Activation(act, name="C5_act")(conv(120, name="C5")(x))
    x = layers.Flatten(name="flatten")(x)
    x = layers.Activation(act, name="F6_act")(dense(84, name="F6")(x))
    if self.faithful:
      logits = EuclideanRBF(self.num_classes, name="output")(x)
    else:
      logits = dense(self.num_classes, name="output")(x)
    return logits.astype(jnp.float32)


lenet5 = functools.partial(LeNet5, faithful=True)
lenet5_modern = functools.partial(LeNet5, faithful=False)

PAPER = "LeCun et al. 1998, Gradient-based learning applied to document recognition"
# YNNPACK off: measured fastest on the CPU for this small net.
FAMILY = registry.Family("lenet", head_layers=("output",), xla_cpu_ynn_fusion="")
registry.register(
    "lenet5", lenet5, family=FAMILY, image_size=32, channels=1, num_classes=10, paper=PAPER
)
registry.register(
    "lenet5_modern",
    lenet5_modern,
    family=FAMILY,
    image_size=32,
    channels=1,
    num_classes=10,
    paper=PAPER + " (ReLU, max-pool, full C3)",
)
