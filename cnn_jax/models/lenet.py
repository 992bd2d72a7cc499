"""LeCun et al.'s LeNets (LeCun, Bottou, Bengio & Haffner 1998): one family class.

The faithful LeNet-5 keeps everything that makes the paper's 60,000
parameters and 340,908 connections: trainable subsampling (a coefficient and
a bias per map), the partial C3 connection table (Table I), the scaled tanh
squashing function and Euclidean RBF output units with fixed centres.
`lenet5_modern` is the same network with ReLU, max pooling, a full C3 and a
dense output.
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
    # The paper's initialization, uniform in +-2.4 / F_i (see `paper_uniform`).
    # A subsampling unit has window**2 = 4 inputs, all weighted by its map's
    # one coefficient: we read its fan-in F_i as those 4 connections (the bias,
    # as for every unit here, not counted), so coefficients start in +-0.6.
    limit = 2.4 / self.window**2
    coefficient = self.param("coefficient", _uniform(limit), (channels,))
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
    return _uniform(2.4 / fan_in)(key, shape, dtype)

  return init


def _uniform(limit):
  """A flax initializer: uniform in +-limit."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -1.0, 1.0) * limit

  return init


class LeNet(nn.Module):
  """LeCun's convolutional networks: C1, S2, C3, S4 [, C5] [, F6] and an output layer.

  Every convolution is 5x5 and valid, every subsampling 2x2 with stride 2, as
  in LeNet-5. The variants are partials of this class (see the registrations
  below).

  Attributes:
    num_classes: output classes (the RBF output supports up to 10).
    maps: the feature maps of C1 and of C3.
    c3_table: the S2 maps that each C3 map reads (LeNet-5: Table I); None:
      every S2 map.
    c5: units of C5, a 5x5 convolution (a full connection on the 5x5 maps of
      a 32x32 input); 0: no C5.
    f6: units of the fully connected F6; 0: no F6.
    subsampling: "trainable" (the paper's: a 2x2 sum times a trainable
      coefficient plus a bias per map, then the squashing function) or
      "max" (2x2 max pooling, nothing after it).
    activation: the units' nonlinearity, a name of `cnn_jax.layers.ACTIVATIONS`.
    output: "rbf" (Euclidean RBF units on F6's 84 outputs, fixed centres)
      or "dense" (a linear layer: the logits).
    weight_init: "paper" (uniform in +-2.4 / F_i, see `paper_uniform`) or
      "lecun_normal".
    dtype: compute dtype; parameters stay float32.
    conv_impl: "auto", "xla", "lecture" or "gemm" (see `cnn_jax.layers.conv_class`).
  """

  num_classes: int = 10
  maps: tuple[int, int] = (6, 16)
  c3_table: tuple[tuple[int, ...], ...] | None = C3_CONNECTIONS
  c5: int = 120
  f6: int = 84
  subsampling: str = "trainable"
  activation: str = "scaled_tanh"
  output: str = "rbf"
  weight_init: str = "paper"
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # LeNets have neither dropout nor batch norm.
    layers.check_nhwc(x, type(self).__name__)
    _check_options(self)
    act = functools.partial(layers.Activation, self.activation)
    x = act(name="C1_act")(_convolution(self, self.maps[0], None, "C1", x))
    x = _subsampling(self, "S2", x)
    x = act(name="C3_act")(_convolution(self, self.maps[1], self.c3_table, "C3", x))
    x = _subsampling(self, "S4", x)
    if self.c5:
      x = act(name="C5_act")(_convolution(self, self.c5, None, "C5", x))
    x = layers.Flatten(name="flatten")(x)
    if self.f6:
      x = act(name="F6_act")(_dense(self, self.f6, "F6")(x))
    if self.output == "rbf":
      logits = EuclideanRBF(self.num_classes, name="output")(x)
    else:
      logits = _dense(self, self.num_classes, "output")(x)
    return logits.astype(jnp.float32)


def _check_options(net: LeNet) -> None:
  """Raises ArgumentError for field values that name no LeNet."""
  for field, allowed in [
      ("subsampling", ("trainable", "max")),
      ("output", ("rbf", "dense")),
      ("weight_init", ("paper", "lecun_normal")),
  ]:
    if getattr(net, field) not in allowed:
      raise ArgumentError(f"LeNet {field}={getattr(net, field)!r}; use one of {allowed}")
  if net.output == "rbf" and net.f6 != 84:
    raise ArgumentError(
        f"the RBF output compares F6's outputs with 84-pixel (7x12) codes; f6={net.f6} "
        "needs output='dense'"
    )


def _kernel_init(net: LeNet, fan_in_axes: tuple[int, ...]):
  if net.weight_init == "paper":
    return paper_uniform(fan_in_axes)
  return nn.initializers.lecun_normal()


def _convolution(net: LeNet, features: int, table, name: str, x: jax.Array) -> jax.Array:
  """A 5x5 valid convolution named `name`, full or reading the input maps of `table`."""
  layers.check_conv_geometry(x, 5, 0, 1, name)
  if table is not None:
    return PartialConv(table, dtype=net.dtype, conv_impl=net.conv_impl, name=name)(x)
  conv = layers.conv_class(net.conv_impl)(
      features,
      kernel_size=(5, 5),
      padding="VALID",
      dtype=net.dtype,
      kernel_init=_kernel_init(net, (0, 1, 2)),
      name=name,
  )
  return conv(x)


def _subsampling(net: LeNet, name: str, x: jax.Array) -> jax.Array:
  """S2 or S4: the paper's trainable subsampling and its squashing, or a max pool."""
  layers.check_pool_geometry(x, 2, 2, name)
  if net.subsampling == "max":
    return layers.MaxPool(name=name)(x)
  x = Subsampling(dtype=net.dtype, name=name)(x)
  return layers.Activation(net.activation, name=f"{name}_act")(x)


def _dense(net: LeNet, features: int, name: str) -> nn.Dense:
  return nn.Dense(features, dtype=net.dtype, kernel_init=_kernel_init(net, (0,)), name=name)


lenet5 = functools.partial(LeNet)
lenet5_modern = functools.partial(
    LeNet,
    c3_table=None,
    subsampling="max",
    activation="relu",
    output="dense",
    weight_init="lecun_normal",
)

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
