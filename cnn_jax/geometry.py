"""The lecture's convolution arithmetic as code.

Output sizes follow the lecture's formulas and refuse to round: a layer whose
hyper-parameters do not tile the input exactly is a design error that the
lecture asks us to catch, not to paper over with a silent floor.

    conv:  (W - F + 2P) / S + 1
    pool:  (W - F) / S + 1

Parameter counts are given with and without parameter sharing, which is the
lecture's argument for convolutions over fully-connected layers.
"""

from __future__ import annotations

import math

from cnn_jax.errors import GeometryError


def _whole_quotient(numerator: int, stride: int, formula: str, layer: str | None) -> int:
  if stride <= 0:
    raise GeometryError(f"{_where(layer)}stride must be positive, got S={stride}")
  if numerator < 0:
    raise GeometryError(
        f"{_where(layer)}{formula}: the window is larger than the (padded) "
        "input; use a smaller kernel or more padding"
    )
  if numerator % stride:
    raise GeometryError(
        f"{_where(layer)}{formula} gives {numerator}/{stride} + 1, not a whole "
        "number; change the kernel, padding or stride so that the windows tile "
        "the input"
    )
  return numerator // stride + 1


def _where(layer: str | None) -> str:
  return f"layer {layer!r}: " if layer else ""


def conv_output_size(
    size: int, kernel: int, padding: int | tuple[int, int], stride: int, layer: str | None = None
) -> int:
  """Spatial output size of a convolution, (W - F + 2P) / S + 1.

  Args:
    size: input width (or height) W.
    kernel: filter size F.
    padding: zero padding P added on each side, or a (low, high) pair for
      asymmetric padding (then 2P stands for low + high).
    stride: stride S.
    layer: optional layer name, quoted in the error message.

  Returns:
    The output width (or height).

  Raises:
    GeometryError: if (W - F + 2P) / S is not a non-negative whole number.
  """
  if isinstance(padding, int):
    total, shown = 2 * padding, f"P={padding}"
  else:
    total, shown = sum(padding), f"P=(low {padding[0]}, high {padding[1]})"
  formula = f"(W - F + 2P)/S + 1 with W={size}, F={kernel}, {shown}, S={stride}"
  return _whole_quotient(size - kernel + total, stride, formula, layer)


def pool_output_size(size: int, window: int, stride: int, layer: str | None = None) -> int:
  """Spatial output size of a pooling layer, (W - F) / S + 1.

  Args:
    size: input width (or height) W.
    window: pooling window F.
    stride: stride S.
    layer: optional layer name, quoted in the error message.

  Returns:
    The output width (or height).

  Raises:
    GeometryError: if (W - F) / S is not a non-negative whole number.
  """
  formula = f"(W - F)/S + 1 with W={size}, F={window}, S={stride}"
  return _whole_quotient(size - window, stride, formula, layer)


def conv_params_per_filter(kernel: int, in_channels: int, bias: bool = True) -> int:
  """Weights of one filter: F * F * D (+ 1 bias).

  Args:
    kernel: filter size F.
    in_channels: input depth D.
    bias: whether the filter has a bias.

  Returns:
    The number of parameters of a single filter (= of a single neuron).
  """
  return kernel * kernel * in_channels + int(bias)


def conv_layer_counts(
    size: int,
    in_channels: int,
    kernel: int,
    stride: int,
    padding: int,
    filters: int,
    bias: bool = True,
) -> dict:
  """Neurons and parameters of a conv layer, with and without sharing.

  Without parameter sharing every output neuron has its own F*F*D (+1)
  weights; with sharing all neurons of one depth slice use the same filter.

  Args:
    size: input width W (square input).
    in_channels: input depth D.
    kernel: filter size F.
    stride: stride S.
    padding: zero padding P.
    filters: number of filters K (output depth).
    bias: whether each filter has a bias.

  Returns:
    A dict with `output_shape` (W2, H2, K), `neurons`, `params_per_neuron`,
    `params_without_sharing` and `params_with_sharing`.
  """
  out = conv_output_size(size, kernel, padding, stride)
  per_neuron = conv_params_per_filter(kernel, in_channels, bias)
  neurons = out * out * filters
  return {
      "output_shape": (out, out, filters),
      "neurons": neurons,
      "params_per_neuron": per_neuron,
      "params_without_sharing": neurons * per_neuron,
      "params_with_sharing": filters * per_neuron,
  }


def dense_params(input_shape: tuple[int, ...], neurons: int = 1, bias: bool = True) -> int:
  """Parameters of a fully-connected layer on an input of the given shape.

  Args:
    input_shape: shape of one input example, e.g. (32, 32, 3).
    neurons: number of output neurons.
    bias: whether each neuron has a bias.

  Returns:
    neurons * (prod(input_shape) + bias).
  """
  return neurons * (math.prod(input_shape) + int(bias))
