"""A folder of images with one subfolder per class, as a random-access source.

    root/train/cat/001.jpg, root/train/dog/002.png, root/test/cat/...

Images are checked once when the source is opened: unreadable or corrupt
files are reported by path (with a count) and left out, so that an epoch
never crashes half-way on a bad file.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from absl import logging
from PIL import Image

from cnn_jax.data.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def decode_rgb(path: str, size: int) -> np.ndarray:
  """Reads an image file as uint8 RGB, resized (bilinear) to size x size."""
  with Image.open(path) as image:
    return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), np.uint8)


class ImageFolderSource:
  """Random access to `root/<class>/<image>` files.

  Attributes:
    classes: class names (sorted subfolder names); label i is classes[i].
    paths: the readable image files, in a fixed order.
    skipped: (path, reason) of every file that could not be decoded.
  """

  def __init__(self, root: str, image_size: int | None = 224,
               classes: list[str] | None = None):
    """Scans and checks the folder.

    Args:
      root: folder with one subfolder per class.
      image_size: images are resized to image_size x image_size (None: 224,
        since a folder's images differ in size and a batch needs one).
      classes: the class names to use (default: the subfolders of root);
        pass the training split's classes when opening a test split.

    Raises:
      DataError: if root does not exist or holds no readable image.
    """
    if not os.path.isdir(root):
      raise DataError(f"image folder {root!r} does not exist; expected "
                       "root/<split>/<class>/<image> files")
    self.root = root
    self.image_size = image_size or 224
    self.classes = classes or self.class_names(root)
    self.paths, self.labels, self.skipped = [], [], []
    for label, name in enumerate(self.classes):
      folder = os.path.join(root, name)
      for file in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        path = os.path.join(folder, file)
        if not file.lower().endswith(IMAGE_EXTENSIONS):
          continue
        try:
          with Image.open(path) as image:
            image.convert("RGB").load()  # a full decode: verify() misses truncation
        except Exception as e:  # PIL raises many types for bad files
          self.skipped.append((path, f"{type(e).__name__}: {e}"))
          continue
        self.paths.append(path)
        self.labels.append(label)
    for path, reason in self.skipped:
      logging.warning("skipping unreadable image %s (%s)", path, reason)
    if self.skipped:
      logging.warning("skipped %d unreadable image(s) of %d in %s", len(self.skipped),
                      len(self.skipped) + len(self.paths), root)
    if not self.paths:
      raise DataError(f"image folder {root!r} has no readable image in class subfolders "
                       f"{self.classes}")

  @staticmethod
  def class_names(root: str) -> list[str]:
    """The sorted subfolder names of root."""
    if not os.path.isdir(root):
      raise DataError(f"image folder {root!r} does not exist; expected "
                        "root/<split>/<class>/<image> files")
    return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))

  def __repr__(self) -> str:
    # Stable across processes and restarts: Grain compares it on resume.
    return (f"ImageFolderSource({self.root!r}, image_size={self.image_size}, "
            f"classes={self.classes!r})")

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {"image": decode_rgb(self.paths[index], self.image_size),
            "label": self.labels[index]}
