"""A PNG grid of original and augmented samples, to check an augmentation by eye.

    python -m cnn_jax.data.preview --dataset=digits --augment="rotate(15)|crop(pad=4)" \\
        --out=grid.png
    python -m cnn_jax.data.preview --dataset=mnist_scenes --out=scenes.png

Row i shows example i: the original first, then `--copies` augmented versions.
A dataset with dense targets (TFDS's `segmentation_mask` or `objects`) is
drawn instead at its own size, one example per column: the image, then the
image under its mask in colour with its boxes and their labels.
"""

from __future__ import annotations

from typing import Sequence

from absl import flags

from cnn_jax import cli
from cnn_jax.data import folder_splits, preparation, sources
from cnn_jax.data import mask_colours
from cnn_jax.data.mask_colours import mask_overlay
from cnn_jax.data.augment import preview_grid  # before pyplot: it selects matplotlib's Agg
from cnn_jax.errors import DataError

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_DATASET = flags.DEFINE_string("dataset", "digits", "dataset name")
_SPLIT = flags.DEFINE_string("split", "train", "split to draw examples from")
_AUGMENT = flags.DEFINE_string(
    "augment", "flip_lr|crop(pad=4)", "augmentation spec (classification datasets)"
)
_OUT = flags.DEFINE_string("out", "augment_preview.png", "output PNG")
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", 32, "resize images to this size (classification datasets)"
)
_EXAMPLES = flags.DEFINE_integer(
    "examples", 6, "number of examples: rows (columns for dense datasets)"
)
_COPIES = flags.DEFINE_integer("copies", 7, "augmented versions per example")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed of the augmentation")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir")

DENSE_FEATURES = ("segmentation_mask", "objects")


def is_dense(dataset: str, data_dir: str | None = None) -> bool:
  """Whether a dataset has dense targets (TFDS's `segmentation_mask` or `objects`).

  Args:
    dataset: a dataset name as `sources.load` takes it.
    data_dir: TFDS data dir.

  Returns:
    True for a TFDS dataset with either feature; False for others and image folders.
  """
  if folder_splits.folder_root(dataset) is not None:
    return False
  features = preparation.builder(dataset, data_dir).info.features
  return any(name in features for name in DENSE_FEATURES)


def write_dense_preview(
    out: str, dataset: str, split: str = "train", examples: int = 6, data_dir: str | None = None
) -> None:
  """Writes a PNG of a dense dataset's first examples, their masks and boxes drawn.

  Column i shows example i: its image above, and below the image under its
  mask in colour (class c in the colour of label c - 1, background clear)
  with its boxes and their labels in the same colours.

  Args:
    out: the PNG to write.
    dataset: a TFDS dataset with `segmentation_mask` or `objects`.
    split: the split the examples come from.
    examples: columns: how many examples.
    data_dir: TFDS data dir.
  """
  source = sources.load(dataset, split, data_dir)
  features = preparation.builder(dataset, data_dir).info.features
  names = features["objects"]["label"].names if "objects" in features else None
  count = min(examples, len(source))
  fig, axes = plt.subplots(2, count, figsize=(1.8 * count, 4.1), squeeze=False)
  for column in range(count):
    example = source[column]
    image = sources.with_channel_axis(np.asarray(example["image"]))
    for ax in axes[:, column]:
      ax.imshow(_displayed(image), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
    if "segmentation_mask" in example:
      mask = np.asarray(example["segmentation_mask"])[..., 0]
      axes[1, column].imshow(mask_overlay(mask), interpolation="nearest")
    if "objects" in example:
      objects = example["objects"]
      labels = [int(label) for label in objects["label"]]
      texts = [names[label] if names is not None else str(label) for label in labels]
      mask_colours.draw_boxes(axes[1, column], objects["bbox"], labels, texts, image.shape[:2])
  fig.suptitle(f"{dataset} ({split}): images; masks and boxes", fontsize=9)
  fig.tight_layout()
  fig.savefig(out, dpi=100)
  plt.close(fig)


def _displayed(image: np.ndarray) -> np.ndarray:
  return image[..., 0] if image.shape[-1] == 1 else image


def main(argv: Sequence[str]) -> None:
  del argv
  if is_dense(_DATASET.value, _DATA_DIR.value):
    if flags.FLAGS["augment"].present:
      raise DataError(
          f"--augment does not move masks and boxes; drop it to draw {_DATASET.value}'s "
          "images with their masks and boxes"
      )
    write_dense_preview(_OUT.value, _DATASET.value, _SPLIT.value, _EXAMPLES.value, _DATA_DIR.value)
  else:
    preview_grid.write_preview(
        _OUT.value,
        _DATASET.value,
        _AUGMENT.value,
        _SPLIT.value,
        _IMAGE_SIZE.value,
        _EXAMPLES.value,
        _COPIES.value,
        _SEED.value,
        _DATA_DIR.value,
    )
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  cli.run(main)
