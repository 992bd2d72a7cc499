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

# LeNet-1 (Section III-C; the network of LeCun et al. 1990, "Handwritten digit
# recognition with a back-propagation network"): each C3 map reads one or two
# of the 4 S2 maps, by a scheme that paper does not describe. Its published
# totals, 2,578 parameters and 98,442 connections, both fix the number of 5x5
# kernels at 20: 4 maps read one S2 map, 8 read two. Our choice: each S2 map
# alone, the 4 neighbouring pairs, and the 2 opposite pairs twice, so that
# every S2 map feeds 5 of the 12 C3 maps.
LENET1_C3_CONNECTIONS: tuple[tuple[int, ...], ...] = (
    (0,),
    (1,),
    (2,),
    (3,),
    (0, 1),
    (1, 2),
    (2, 3),
    (0, 3),
    (0, 2),
    (1, 3),
    (0, 2),
    (1, 3),
)


def cyclic_table(inputs: int, outputs: int, width: int) -> tuple[tuple[int, ...], ...]:
  """A connection table where output map j reads the `width` input maps from j on, cyclically.

  Args:
    inputs: input maps.
    outputs: output maps.
    width: input maps per output map.

  Returns:
    For each output map, its input maps (j, j + 1, ..., j + width - 1 mod inputs), sorted.
  """
  return tuple(tuple(sorted({(j + i) % inputs for i in range(width)})) for j in range(outputs))


# LeNet-4 (Section III-C): 4 C1 maps, 8 S2 maps "connected in pairs" to them,
# 16 C3 maps, 16 S4 maps, "a fully connected layer with 120 units" and 10
# outputs; "about 17,000 free parameters" and "about 260,000 connections". The
# totals and "fully connected" cannot both hold: 120 units fully connected to
# S4's 16 maps of 5x5 alone have 48,120 parameters. We keep the totals, with
# LeNet-5's own device: C3 and the 120 units (C5, a 5x5 convolution) read only
# some of their input maps. Solving the two totals for the number of 5x5
# kernels gives about 61 in C3 and 560 in C5; the paper gives no tables. Ours:
# C3 map j reads the 4 S2 maps j, ..., j + 3 (mod 8), C5 unit u the 5 S4 maps
# u, ..., u + 4 (mod 16): 64 and 600 kernels, 18,098 parameters and 269,306
# connections.
LENET4_C3_CONNECTIONS = cyclic_table(8, 16, 4)
LENET4_C5_CONNECTIONS = cyclic_table(16, 120, 5)

