"""The embedded default dataset: scikit-learn's 1,797 handwritten digits.

These are real 8x8 scans (the UCI "optdigits" test set) that ship inside
scikit-learn, so a fresh install can train without network. They are exposed
as a real TFDS builder so that the default run goes through the same
array_record + Grain path as any other dataset. Pixels (0..16 in the
original) are stored as uint8 0..255 at 8x8; the pipeline resizes them to
the model's input size (32x32 for LeNet-5).
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from cnn_jax.data.quiet_builder import NoDownloadMessages

# What preparing the dataset reads, for the one line printed when it does.
SOURCE = "1,797 images from scikit-learn, no download"
TEST_FRACTION = 0.2
SPLIT_SEED = 0  # fixed: the split is part of the dataset's definition


def stratified_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Fixed, stratified train/test indices (20% of every class is test).

  Args:
    labels: the class of each example.

  Returns:
    (train indices, test indices), each sorted.
  """
  rng = np.random.default_rng(SPLIT_SEED)
  train, test = [], []
  for label in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == label))
    n_test = int(round(len(members) * TEST_FRACTION))
    test.extend(members[:n_test])
    train.extend(members[n_test:])
  return np.sort(train), np.sort(test)


class Digits(NoDownloadMessages, tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 8x8 digits (UCI optdigits) as a TFDS dataset."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "8x8 uint8 images, fixed stratified 80/20 split."}

  def _info(self) -> tfds.core.DatasetInfo:
    # DatasetInfo directly: dataset_info_from_configs looks for metadata files
    # beside the builder's module, which a library module does not have.
    return tfds.core.DatasetInfo(
        builder=self,
        description="1,797 8x8 handwritten digits shipped with scikit-learn.",
        features=tfds.features.FeaturesDict(
            {
                # A Tensor, not an Image feature: encoding PNGs needs TensorFlow.
                "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=10),
            }
        ),
        supervised_keys=("image", "label"),
        homepage="https://archive.ics.uci.edu/dataset/80",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    from sklearn.datasets import load_digits

    digits = load_digits()
    train, test = stratified_split(digits.target)
    return {
        "train": self._generate_examples(digits, train),
        "test": self._generate_examples(digits, test),
    }

  def _generate_examples(self, digits, indices):
    for i in indices:
      image = np.round(digits.images[i] * (255.0 / 16.0)).astype(np.uint8)[..., None]
      yield int(i), {"image": image, "label": int(digits.target[i])}
