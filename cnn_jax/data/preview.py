"""A PNG grid of original and augmented samples, to check an augmentation by eye.

    python -m cnn_jax.data.preview --dataset=digits --augment="rotate(15)|crop(pad=4)" \\
        --out=grid.png

Row i shows example i: the original first, then `--copies` augmented versions.
"""

from __future__ import annotations

from typing import Sequence

import jax
import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags, logging  # noqa: E402

from cnn_jax import data, errors  # noqa: E402
from cnn_jax.data import augment  # noqa: E402

_DATASET = flags.DEFINE_string("dataset", "digits", "dataset name")
_SPLIT = flags.DEFINE_string("split", "train", "split to draw examples from")
_AUGMENT = flags.DEFINE_string("augment", "flip_lr|crop(pad=4)", "augmentation spec")
_OUT = flags.DEFINE_string("out", "augment_preview.png", "output PNG")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 32, "resize images to this size")
_EXAMPLES = flags.DEFINE_integer("examples", 6, "rows: number of examples")
_COPIES = flags.DEFINE_integer("copies", 7, "augmented versions per example")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed of the augmentation")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir")


def augmented_grid(images: np.ndarray, spec: str, copies: int, seed: int) -> np.ndarray:
  """Originals and augmented copies as one array.

  Args:
    images: uint8 (N, H, W, C).
    spec: augmentation spec (see `cnn_jax.data.augment`).
    copies: augmented versions per image.
    seed: PRNG seed.

  Returns:
    float32 (N, 1 + copies, H, W, C) in [0, 1] (augmented values clipped for display).
  """
  x = images.astype(np.float32) / 255.0
  batch = np.repeat(x, copies, axis=0)  # each copy gets its own key in `build`
  out = jax.jit(augment.build(spec))(jax.random.key(seed), batch)
  out = np.asarray(out).reshape(len(x), copies, *x.shape[1:])
  return np.clip(np.concatenate([x[:, None], out], axis=1), 0.0, 1.0)


def save_grid(grid: np.ndarray, path: str, title: str) -> None:
  """Writes an (rows, cols, H, W, C) grid of [0, 1] images as a PNG."""
  rows, cols = grid.shape[:2]
  fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows + 0.5), squeeze=False)
  for r in range(rows):
    for c in range(cols):
      image = grid[r, c]
      ax = axes[r, c]
      ax.imshow(
          image[..., 0] if image.shape[-1] == 1 else image,
          cmap="gray",
          vmin=0.0,
          vmax=1.0,
          interpolation="nearest",
      )
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title("original" if c == 0 else f"aug {c}", fontsize=8)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv: Sequence[str]) -> None:
  del argv
  # TFDS and JAX log every file and backend they touch at INFO (as the
  # training CLI, show warnings and errors only unless --verbosity is given).
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  split = data.as_numpy(_DATASET.value, _SPLIT.value, _IMAGE_SIZE.value, _DATA_DIR.value)
  grid = augmented_grid(
      split["image"][: _EXAMPLES.value], _AUGMENT.value, _COPIES.value, _SEED.value
  )
  save_grid(grid, _OUT.value, f"{_DATASET.value}: {_AUGMENT.value}")
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  errors.run(main)
