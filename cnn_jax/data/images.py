"""Image files decoded as a viewer shows them: the one place cnn_jax decodes an image.

Every reader of image files (predict, visualize's photos, image folders,
TFDS records that `png` cannot take its fast path on) calls `read`, so that
one photo gives one array wherever it is used. A viewer

- turns the pixels upright as the EXIF orientation tag says (phones store
  them as the sensor saw them and set the tag);
- shows 16-bit samples scaled to the screen's 8 bits, not clipped (PIL's
  own conversion clips, so a 16-bit greyscale PNG turns white);
- shows transparent parts over a background, here white (as on a page):
  palette images with a transparent entry, L/RGB images with a transparent
  colour, and LA, PA, RGBA;
- shows CMYK, palette, 1-bit and greyscale images in colour.

Embedded colour profiles (ICC) are not applied: ImageNet's pipelines decode
without colour management, so pretrained weights saw the raw values.
"""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image, ImageOps

from cnn_jax.errors import ImageError

BACKGROUND = (255, 255, 255)  # white: where transparent areas are shown
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # PNG/TIFF 16-bit samples ("I": int32)
_MAX_SIXTEEN_BIT = 65535


def read(source: str | bytes, mode: str = "RGB", name: str | None = None) -> Image.Image:
  """Decodes an image file as a viewer shows it (see the module docstring).

  Args:
    source: the file's path, or its bytes.
    mode: "RGB" or "L" (greyscale, ITU-R 601 luma of the colours).
    name: how errors name a source given as bytes.

  Returns:
    The loaded PIL image in `mode`, 8 bits per sample, upright.

  Raises:
    ImageError: the file is missing, not an image, truncated or corrupt,
      has more pixels than PIL decodes (a decompression bomb: a small file
      of a huge image), or has samples without a display range (floats).
  """
  label = name or (source if isinstance(source, str) else "the encoded image")
  image = _decoded_upright(source, label)
  return _shown(image, label).convert(mode)


def _decoded_upright(source: str | bytes, label: str) -> Image.Image:
  """PIL's decoding of the first frame, turned as its EXIF orientation says."""
  try:
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
      image.load()
      # A viewer ignores an orientation tag it cannot read; so do we (the pixels are fine).
      try:
        ImageOps.exif_transpose(image, in_place=True)
      except Exception:  # PIL raises many types for malformed EXIF blocks
        pass
      return image
  except FileNotFoundError as e:
    raise ImageError(
        f"image {label} not found; check the path", label, f"FileNotFoundError: {e.strerror}"
    ) from None
  except Image.DecompressionBombError as e:
    raise _too_many_pixels(label, str(e)) from None
  except Exception as e:  # PIL raises many types for bad files (OSError, SyntaxError, ...)
    reason = f"{type(e).__name__}: {' '.join(str(e).split())}"
    raise ImageError(
        f"{label} is not a readable image ({reason}); give a JPEG or PNG file, "
        "or re-save this one with an image editor",
        label,
        reason,
    ) from None


def within_pixel_limit(width: int, height: int) -> bool:
  """Whether `read` decodes an image of this size (PIL's decompression-bomb limit).

  Args:
    width: in pixels.
    height: in pixels.

  Returns:
    False for more pixels than PIL decodes without raising DecompressionBombError.
  """
  return Image.MAX_IMAGE_PIXELS is None or width * height <= 2 * Image.MAX_IMAGE_PIXELS


def _too_many_pixels(label: str, pil_message: str) -> ImageError:
  """The one-line error for an image over PIL's decompression-bomb limit."""
  counts = [int(n) for n in re.findall(r"\d+", pil_message)]
  pixels = f"{counts[0]:,} pixels" if counts else "more pixels"
  limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
  reason = (
      f"DecompressionBombError: {pixels}, more than the {limit:,} that PIL decodes "
      "(a small file of a huge image can exhaust the memory); scale it down to a few "
      "million pixels"
  )
  return ImageError(
      f"{label} has {pixels}, more than the {limit:,} that PIL decodes (a "
      "decompression bomb, or a huge scan); scale it down to a few million "
      "pixels and give that file",
      label,
      reason,
  )


def _shown(image: Image.Image, label: str) -> Image.Image:
  """An image of 8-bit samples in L or RGB mode, as a viewer shows `image`."""
  if image.mode == "F":
    raise ImageError(
        f"{label} has 32-bit floating-point samples, which have no standard "
        "display range; save it with 8- or 16-bit samples",
        label,
        "floating-point samples",
    )
  if image.mode in _SIXTEEN_BIT:
    image = _eight_bit(image)
  if image.mode == "1":
    image = image.convert("L")
  if image.has_transparency_data:  # alpha, a palette's alpha, or a transparent colour
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", image.size, (*BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")
  if image.mode in ("L", "RGB"):
    return image
  try:
    return image.convert("RGB")  # P, CMYK, YCbCr, RGBX, ...
  except ValueError as e:  # modes PIL cannot show without a colour profile (LAB, ...)
    raise ImageError(
        f"{label} has pixel mode {image.mode}, which cannot be shown as RGB "
        f"({e}); save it as an RGB image",
        label,
        f"mode {image.mode}",
    ) from None


def _eight_bit(image: Image.Image) -> Image.Image:
  """A 16-bit greyscale image scaled to 8 bits (0 -> 0, 65535 -> 255, rounded), as LA if
  a sample value is marked transparent."""
  samples = np.asarray(image)
  # 4 bytes a pixel: 65535 * 255 + 32767 fits, and a large scan stays affordable.
  grey = np.clip(samples, 0, _MAX_SIXTEEN_BIT).astype(np.uint32)
  grey = (grey * 255 + _MAX_SIXTEEN_BIT // 2) // _MAX_SIXTEEN_BIT
  grey = Image.fromarray(grey.astype(np.uint8), "L")
  transparent = image.info.get("transparency")
  if not isinstance(transparent, int):
    return grey
  alpha = Image.fromarray(np.where(samples == transparent, 0, 255).astype(np.uint8), "L")
  return Image.merge("LA", (grey, alpha))
