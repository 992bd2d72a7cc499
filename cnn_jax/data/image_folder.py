"""A folder of images with one subfolder per class, as a random-access source.

    root/train/cat/001.jpg, root/train/dog/002.png, root/test/cat/...

Images are checked once when the source is opened: unreadable or corrupt
files are reported by path (with a count) and left out, so that an epoch
never crashes half-way on a bad file. A file that breaks after that (replaced
or deleted while a run reads the folder) is a `DataError` naming it. A class
subfolder without a readable image is a `DataError` too: its label could
never be learned.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
from absl import logging
from PIL import Image

from cnn_jax.data import images
from cnn_jax.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def decode_rgb(path: str, size: int) -> np.ndarray:
  """Reads an image file as uint8 RGB (as a viewer shows it), resized (bilinear) to size x size.

  Raises:
    images.ImageError: the file is missing, not an image, or too large to decode.
  """
  return np.asarray(images.read(path).resize((size, size), Image.BILINEAR), np.uint8)


def _image_files(folder: str) -> list[str]:
  """The sorted names of the image files in folder ([] if it is missing)."""
  if not os.path.isdir(folder):
    return []
  return [f for f in sorted(os.listdir(folder)) if f.lower().endswith(IMAGE_EXTENSIONS)]


def fingerprint(root: str) -> str:
  """A short hash of the image files of a split folder: names, sizes and mtimes.

  Cheap (no image is read) and different as soon as a file is added,
  removed, renamed or rewritten, so that whatever is computed from the
  images (the normalization statistics) can be cached under it.

  Args:
    root: a split folder, root/<class>/<image>.

  Returns:
    16 hex digits.

  Raises:
    DataError: if root does not exist.
  """
  digest = hashlib.sha256()
  for name in ImageFolderSource.class_names(root):
    for file in _image_files(os.path.join(root, name)):
      stat = os.stat(os.path.join(root, name, file))
      digest.update(f"{name}/{file}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
  return digest.hexdigest()[:16]


class ImageFolderSource:
  """Random access to `root/<class>/<image>` files.

  Attributes:
    classes: class names (sorted subfolder names); label i is classes[i].
    paths: the readable image files, in a fixed order.
    skipped: (path, reason) of every file that could not be decoded.
  """

  def __init__(self, root: str, image_size: int | None = 224, classes: list[str] | None = None):
    """Scans and checks the folder.

    Args:
      root: folder with one subfolder per class.
      image_size: images are resized to image_size x image_size (None: 224,
        since a folder's images differ in size and a batch needs one).
      classes: the class names to use (default: the subfolders of root);
        pass the training split's classes when opening a test split (a
        class may then be missing from it, but not be an empty folder).

    Raises:
      DataError: if root does not exist, has no class subfolder, or a class
        subfolder holds no readable image.
    """
    if not os.path.isdir(root):
      raise DataError(
          f"image folder {root!r} does not exist; expected " "root/<split>/<class>/<image> files"
      )
    self.root = root
    self.image_size = image_size or 224
    self.classes = classes or self.class_names(root)
    if not self.classes:
      raise DataError(
          f"image folder {root!r} has no class subfolders; put the images in "
          f"one subfolder per class: {root}/<class>/<image>"
      )
    self.paths, self.labels, self.skipped = [], [], []
    for label, name in enumerate(self.classes):
      folder = os.path.join(root, name)
      files = _image_files(folder)
      if os.path.isdir(folder) and not files:
        raise DataError(
            f"class folder {folder!r} has no images (files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)}); add its images or delete the folder"
        )
      skipped = len(self.skipped)
      for file in files:
        path = os.path.join(folder, file)
        try:
          images.read(path)  # a full decode: PIL's verify() misses truncation
        except images.ImageError as e:
          self.skipped.append((path, e.reason))
          continue
        self.paths.append(path)
        self.labels.append(label)
      if files and len(self.skipped) - skipped == len(files):
        raise DataError(
            f"class folder {folder!r} has no readable image (all {len(files)} "
            f"unreadable, e.g. {self.skipped[-1][0]}: {self.skipped[-1][1]}); "
            "replace its images or delete the folder"
        )
    for path, reason in self.skipped:
      logging.warning("skipping unreadable image %s (%s)", path, reason)
    if self.skipped:
      logging.warning(
          "skipped %d unreadable image(s) of %d in %s",
          len(self.skipped),
          len(self.skipped) + len(self.paths),
          root,
      )
    if not self.paths:
      raise DataError(
          f"image folder {root!r} has no image in the class subfolders "
          f"{self.classes}; put its images in {root}/<class>/<image>"
      )

  @staticmethod
  def class_names(root: str) -> list[str]:
    """The sorted subfolder names of root.

    Raises:
      DataError: if root does not exist.
    """
    if not os.path.isdir(root):
      raise DataError(
          f"image folder {root!r} does not exist; expected " "root/<split>/<class>/<image> files"
      )
    return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))

  def __repr__(self) -> str:
    # Stable across processes and restarts: Grain compares it on resume.
    return (
        f"ImageFolderSource({self.root!r}, image_size={self.image_size}, "
        f"classes={self.classes!r})"
    )

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> dict[str, Any]:
    """The example at index: {"image": uint8 (size, size, 3), "label": int}.

    Raises:
      DataError: naming the file, if it no longer decodes (the folder was
        checked when opened, so it was replaced or deleted since).
    """
    path = self.paths[index]
    try:
      image = decode_rgb(path, self.image_size)
    except images.ImageError as e:
      raise DataError(
          f"cannot read image {path} ({e.reason}); it changed after the "
          "dataset was opened: restore or delete the file and re-run"
      ) from None
    return {"image": image, "label": self.labels[index]}
