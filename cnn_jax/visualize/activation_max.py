"""Activation maximization: the input that excites a class or a channel most.

Gradient ascent on the input, as lucid does it (Olah et al. 2017, "Feature
Visualization"): the image is parameterized so that the optimizer prefers
natural-looking pictures, and every step sees a randomly jittered, scaled and
rotated copy, so that only patterns that survive small transformations are
reinforced ("transformation robustness").

Parameterizations:

    pixel      sigmoid(raw pixels)
    fourier    sigmoid(colour_decorrelate(irfft2(spectrum / max(|f|, 1/max(H, W)))))

Objectives:

    ("logit", class_index)                 that logit of the network
    ("channel", layer_name, channel_index) mean of that channel of a layer

The network sees (image - mean) / std with the image in [0, 1], as in
training. The whole ascent is one jitted `lax.scan`; step i draws its
transformation from `jax.random.fold_in(jax.random.key(seed), i)`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnn_jax.data import augment
from cnn_jax.visualize import probe

Array = jax.Array
Objective = tuple[Any, ...]

PARAMETERIZATIONS = ("pixel", "fourier")
OBJECTIVE_FORMS = "('logit', class_index) or ('channel', layer_name, channel_index)"

# lucid's square root of the ImageNet colour covariance; its columns mix
# decorrelated components into RGB. Dividing by the largest column norm keeps
# a unit component from leaving the sigmoid's useful range.
_COLOR_CORRELATION_SVD_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32
)
_COLOR_CORRELATION = (
    _COLOR_CORRELATION_SVD_SQRT / np.linalg.norm(_COLOR_CORRELATION_SVD_SQRT, axis=0).max()
)

# lucid's initial standard deviation of the parameters: small enough that the
# first image is nearly uniform gray (sigmoid(0) = 0.5), so the ascent, not
# the initial noise, decides what appears.
_INIT_STD = 0.01
# lucid divides the Fourier image by 4: the 1/f boost sums many low
# frequencies into each pixel, which would otherwise saturate the sigmoid.
_FOURIER_GAIN = 0.25
# Transformations fill uncovered pixels with mid-gray, as lucid's padding
# does; black would be an edge that the ascent learns to exploit.
_FILL = 0.5
# The initial parameters get their own key; the steps use fold_in(key, step)
# with step < steps, which can never reach this index.
_INIT_STREAM = 2**32 - 1


# ----------------------------------------------------------------------------
# Public API.


def total_variation(image: Array) -> Array:
  """Mean absolute difference of vertically and horizontally adjacent pixels.

  Every pair of neighbours (in both directions, each channel separately)
  counts once, so the value does not grow with the image size.

  Args:
    image: (H, W) or (H, W, C) float image.

  Returns:
    A float scalar; 0 for a constant image (or one without neighbours).

  Raises:
    ValueError: if the image is not (H, W) or (H, W, C).
  """
  if image.ndim not in (2, 3):
    raise ValueError(
        f"total_variation: expects an (H, W) or (H, W, C) image, " f"got shape {tuple(image.shape)}"
    )
  down = jnp.abs(jnp.diff(image, axis=0))
  right = jnp.abs(jnp.diff(image, axis=1))
  pairs = down.size + right.size
  if not pairs:
    return jnp.zeros((), image.dtype)
  return (down.sum() + right.sum()) / pairs


def activation_maximization(
    model: nn.Module,
    variables: Any,
    input_shape: Sequence[int],
    objective: Objective,
    *,
    steps: int = 256,
    learning_rate: float = 0.05,
    parameterization: str = "fourier",
    jitter: int = 2,
    scale: tuple[float, float] = (0.95, 1.05),
    rotate_degrees: float = 5.0,
    l2: float = 0.0,
    tv: float = 0.0,
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
    seed: int = 0,
) -> dict[str, Array]:
  """Finds an image that maximizes a logit or a channel's mean activation.

  Adam ascends objective - l2 * mean(image**2) - tv * total_variation(image),
  where the objective is measured on a randomly transformed copy of the image
  (shift, zoom, rotation; fresh every step) and the penalties on the image
  itself.

  Args:
    model: flax module called as `model.apply(variables, x, train=False)`,
      returning (B, classes) logits for normalized float NHWC `x`.
    variables: its variables.
    input_shape: (H, W, C) of one image.
    objective: ("logit", class_index) or ("channel", layer_name,
      channel_index), with layer names from `probe.layer_names`.
    steps: number of Adam steps.
    learning_rate: Adam's learning rate.
    parameterization: "pixel" or "fourier" (see the module docstring).
    jitter: largest shift per axis, in whole pixels.
    scale: (low, high) range of the random zoom.
    rotate_degrees: largest random rotation, in degrees.
    l2: weight of the mean squared pixel value penalty.
    tv: weight of the total variation penalty.
    mean: per-channel (or one shared) mean that normalization subtracts.
    std: per-channel (or one shared) standard deviation it divides by.
    seed: seed of the initial image and of the transformations.

  Returns:
    {"image": float32 (H, W, C) final image in [0, 1], untransformed;
     "objective": float32 (steps,) objective without penalties before each
     step's update, on that step's transformed image}.

  Raises:
    ValueError: on a malformed or out-of-range objective or setting; the
      one-line message names the valid forms or range.
    probe.UnknownLayerError: if the objective names a layer the model lacks.
  """
  input_shape = tuple(input_shape)
  _check_settings(
      input_shape,
      steps,
      learning_rate,
      parameterization,
      jitter,
      scale,
      rotate_degrees,
      l2,
      tv,
      seed,
  )
  objective = _check_objective(model, variables, input_shape, objective)
  mean, std = _normalization(mean, std, channels=input_shape[-1])
  hyper = _traced_settings(learning_rate, l2, tv, jitter, scale, rotate_degrees, mean, std, seed)
  image, values = _ascend(model, objective, input_shape, steps, parameterization, variables, hyper)
  return {"image": image, "objective": values}


def _traced_settings(
    learning_rate, l2, tv, jitter, scale, rotate_degrees, mean, std, seed
) -> dict[str, Array]:
  """The ascent's numbers as arrays of fixed dtypes, for `_ascend` to trace.

  Numbers are traced, not baked in, so that runs that differ only in them
  (a penalty sweep, another seed) share one compiled ascent; fixed dtypes
  keep tv=0 and tv=0.5 from tracing as int and float.
  """
  return {
      "learning_rate": jnp.float32(learning_rate),
      "l2": jnp.float32(l2),
      "tv": jnp.float32(tv),
      "jitter": jnp.int32(jitter),
      "scale": jnp.asarray(scale, jnp.float32),
      "rotate_degrees": jnp.float32(rotate_degrees),
      "mean": jnp.asarray(mean),
      "std": jnp.asarray(std),
      "seed": jnp.int32(seed),
  }


# ----------------------------------------------------------------------------
# Checks on the arguments (Python values, before anything is traced).


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ValueError(f"activation_maximization: {message}")


def _check_settings(
    input_shape: tuple[int, ...],
    steps: int,
    learning_rate: float,
    parameterization: str,
    jitter: int,
    scale: tuple[float, float],
    rotate_degrees: float,
    l2: float,
    tv: float,
    seed: int,
) -> None:
  _require(
      len(input_shape) == 3 and all(_is_int(n) and n > 0 for n in input_shape),
      f"input_shape must be (H, W, C) of positive integers, got {input_shape}",
  )
  _require(_is_int(steps) and steps >= 1, f"steps must be an integer >= 1, got {steps!r}")
  _require(learning_rate > 0, f"learning_rate must be > 0, got {learning_rate}")
  _require(
      parameterization in PARAMETERIZATIONS,
      f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}",
  )
  _require(
      _is_int(jitter) and jitter >= 0,
      f"jitter must be a whole number of pixels >= 0, got {jitter!r}",
  )
  _require(
      len(scale) == 2 and 0 < scale[0] <= scale[1],
      f"scale must be (low, high) with 0 < low <= high, got {scale}",
  )
  _require(rotate_degrees >= 0, f"rotate_degrees must be >= 0, got {rotate_degrees}")
  _require(l2 >= 0 and tv >= 0, f"penalties must be >= 0, got l2={l2}, tv={tv}")
  _require(
      _is_int(seed) and -(2**31) <= seed < 2**31, f"seed must be a 32-bit integer, got {seed!r}"
  )


def _is_int(value: Any) -> bool:
  # bool is an int, but jitter=True or class index True is a slip, not a number.
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _normalization(
    mean: Sequence[float], std: Sequence[float], channels: int
) -> tuple[np.ndarray, np.ndarray]:
  """(mean, std) as float32 (C,) vectors; a single value serves every channel."""
  mean, std = (np.asarray(values, np.float32).reshape(-1) for values in (mean, std))
  for name, values in (("mean", mean), ("std", std)):
    _require(
        values.size in (1, channels),
        f"{name} must have 1 or {channels} values (one per channel), got {values.size}",
    )
  _require(bool((std > 0).all()), f"std must be > 0, got {std.tolist()}")
  return np.broadcast_to(mean, (channels,)), np.broadcast_to(std, (channels,))


def _check_objective(
    model: nn.Module, variables: Any, input_shape: tuple[int, ...], objective: Objective
) -> Objective:
  """The objective with plain-int indices, after checking it against the model.

  Args:
    model: the flax model.
    variables: its variables.
    input_shape: (H, W, C).
    objective: as for `activation_maximization`.

  Returns:
    ("logit", int) or ("channel", str, int).

  Raises:
    ValueError: on an unknown form or an index out of range.
    probe.UnknownLayerError: on an unknown layer name.
  """
  form = tuple(objective) if isinstance(objective, (tuple, list)) else ()
  x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  if len(form) == 2 and form[0] == "logit":
    logits = jax.eval_shape(lambda v, inputs: model.apply(v, inputs, train=False), variables, x)
    size = logits.shape[-1]
    what = f"class index (the model has {size} classes)"
    return "logit", _check_index(form, form[1], size, what)
  if len(form) == 3 and form[0] == "channel" and isinstance(form[1], str):
    layer = form[1]
    output = jax.eval_shape(
        lambda v, inputs: probe.apply_with_layer(model, v, inputs, layer)[1], variables, x
    )
    shape = tuple(getattr(output, "shape", ()))
    _require(
        len(shape) >= 2,
        f"objective {form!r}: layer {layer!r} has output shape " f"{shape}, without a channel axis",
    )
    what = f"channel index (layer {layer!r} has {shape[-1]} channels)"
    return "channel", layer, _check_index(form, form[2], shape[-1], what)
  raise ValueError(
      f"activation_maximization: objective must be {OBJECTIVE_FORMS}, " f"got {objective!r}"
  )


def _check_index(form: Objective, index: Any, size: int, what: str) -> int:
  _require(
      _is_int(index) and 0 <= index < size,
      f"objective {form!r}: {what} must be an integer in [0, {size - 1}], got {index!r}",
  )
  return int(index)


# ----------------------------------------------------------------------------
# Image parameterizations: parameters -> (H, W, C) image in [0, 1].


def _init_params(key: Array, input_shape: tuple[int, ...], parameterization: str) -> dict:
  height, width, channels = input_shape
  if parameterization == "pixel":
    return {"pixels": _INIT_STD * jax.random.normal(key, input_shape)}
  # Channel-first, the layout in which irfft2 transforms the last two axes.
  shape = (channels, height, width // 2 + 1)
  real_key, imag_key = jax.random.split(key)
  return {
      "real": _INIT_STD * jax.random.normal(real_key, shape),
      "imag": _INIT_STD * jax.random.normal(imag_key, shape),
  }


def _to_image(params: dict, input_shape: tuple[int, ...], parameterization: str) -> Array:
  if parameterization == "pixel":
    return jax.nn.sigmoid(params["pixels"])
  return jax.nn.sigmoid(_decorrelate_colors(_fourier_pixels(params, input_shape)))


def _spectrum_scale(height: int, width: int) -> np.ndarray:
  """1 / max(|f|, 1 / max(H, W)) on irfft2's (H, W // 2 + 1) frequency grid."""
  freqs = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :])
  # The floor caps the DC term at the lowest frequency's gain instead of 1/0.
  return (1.0 / np.maximum(freqs, 1.0 / max(height, width))).astype(np.float32)