# The RBF centres: stylized 7x12 bitmaps of the digits in the spirit of the
# paper's Fig. 3 ('#' = +1, '.' = -1). They are constants, not parameters.
# Not Fig. 3's own: the one public transcription of it (mattwang44/
# LeNet-from-Scratch, utils/RBF_initial_weight.py, copied by later
# reimplementations) could not be checked against the figure here, and its
# 0, 2, 4 and 5 carry a bar above the digit and its 4 sits two rows lower
# than the other digits, which look like slips of transcription.
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
  trainable bias, per feature map (2 parameters per map).

  Attributes:
    window: the window's side (and stride).
    maps_per_input: subsampling maps per input map, each with its own
      coefficient and bias (LeNet-4's S2: 2).
    dtype: compute dtype.
  """

  window: int = 2
  maps_per_input: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    if self.maps_per_input > 1:  # output map m reads input map m // maps_per_input
      x = jnp.repeat(x, self.maps_per_input, axis=-1)
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
    s2_maps_per_c1: S2 maps per C1 map, each with its own coefficient
      (LeNet-4: 2); "trainable" subsampling only.
    c3_table: the S2 maps that each C3 map reads (LeNet-5: Table I); None:
      every S2 map.
    c5: units of C5, a 5x5 convolution (a full connection on the 5x5 maps of
      a 32x32 input); 0: no C5.
    c5_table: the S4 maps that each C5 unit reads; None: every S4 map.
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
    conv_impl: one of `cnn_jax.layers.CONV_IMPLS` (see `cnn_jax.layers.conv_class`).
  """

  num_classes: int = 10
  maps: tuple[int, int] = (6, 16)
  s2_maps_per_c1: int = 1
  c3_table: tuple[tuple[int, ...], ...] | None = C3_CONNECTIONS
  c5: int = 120
  c5_table: tuple[tuple[int, ...], ...] | None = None
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
    x = _subsampling(self, "S2", x, self.s2_maps_per_c1)
    x = act(name="C3_act")(_convolution(self, self.maps[1], self.c3_table, "C3", x))
    x = _subsampling(self, "S4", x)
    if self.c5:
      x = act(name="C5_act")(_convolution(self, self.c5, self.c5_table, "C5", x))
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
  if net.s2_maps_per_c1 > 1 and net.subsampling != "trainable":
    raise ArgumentError(
        "s2_maps_per_c1 > 1 needs subsampling='trainable' (a max pool has no coefficients)"
    )
  for name, table, outputs in [
      ("c3_table", net.c3_table, net.maps[1]),
      ("c5_table", net.c5_table, net.c5),
  ]:
    if table is not None and len(table) != outputs:
      raise ArgumentError(f"LeNet {name} lists {len(table)} output maps, the layer has {outputs}")
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


def _subsampling(net: LeNet, name: str, x: jax.Array, maps_per_input: int = 1) -> jax.Array:
  """S2 or S4: the paper's trainable subsampling and its squashing, or a max pool."""
  layers.check_pool_geometry(x, 2, 2, name)
  if net.subsampling == "max":
    return layers.MaxPool(name=name)(x)
  x = Subsampling(maps_per_input=maps_per_input, dtype=net.dtype, name=name)(x)
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

# Section III-C's smaller nets. Their units are the paper's sigmoid units (the
# scaled tanh) and their subsampling LeNet-5's; their outputs, sigmoid units
# in the paper, are a linear layer here whose outputs are the logits, as for
# lenet5_modern (trained with cross-entropy; see cnn_jax.tasks.Classification).
# LeNet-1 on 28x28 input: C1 4@24x24, S2 4@12x12, C3 12@8x8, S4 12@4x4,
# output 10 from 192: 104 + 8 + (20 * 25 + 12) + 24 + 1,930 = 2,578 parameters.
lenet1 = functools.partial(
    LeNet, maps=(4, 12), c3_table=LENET1_C3_CONNECTIONS, c5=0, f6=0, output="dense"
)
# LeNet-4 on 32x32 input: C1 4@28x28, S2 8@14x14, C3 16@10x10, S4 16@5x5,
# C5 120, output 10: 104 + 16 + (64 * 25 + 16) + 32 + (600 * 25 + 120) + 1,210
# = 18,098 parameters.
lenet4 = functools.partial(
    LeNet,
    maps=(4, 16),
    s2_maps_per_c1=2,
    c3_table=LENET4_C3_CONNECTIONS,
    c5_table=LENET4_C5_CONNECTIONS,
    f6=0,
    output="dense",
)

PAPER = "LeCun et al. 1998, Gradient-based learning applied to document recognition"
# YNNPACK off: measured fastest on the CPU for this small net.
FAMILY = registry.Family(
    "lenet",
    head_layers=("output",),
    xla_cpu_ynn_fusion="",
    rbf_output=lambda model: model.output == "rbf",
)
# (name, partial, input size, what of the paper it is), in the zoo's order.
_VARIANTS = (
    ("lenet5", lenet5, 32, PAPER),
    ("lenet5_modern", lenet5_modern, 32, PAPER + " (ReLU, max-pool, full C3)"),
    ("lenet1", lenet1, 28, PAPER + ", Section III-C: LeNet-1 (LeCun et al. 1990's layout)"),
    ("lenet4", lenet4, 32, PAPER + ", Section III-C: LeNet-4 (partial C3 and C5 tables ours)"),
)
for _name, _partial, _size, _paper in _VARIANTS:
  registry.register(
      _name, _partial, family=FAMILY, image_size=_size, channels=1, num_classes=10, paper=_paper
  )
