"""The augmentation ops: pure functions of one PRNG key and one float image (H, W, C).

Each is registered by name in `OPS`, which `spec.parse` and `spec.from_spec`
read; see the package docstring for the list and the conventions.

A geometric op is split in two: a draw, registered in `TRANSFORMS`, turns the
key into one `Transform` (the flip decision, crop corner or affine map), and
the op applies that transform to its image. `spec.from_spec_with_targets`
applies the same transform to the mask and boxes too, so they move with the
image. Photometric ops (`PHOTOMETRIC`) change the image only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from cnn_jax.data.augment.transform import Transform
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


def _check_shape(shape: Sequence[int], op: str) -> None:
  _require(
      len(shape) == 3,
      op,
      f"expects one (H, W, C) image, got shape {tuple(shape)}; use from_spec() for NHWC batches",
  )


# ----------------------------------------------------------------------------
# The affine warp behind rotate, scale, translate and affine.


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
  return warp_transform(image.shape, angle, zoom, shift, shear, squeeze).image(image)


def warp_transform(
    shape: Sequence[int],
    angle: float | Array = 0.0,
    zoom: float | Array = 1.0,
    shift: Sequence[float] | Array = (0.0, 0.0),
    shear: float | Array = 0.0,
    squeeze: float | Array = 1.0,
) -> Transform:
  """`warp` as a Transform, to move an image's mask and boxes with it.

  Args:
    shape: the image's (H, W, C).
    angle: rotation in degrees, counter-clockwise as displayed.
    zoom: magnification.
    shift: (down, right) displacement in pixels.
    shear: horizontal shear in degrees.
    squeeze: width factor (the height is divided by it); see `warp`.

  Returns:
    The transform; its `image(x)` is `warp(x, ...)`.

  Raises:
    ValueError: if the shape is not (H, W, C).
  """
  _check_shape(shape, "warp")
  height, width = shape[:2]
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
  return Transform(inverse, offset, size=(height, width))


# ----------------------------------------------------------------------------
# The geometric ops: op(key, image, **params) -> image, one (H, W, C) image at
# a time, each the image applier of its draw _draw_op(key, shape, *params).


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
  return _draw_flip(key, image.shape, p, axis=1, op="flip_lr").image(image)


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
  return _draw_flip(key, image.shape, p, axis=0, op="flip_ud").image(image)


def _draw_flip(key: Array, shape: Sequence[int], p: float, axis: int, op: str) -> Transform:
  _check_shape(shape, op)
  _require(0 <= p <= 1, op, f"p must lie in [0, 1], got {p}")
  # float(): a spec's p=1 parses as an int, which bernoulli refuses.
  flip = jax.random.bernoulli(key, float(p))
  # Mirrored, pixel i along the axis shows pixel size - 1 - i.
  matrix = jnp.eye(2, dtype=jnp.float32).at[axis, axis].set(jnp.where(flip, -1.0, 1.0))
  offset = jnp.zeros(2, jnp.float32).at[axis].set(jnp.where(flip, shape[axis] - 1.0, 0.0))
  return Transform(
      matrix,
      offset,
      size=tuple(shape[:2]),
      move_image=lambda image: jnp.where(flip, jnp.flip(image, axis), image),
  )


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
  return _draw_rotate(key, image.shape, degrees).image(image)


def _draw_rotate(key: Array, shape: Sequence[int], degrees: float) -> Transform:
  _require(degrees >= 0, "rotate", f"degrees must be >= 0, got {degrees}")
  angle = jax.random.uniform(key, (), minval=-degrees, maxval=degrees)
  return warp_transform(shape, angle=angle)


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
  return _draw_scale(key, image.shape, low, high).image(image)


def _draw_scale(key: Array, shape: Sequence[int], low: float, high: float) -> Transform:
  _require(0 < low <= high, "scale", f"need 0 < low <= high, got low={low}, high={high}")
  zoom = jax.random.uniform(key, (), minval=low, maxval=high)
  return warp_transform(shape, zoom=zoom)


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
  return _draw_translate(key, image.shape, pixels, integer).image(image)


def _draw_translate(key: Array, shape: Sequence[int], pixels: float, integer: bool) -> Transform:
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
  return warp_transform(shape, shift=shift)


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
  return _draw_affine(key, image.shape, degrees, scale, shear, pixels, squeeze).image(image)


def _draw_affine(
    key: Array,
    shape: Sequence[int],
    degrees: float,
    scale: float,
    shear: float,
    pixels: float,
    squeeze: float,
) -> Transform:
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
  return warp_transform(
      shape,
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
  return _draw_crop(key, image.shape, pad).image(image)


def _draw_crop(key: Array, shape: Sequence[int], pad: int) -> Transform:
  _check_shape(shape, "crop")
  _require(
      pad >= 0 and float(pad).is_integer(), "crop", f"pad must be a whole number >= 0, got {pad}"
  )
  pad = int(pad)
  top, left = jax.random.randint(key, (2,), 0, 2 * pad + 1)

  def move_image(image: Array) -> Array:
    padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    return jax.lax.dynamic_slice(padded, (top, left, 0), image.shape)

  # Output pixel (r, c) is padded pixel (top + r, left + c): input pixel
  # (top - pad + r, left - pad + c).
  offset = jnp.stack([top, left]).astype(jnp.float32) - pad
  return Transform(
      jnp.eye(2, dtype=jnp.float32), offset, size=tuple(shape[:2]), move_image=move_image
  )


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
  return _draw_random_resized_crop(key, image.shape, scale, ratio).image(image)


def _draw_random_resized_crop(
    key: Array, shape: Sequence[int], scale: tuple[float, float], ratio: tuple[float, float]
) -> Transform:
  _check_shape(shape, "random_resized_crop")
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
  height, width = shape[:2]
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
  return Transform(jnp.diag(step), offset, size=(height, width), edge="nearest")


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


# ----------------------------------------------------------------------------
# The photometric ops: they change pixel values, never positions.


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
  _check_shape(image.shape, "color_jitter")
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
  _check_shape(image.shape, "noise")
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


TRANSFORMS: dict[str, Callable[..., Transform]] = {
    "flip_lr": functools.partial(_draw_flip, axis=1, op="flip_lr"),
    "flip_ud": functools.partial(_draw_flip, axis=0, op="flip_ud"),
    "rotate": _draw_rotate,
    "scale": _draw_scale,
    "translate": _draw_translate,
    "affine": _draw_affine,
    "crop": _draw_crop,
    "random_resized_crop": _draw_random_resized_crop,
}
"""The geometric ops' draws: TRANSFORMS[name](key, (H, W, C), **params) -> Transform.

Every parameter of OPS[name] must be given (the draws hold no defaults; the
op's signature is their one home). OPS[name](key, image, **params) is
TRANSFORMS[name](key, image.shape, **params).image(image), the same numbers.
"""

PHOTOMETRIC = frozenset({"color_jitter", "noise"})
"""The ops that change pixel values only: masks and boxes stay as they are."""
