"""PNG for small images: written so that reading back is one zlib call.

TFDS stores MNIST-like images as PNG, and PIL decodes a 28x28 PNG in about
70 microseconds, most of it per-call overhead: the input pipeline would then
spend more time decoding than the LeNet-5 step spends training. PNGs written
by `encode` use filter type 0 ("None") on every row, so `decode` needs only
zlib and a reshape (about 8 microseconds). Any other image (another PNG
writer's filters, interlacing, ancillary chunks, JPEG) is decoded by
`images.read`, the general path. The fast path takes only files laid out as
`encode` writes them (IHDR, IDAT, IEND; valid CRCs; 8-bit grey or RGB as
asked; unfiltered rows; a complete zlib stream of exactly the pixels), which
the general path decodes to the same array: no transparency, orientation or
bit depth that it would treat otherwise.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from cnn_jax.data import images

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 3: 2}  # channels -> PNG colour type (grey, RGB)


def _chunk(kind: bytes, data: bytes) -> bytes:
  return (
      struct.pack(">I", len(data))
      + kind
      + data
      + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
  )


def encode(image: np.ndarray) -> bytes:
  """A valid PNG of a uint8 image, every row unfiltered.

  Args:
    image: uint8 (H, W) or (H, W, C) with C = 1 or 3.

  Returns:
    The PNG file's bytes.
  """
  image = np.asarray(image, np.uint8)
  if image.ndim == 2:
    image = image[..., None]
  height, width, channels = image.shape
  header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPES[channels], 0, 0, 0)
  rows = np.concatenate(
      [
          np.zeros((height, 1), np.uint8),  # filter type 0 per row
          image.reshape(height, width * channels),
      ],
      axis=1,
  )
  return (
      _SIGNATURE
      + _chunk(b"IHDR", header)
      + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
      + _chunk(b"IEND", b"")
  )


def decode(data: bytes, channels: int) -> np.ndarray:
  """An encoded image (PNG, JPEG, ...) as uint8 (H, W, channels).

  Args:
    data: the file's bytes.
    channels: 1 or 3, the channels to return.

  Returns:
    uint8 (H, W, channels).

  Raises:
    ImageError: for bytes that are not a readable image (one line).
  """
  fast = _decode_unfiltered(data, channels)
  if fast is not None:
    return fast
  array = np.asarray(images.read(data, "L" if channels == 1 else "RGB"))
  return array[..., None] if channels == 1 else array


def _idat_stream(data: bytes) -> tuple[bytes, bytes] | None:
  """(IHDR's data, the IDATs' data) of a PNG of only whole IHDR, IDAT and IEND chunks.

  The IHDR's CRC is checked as PIL checks it; PIL ignores the others'.
  """
  if not data.startswith(_SIGNATURE) or data[12:16] != b"IHDR" or data[8:12] != b"\0\0\0\r":
    return None
  if struct.unpack(">I", data[29:33])[0] != zlib.crc32(data[12:29]):
    return None
  compressed, position = [], 33
  while position + 12 <= len(data):
    length, kind = struct.unpack(">I4s", data[position : position + 8])
    if kind == b"IEND":
      return (
          (data[16:29], b"".join(compressed))
          if compressed and (position + 12 + length == len(data))
          else None
      )
    if kind != b"IDAT":
      return None  # an ancillary chunk (transparency, orientation, ...): the general path
    compressed.append(data[position + 8 : position + 8 + length])
    position += 12 + length
  return None  # truncated


def _decode_unfiltered(data: bytes, channels: int) -> np.ndarray | None:
  """The image if `data` is laid out as `encode` writes it (see the module docstring)."""
  found = _idat_stream(data)
  if found is None:
    return None
  width, height, depth, color, compression, filtering, interlace = struct.unpack(
      ">IIBBBBB", found[0]
  )
  if (
      (depth, compression, filtering, interlace) != (8, 0, 0, 0)
      or (color != _COLOR_TYPES.get(channels))
      or not images.within_pixel_limit(width, height)
  ):
    return None
  expected = height * (1 + width * channels)
  decompressor = zlib.decompressobj()
  try:
    # Bounded: a stream of gigabytes behind a small header stops one byte past the image.
    raw = decompressor.decompress(found[1], expected + 1)
  except zlib.error:
    return None  # the general path names the problem
  if len(raw) != expected or not decompressor.eof or decompressor.unused_data:
    return None
  rows = np.frombuffer(raw, np.uint8).reshape(height, 1 + width * channels)
  if rows[:, 0].any():  # a filtered row: PIL undoes the filters
    return None
  return rows[:, 1:].reshape(height, width, channels)