def _fourier_pixels(params: dict, input_shape: tuple[int, ...]) -> Array:
  """(H, W, C) unbounded pixels from a 1/f-scaled spectrum (lucid's fft_image)."""
  height, width, _ = input_shape
  spectrum = jax.lax.complex(params["real"], params["imag"]) * _spectrum_scale(height, width)
  # "ortho" is lucid's sqrt(H * W) factor on top of irfft2's default 1/(H * W):
  # it keeps the pixel scale independent of the image size.
  pixels = jnp.fft.irfft2(spectrum, s=(height, width), norm="ortho")
  return _FOURIER_GAIN * jnp.moveaxis(pixels, 0, -1)


def _decorrelate_colors(pixels: Array) -> Array:
  # Only RGB has a measured colour covariance; other channel counts (grayscale)
  # have nothing to decorrelate.
  if pixels.shape[-1] != 3:
    return pixels
  return pixels @ jnp.asarray(_COLOR_CORRELATION).T


# ----------------------------------------------------------------------------
# The ascent.


def _random_transform(key: Array, image: Array, hyper: dict) -> Array:
  """Random integer shift, zoom and rotation of the (H, W, C) image."""
  shift_key, zoom_key, angle_key = jax.random.split(key, 3)
  jitter = hyper["jitter"]
  shift = jax.random.randint(shift_key, (2,), -jitter, jitter + 1).astype(jnp.float32)
  low, high = hyper["scale"]
  zoom = jax.random.uniform(zoom_key, (), minval=low, maxval=high)
  degrees = hyper["rotate_degrees"]
  angle = jax.random.uniform(angle_key, (), minval=-degrees, maxval=degrees)
  # warp fills with zero, so warping the deviation from the fill colour fills
  # with that colour.
  return augment.warp(image - _FILL, angle=angle, zoom=zoom, shift=shift) + _FILL


