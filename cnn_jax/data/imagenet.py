"""ImageNet-1k's class names, and its photos as a pretrained network expects them.

TFDS ships the 1,000 synset ids in the order the ImageNet-2012 builder
numbers its labels (`datasets/imagenet2012/labels.txt`), and, for its
SI-Score dataset, the human-readable names in the same order
(`datasets/siscore/labels.py`). Both are read from the installed package; no
network is needed.
"""

from __future__ import annotations

import functools
import importlib.resources
import math

import numpy as np
from PIL import Image

from cnn_jax.data import images

NUM_CLASSES = 1000


@functools.cache
def synsets() -> list[str]:
  """The 1,000 WordNet ids ("n01440764", ...), index = the label's integer."""
  text = (
      importlib.resources.files("tensorflow_datasets") / "datasets" / "imagenet2012" / "labels.txt"
  ).read_text()
  return text.split()


@functools.cache
def class_names() -> list[str]:
  """The 1,000 class names ("tench, Tinca tinca", ...), index = the label's integer."""
  from tensorflow_datasets.datasets.siscore import labels  # pure Python, no TensorFlow

  return list(labels.IMAGENET_LABELS_LIST)


def short_class_names() -> list[str]:
  """The first name of each class ("tench", "goldfish", ...), for captions."""
  return [name.split(",")[0] for name in class_names()]


def load_photo(path: str, size: int, crop_padding: int = 32) -> np.ndarray:
  """A photo resized and centre-cropped as ImageNet evaluation does.

  The shorter side is resized (bicubic) to size + crop_padding, then the
  centre size x size is cut out: TensorFlow's EfficientNet evaluation crop
  (224 of 256), which is also torchvision's Resize(256) + CenterCrop(224).

  Args:
    path: an image file PIL can read (JPEG, PNG, ...), decoded as a viewer
      shows it (`images.read`: upright, 16-bit scaled, transparency on white).
    size: the network's input size.
    crop_padding: the pixels of the resized shorter side cut away.

  Returns:
    uint8 array (size, size, 3).

  Raises:
    ImageError: the file is missing, not an image, or too large to decode
      (one line, naming it).
  """
  return _resized_centre(images.read(path), size, crop_padding)


def _resized_centre(image: Image.Image, size: int, crop_padding: int) -> np.ndarray:
  """The centre size x size of `image` resized (bicubic) to a shorter side of size + crop_padding.

  Only the centre is computed: resizing a strip of 1 x 100,000 pixels whole
  would make an image of 256 x 25.6 million. PIL resizes in two passes,
  rows then columns, and so does this, on the rows and columns the centre
  needs: the pixels equal resizing whole and cropping, within 2 levels
  (PIL's coefficients for a box round differently), at a cost of size^2.
  """
  scale = (size + crop_padding) / min(image.size)
  width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
  left, top = (width - size) // 2, (height - size) // 2
  x, y = image.width / width, image.height / height  # source pixels per resized pixel
  # The source rows that bicubic weights (2 resized pixels, or 2 * y rows when reducing,
  # to either side) reach from the centre's rows, one more for rounding.
  reach = 2 * max(1.0, y) + 1
  first = max(0, math.floor((top + 0.5) * y - reach))
  last = min(image.height, math.ceil((top + size - 0.5) * y + reach))
  rows = image.crop((0, first, image.width, last))
  band = rows.resize(
      (size, last - first),
      Image.Resampling.BICUBIC,
      box=(left * x, 0, (left + size) * x, last - first),
  )
  return np.asarray(
      band.resize(
          (size, size),
          Image.Resampling.BICUBIC,
          box=(0, top * y - first, size, (top + size) * y - first),
      )
  )
