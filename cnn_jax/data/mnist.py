"""MNIST and Fashion-MNIST prepared offline, as TFDS's own datasets.

TFDS's builders download the four idx files and encode every image as PNG
with TensorFlow. These subclasses read the verified files from a folder
instead (see `cnn_jax.data.idx`) and encode the PNGs unfiltered (see
`png`: fast to read back), so neither network nor TensorFlow is needed.
Everything else is TFDS's: the names
(`mnist`, `fashion_mnist`), versions, features (`image` uint8 28x28x1 PNG,
`label` with TFDS's class names), description and citation. A dataset made
here is read by `tfds.data_source("mnist")` exactly like one TFDS made.
"""

from __future__ import annotations

from tensorflow_datasets.image_classification import mnist as tfds_mnist

from cnn_jax.data import idx, png
from cnn_jax.data.quiet_builder import NoDownloadMessages


class _FromIdxFiles(NoDownloadMessages):
  """Builds the splits from a folder of verified idx files (a mixin)."""

  def __init__(self, *, source_dir: str, **kwargs):
    self.source_dir = source_dir
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    paths = idx.verified_paths(self.name, self.source_dir)
    return {split: self._generate_examples_from(*pair) for split, pair in paths.items()}

  def _generate_examples_from(self, images_path: str, labels_path: str):
    images, labels = idx.read(images_path), idx.read(labels_path)
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {"image": png.encode(image), "label": int(label)}  # TFDS's keys: the index


class OfflineMnist(_FromIdxFiles, tfds_mnist.MNIST, skip_registration=True):
  """TFDS's `mnist`, from local idx files."""

  name = "mnist"


class OfflineFashionMnist(_FromIdxFiles, tfds_mnist.FashionMNIST, skip_registration=True):
  """TFDS's `fashion_mnist`, from local idx files."""

  name = "fashion_mnist"


BUILDERS = {"mnist": OfflineMnist, "fashion_mnist": OfflineFashionMnist}