def _objective_fn(model: nn.Module, objective: Objective) -> Callable[[Any, Array], Array]:
  """f(variables, normalized (1, H, W, C) batch) -> the objective, float32."""
  if objective[0] == "logit":
    index = objective[1]

    def logit(variables: Any, x: Array) -> Array:
      return model.apply(variables, x, train=False)[0, index].astype(jnp.float32)

    return logit
  _, layer, channel = objective

  def channel_mean(variables: Any, x: Array) -> Array:
    _, output = probe.apply_with_layer(model, variables, x, layer)
    return output[..., channel].astype(jnp.float32).mean()

  return channel_mean


def _ascend_impl(
    model: nn.Module,
    objective: Objective,
    input_shape: tuple[int, ...],
    steps: int,
    parameterization: str,
    variables: Any,
    hyper: dict,
) -> tuple[Array, Array]:
  """(final image, objective per step); see `activation_maximization`."""
  measure = _objective_fn(model, objective)
  to_image = functools.partial(
      _to_image, input_shape=input_shape, parameterization=parameterization
  )
  optimizer = optax.adam(hyper["learning_rate"])
  key = jax.random.key(hyper["seed"])

  def loss(params, step_key):
    image = to_image(params)
    seen = _random_transform(step_key, image, hyper)
    value = measure(variables, ((seen - hyper["mean"]) / hyper["std"])[None])
    penalty = hyper["l2"] * jnp.mean(image**2) + hyper["tv"] * total_variation(image)
    return penalty - value, value

  def step(carry, index):
    params, opt_state = carry
    grads, value = jax.grad(loss, has_aux=True)(params, jax.random.fold_in(key, index))
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), value

  params = _init_params(jax.random.fold_in(key, _INIT_STREAM), input_shape, parameterization)
  (params, _), values = jax.lax.scan(step, (params, optimizer.init(params)), jnp.arange(steps))
  return to_image(params).astype(jnp.float32), values


# The model and the objective's structure shape the program; everything numeric
# is an argument, so one compile serves every value of it.
_ascend = jax.jit(_ascend_impl, static_argnums=(0, 1, 2, 3, 4))
