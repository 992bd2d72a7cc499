"""The augmentation ops: pure functions of one PRNG key and one float image (H, W, C).

Each is registered by name in `OPS`, which `spec.parse` and `spec.from_spec`
read; see the package docstring for the list and the conventions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

from cnn_jax.errors import ArgumentError

Array = jax.Array

# ITU-R BT.601 luma, the grayscale that torchvision and tf.image use.
_LUMA = (0.299, 0.587, 0.114)

# Inception (and torchvision) try this many random boxes before falling back to
# a central one; drawing them all at once keeps the shape static under jit.
_BOX_ATTEMPTS = 10


# ----------------------------------------------------------------------------
# Checks on static arguments (Python numbers, checked while tracing).


def _require(condition: bool, op: str, message: str) -> None:
  if not condition:
    raise ArgumentError(f"augment op {op!r}: {message}")


def _check_image(image: Array, op: str) -> None:
  _require(
      image.ndim == 3,
      op,
      f"expects one (H, W, C) image, got shape {tuple(image.shape)}; "
      "use from_spec() for NHWC batches",
  )


# ----------------------------------------------------------------------------
# Resampling: the one place where images are read at non-integer positions.


def _resample(image: Array, matrix: Array, offset: Array, mode: str) -> Array:
  """Bilinear sample of `image` at matrix @ (row, col) + offset per pixel.

  Args:
    image: (H, W, C).
    matrix: (2, 2) map from output pixel (row, col) to input position.
    offset: (2,) added to the mapped position.
    mode: "constant" (zero outside the image) or "nearest" (edge pixels).

  Returns:
    (H, W, C) image of the same dtype.
  """
  height, width = image.shape[:2]
  rows, cols = jnp.meshgrid(
      jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij"
  )
  src_rows = matrix[0, 0] * rows + matrix[0, 1] * cols + offset[0]
  src_cols = matrix[1, 0] * rows + matrix[1, 1] * cols + offset[1]

  def sample(channel):
    return map_coordinates(channel, [src_rows, src_cols], order=1, mode=mode)

  # One 2-D interpolation per channel: interpolating along the channel axis
  # too would double the gathers for weights that are always zero.
  return jax.vmap(sample, in_axes=2, out_axes=2)(image)


def warp(
    image: Array,
    angle: float | Array = 0.0,
    zoom: float | Array = 1.0,
    shift: Sequence[float] | Array = (0.0, 0.0),
    shear: float | Array = 0.0,
    squeeze: float | Array = 1.0,
) -> Array:
  """Shears, squeezes, rotates and zooms about the image centre, then shifts; deterministic.

  The random ops `rotate`, `scale`, `translate` and `affine` draw their
  parameters and call this: one resampling, however many are combined.
  Output pixels that come from outside the input are zero.

  Args:
    image: (H, W, C) float image.
    angle: rotation in degrees, counter-clockwise as displayed.
    zoom: magnification; above 1 enlarges the content (and cuts the border
      off), below 1 shrinks it (and fills the border with zeros).
    shift: (down, right) displacement in pixels.
    shear: horizontal shear in degrees: a row d pixels below the centre
      moves tan(shear) * d pixels to the right.
    squeeze: the content's width is multiplied by it and its height divided
      by it (LeCun et al. 1998's squeezing: below 1 narrower and taller).

  Returns:
    The warped (H, W, C) image, same dtype.

  Raises:
    ValueError: if the image is not (H, W, C).
  """
  _check_image(image, "warp")
  height, width = image.shape[:2]
  centre = jnp.array([(height - 1) / 2, (width - 1) / 2], jnp.float32)
  theta = jnp.deg2rad(jnp.asarray(angle, jnp.float32))
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  # Sampling needs the inverse map, output -> input: undo the shift, then
  # rotate by -angle and divide by the zoom about the centre. With rows
  # pointing down, a counter-clockwise turn by -angle is this matrix.
  inverse = jnp.stack([jnp.stack([cos, sin]), jnp.stack([-sin, cos])]) / zoom
  # The shear acts first, then the squeeze, so their inverses come last:
  # row *= squeeze, col /= squeeze, then col -= tan * row.
  squeeze = jnp.asarray(squeeze, jnp.float32)
  inverse = inverse * jnp.stack([squeeze, 1.0 / squeeze])[:, None]
  tan = jnp.tan(jnp.deg2rad(jnp.asarray(shear, jnp.float32)))
  inverse = jnp.stack([jnp.array([1.0, 0.0]), jnp.stack([-tan, 1.0])]) @ inverse
  offset = centre - inverse @ (centre + jnp.asarray(shift, jnp.float32))
  return _resample(image, inverse, offset, mode="constant")


# ----------------------------------------------------------------------------
# The ops: op(key, image, **params) -> image, one (H, W, C) image at a time.


def flip_lr(key: Array, image: Array, p: float = 0.5) -> Array:
  """Mirrors the image left-right with probability p.

  Args:
    key: PRNG key.
    image: (H, W, C) float image.
    p: probability of flipping, in [0, 1].

  Returns:
    The (possibly) flipped image.

  Raises:
    ValueError: if p is outside [0, 1] or the image is not (H, W, C).
  """
  return _random_flip(key, image, p, axis=1, op="flip_lr")


def flip_ud(key: Array, image: Array, p: float = 0.5) -> Array:
  """Mirrors the image top-bottom with probability p.

  Args:
    key: PRNG key.
    image: (H, W, C) float image.
    p: probability of flipping, in [0, 1].

  Returns:
    The (possibly) flipped image.

  Raises:
    ValueError: if p is outside [0, 1] or the image is not (H, W, C).
  """
  return _random_flip(key, image, p, axis=0, op="flip_ud")


def _random_flip(key: Array, image: Array, p: float, axis: int, op: str) -> Array:
  _check_image(image, op)
  _require(0 <= p <= 1, op, f"p must lie in [0, 1], got {p}")
  return jnp.where(jax.random.bernoulli(key, p), jnp.flip(image, axis), image)


def rotate(key: Array, image: Array, degrees: float = 15.0) -> Array:
  """Rotates about the centre by an angle uniform in [-degrees, degrees].

  Args:
    key: PRNG key.
    image: (H, W, C) float image.
    degrees: largest rotation, >= 0.

  Returns:
    The rotated image; corners that come from outside the input are zero.

  Raises:
    ValueError: if degrees < 0 or the image is not (H, W, C).
  """
  _require(degrees >= 0, "rotate", f"degrees must be >= 0, got {degrees}")
  angle = jax.random.uniform(key, (), minval=-degrees, maxval=degrees)
  return warp(image, angle=angle)


def scale(key: Array, image: Array, low: float = 0.9, high: float = 1.1) -> Array:
  """Zooms about the centre by a factor uniform in [low, high], same size out.

  Args:
    key: PRNG key.
    image: (H, W, C) float image.
    low: smallest zoom factor, > 0.
    high: largest zoom factor, >= low.

  Returns:
    The zoomed image; a border that comes from outside the input is zero.

  Raises:
    ValueError: unless 0 < low <= high, or if the image is not (H, W, C).
  """
  _require(0 < low <= high, "scale", f"need 0 < low <= high, got low={low}, high={high}")
  zoom = jax.random.uniform(key, (), minval=low, maxval=high)
  return warp(image, zoom=zoom)


def translate(key: Array, image: Array, pixels: float = 4, integer: bool = True) -> Array:
  """Shifts by offsets uniform in [-pixels, pixels] along each axis.

  Args:
    key: PRNG key.
    image: (H, W, C) float image.
    pixels: largest shift, >= 0 (a whole number when `integer`).
    integer: draw whole-pixel shifts, which move pixels exactly; otherwise
      fractional shifts with bilinear interpolation.

  Returns:
    The shifted image; the uncovered border is zero.

  Raises:
    ValueError: if pixels is negative (or fractional with `integer`), or if
      the image is not (H, W, C).
  """
  _require(pixels >= 0, "translate", f"pixels must be >= 0, got {pixels}")
  if integer:
    _require(
        float(pixels).is_integer(),
        "translate",
        f"pixels must be a whole number with integer=True, got {pixels}",
    )
    shift = jax.random.randint(key, (2,), -int(pixels), int(pixels) + 1)
  else:
    shift = jax.random.uniform(key, (2,), minval=-pixels, maxval=pixels)
  return warp(image, shift=shift)


def affine(
    key: Array,
    image: Array,
    degrees: float = 0.0,
    scale: float = 0.0,
    shear: float = 0.0,
    pixels: float = 0.0,
    squeeze: float = 0.0,
) -> Array:
  """A random affine distortion in one resampling, as LeCun et al. (1998) used.

  Each parameter is drawn uniformly: rotation in [-degrees, degrees], zoom
  in [1 - scale, 1 + scale], horizontal shear in [-shear, shear] degrees,
  a fractional shift in [-pixels, pixels] along each axis, and a squeeze
  factor in [1 - squeeze, 1 + squeeze] (see `warp`). Composing
  `rotate|scale|translate` instead would interpolate (and blur) three times.

  Args:
    key: PRNG key.
    image: (H, W, C) float image.
    degrees: largest rotation, >= 0.
    scale: largest relative zoom, in [0, 1).
    shear: largest shear angle in degrees, in [0, 90).
    pixels: largest shift, >= 0.
    squeeze: largest relative squeeze, in [0, 1).

  Returns:
    The distorted image; what comes from outside the input is zero.

  Raises:
    ValueError: for a parameter out of its range, or if the image is not (H, W, C).
  """
  _require(
      degrees >= 0 and pixels >= 0,
      "affine",
      f"degrees and pixels must be >= 0, got {degrees} and {pixels}",
  )
  _require(0 <= scale < 1, "affine", f"scale must be in [0, 1), got {scale}")
  _require(0 <= shear < 90, "affine", f"shear must be in [0, 90), got {shear}")
  _require(0 <= squeeze < 1, "affine", f"squeeze must be in [0, 1), got {squeeze}")
  angle_key, zoom_key, shear_key, shift_key = jax.random.split(key, 4)
  # Its own key, so that the other draws are those of a run without squeeze.
  squeeze_key = jax.random.fold_in(key, 4)
  return warp(
      image,
      angle=jax.random.uniform(angle_key, (), minval=-degrees, maxval=degrees),
      zoom=jax.random.uniform(zoom_key, (), minval=1 - scale, maxval=1 + scale),
      shear=jax.random.uniform(shear_key, (), minval=-shear, maxval=shear),
      shift=jax.random.uniform(shift_key, (2,), minval=-pixels, maxval=pixels),
      squeeze=jax.random.uniform(squeeze_key, (), minval=1 - squeeze, maxval=1 + squeeze),
  )


def crop(key: Array, image: Array, pad: int = 4) -> Array:
  """Zero-pads by `pad` on every side and takes a random crop of the input size.

  This is the CIFAR recipe; it equals an integer `translate(pad)`, but slicing
  a padded copy is exact without any interpolation.

  Args:
    key: PRNG key.
    image: (H, W, C) float image.
    pad: padding in pixels, a whole number >= 0; 0 gives the identity.

  Returns:
    The (H, W, C) crop.

  Raises:
    ValueError: if pad is not a whole number >= 0 or the image is not (H, W, C).
  """
  _check_image(image, "crop")
  _require(
      pad >= 0 and float(pad).is_integer(), "crop", f"pad must be a whole number >= 0, got {pad}"
  )
  pad = int(pad)
  padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)))
  top, left = jax.random.randint(key, (2,), 0, 2 * pad + 1)
  return jax.lax.dynamic_slice(padded, (top, left, 0), image.shape)


def random_resized_crop(
    key: Array,
    image: Array,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Array:
  """Inception-style crop: a random box, resized back to the input size.

  The box covers a fraction of the image area uniform in `scale` and has a
  width/height ratio log-uniform in `ratio`. As in torchvision, up to ten
  boxes are drawn and the first that fits is used; if none fits, the whole
  image (its ratio clamped into `ratio`) is. Unlike torchvision the box is not
  rounded to whole pixels: bilinear resampling needs no integer corners, and
  a static output shape is all that jit asks for.

  Args:
    key: PRNG key.
    image: (H, W, C) float image.
    scale: (low, high) area fraction, 0 < low <= high <= 1.
    ratio: (low, high) width/height aspect ratio, 0 < low <= high.

  Returns:
    The resized (H, W, C) crop.

  Raises:
    ValueError: if scale or ratio is out of range or the image is not (H, W, C).
  """
  _check_image(image, "random_resized_crop")
  _require(
      0 < scale[0] <= scale[1] <= 1,
      "random_resized_crop",
      f"need 0 < scale[0] <= scale[1] <= 1, got scale={scale}",
  )
  _require(
      0 < ratio[0] <= ratio[1],
      "random_resized_crop",
      f"need 0 < ratio[0] <= ratio[1], got ratio={ratio}",
  )
  height, width = image.shape[:2]
  box_key, top_key, left_key = jax.random.split(key, 3)
  box_h, box_w = _sample_box(box_key, height, width, scale, ratio)
  top = jax.random.uniform(top_key) * (height - box_h)
  left = jax.random.uniform(left_key) * (width - box_w)
  # Output pixel centres are spread evenly over the box (the half-pixel
  # convention of image resizers), so a full-size box is the identity.
  step = jnp.stack([box_h / height, box_w / width])
  offset = jnp.stack([top, left]) + 0.5 * step - 0.5
  # Half a pixel beyond the box edge may fall outside the image; repeating the
  # edge avoids the dark rim that zero fill would paint there.
  return _resample(image, jnp.diag(step), offset, mode="nearest")


def _sample_box(
    key: Array, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[Array, Array]:
  """(box height, box width) of random_resized_crop, as float scalars."""
  area_key, ratio_key = jax.random.split(key)
  area = (
      height
      * width
      * jax.random.uniform(area_key, (_BOX_ATTEMPTS,), minval=scale[0], maxval=scale[1])
  )
  aspect = jnp.exp(
      jax.random.uniform(
          ratio_key, (_BOX_ATTEMPTS,), minval=math.log(ratio[0]), maxval=math.log(ratio[1])
      )
  )
  box_w, box_h = jnp.sqrt(area * aspect), jnp.sqrt(area / aspect)
  fits = (box_h <= height) & (box_w <= width)
  first = jnp.argmax(fits)  # index of the first box that fits (0 if none)
  fallback_h, fallback_w = _fallback_box(height, width, ratio)
  any_fits = fits.any()
  return (
      jnp.where(any_fits, box_h[first], fallback_h),
      jnp.where(any_fits, box_w[first], fallback_w),
  )


def _fallback_box(height: int, width: int, ratio: tuple[float, float]) -> tuple[float, float]:
  """torchvision's fallback: the largest central box with a ratio in range."""
  aspect = width / height
  if aspect < ratio[0]:
    return width / ratio[0], float(width)
  if aspect > ratio[1]:
    return float(height), height * ratio[1]
  return float(height), float(width)


def color_jitter(
    key: Array,
    image: Array,
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
) -> Array:
  """Random brightness, contrast and saturation, applied in that order.

  Brightness adds one delta uniform in [-brightness, brightness] to every
  value. Contrast scales the deviations from the image mean (over all pixels
  and channels, so the mean is kept) by a factor uniform in
  [1 - contrast, 1 + contrast]. Saturation blends each pixel with its luma by
  a factor uniform in [1 - saturation, 1 + saturation], which keeps the luma.
  A one-channel image is its own grayscale, so saturation leaves it unchanged
  (and is skipped). A strength of 0 skips its step entirely, so that, e.g., a
  brightness-only jitter is an exact shift.

  Args:
    key: PRNG key.
    image: (H, W, C) float image in [0, 1] units.
    brightness: largest additive change, >= 0.
    contrast: largest relative change of contrast, in [0, 1].
    saturation: largest relative change of saturation, in [0, 1].

  Returns:
    The jittered image (not clipped).

  Raises:
    ValueError: if a strength is out of range, if saturation is asked of an
      image with other than 1 or 3 channels, or if the image is not (H, W, C).
  """
  _check_image(image, "color_jitter")
  _require(brightness >= 0, "color_jitter", f"brightness must be >= 0, got {brightness}")
  # Factors stay >= 0: a negative one would invert the image, not jitter it.
  _require(0 <= contrast <= 1, "color_jitter", f"contrast must lie in [0, 1], got {contrast}")
  _require(0 <= saturation <= 1, "color_jitter", f"saturation must lie in [0, 1], got {saturation}")
  channels = image.shape[-1]
  _require(
      not saturation or channels in (1, 3),
      "color_jitter",
      f"saturation needs 1 or 3 channels, got {channels}",
  )
  brightness_key, contrast_key, saturation_key = jax.random.split(key, 3)
  if brightness:
    image = image + _uniform(brightness_key, -brightness, brightness, image.dtype)
  if contrast:
    mean = image.mean()
    image = mean + _uniform(contrast_key, 1 - contrast, 1 + contrast, image.dtype) * (image - mean)
  if saturation and channels == 3:
    gray = image @ jnp.asarray(_LUMA, image.dtype)[:, None]
    factor = _uniform(saturation_key, 1 - saturation, 1 + saturation, image.dtype)
    image = gray + factor * (image - gray)
  return image


def _uniform(key: Array, low: float, high: float, dtype: Any) -> Array:
  return jax.random.uniform(key, (), dtype, minval=low, maxval=high)


def noise(key: Array, image: Array, std: float = 0.05) -> Array:
  """Adds Gaussian noise with standard deviation `std`, independent per value.

  Args:
    key: PRNG key.
    image: (H, W, C) float image.
    std: standard deviation, >= 0.

  Returns:
    The noisy image (not clipped).

  Raises:
    ValueError: if std < 0 or the image is not (H, W, C).
  """
  _check_image(image, "noise")
  _require(std >= 0, "noise", f"std must be >= 0, got {std}")
  return image + std * jax.random.normal(key, image.shape, image.dtype)


OPS: dict[str, Callable[..., Array]] = {
    "flip_lr": flip_lr,
    "flip_ud": flip_ud,
    "rotate": rotate,
    "scale": scale,
    "translate": translate,
    "affine": affine,
    "crop": crop,
    "random_resized_crop": random_resized_crop,
    "color_jitter": color_jitter,
    "noise": noise,
}
