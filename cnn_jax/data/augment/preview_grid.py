"""Original and augmented samples side by side, to check an augmentation by eye.

Row i shows example i: the original first, then augmented copies, each drawn
with its own key as training draws them. `python -m cnn_jax.data.preview`
writes such a grid as a PNG.
"""

from __future__ import annotations

import jax
import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cnn_jax import data  # noqa: E402
from cnn_jax.data.augment import spec as augment_spec  # noqa: E402


def write_preview(
    out: str,
    dataset: str = "digits",
    augment: str = "flip_lr|crop(pad=4)",
    split: str = "train",
    image_size: int = 32,
    examples: int = 6,
    copies: int = 7,
    seed: int = 0,
    data_dir: str | None = None,
) -> None:
  """Writes a PNG grid of a dataset's first examples and augmented copies of each.

  Args:
    out: the PNG to write.
    dataset: a dataset name as `cnn_jax.data.as_numpy` takes it.
    augment: the augmentation spec.
    split: the split the examples come from.
    image_size: the size images are resized to.
    examples: rows: how many examples.
    copies: augmented versions per example.
    seed: PRNG seed of the augmentation.
    data_dir: TFDS data dir.
  """
  images = data.as_numpy(dataset, split, image_size, data_dir)["image"][:examples]
  grid = augmented_grid(images, augment, copies, seed)
  save_grid(grid, out, f"{dataset}: {augment}")


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
  batch = np.repeat(x, copies, axis=0)  # each copy gets its own key in `from_spec`
  out = jax.jit(augment_spec.from_spec(spec))(jax.random.key(seed), batch)
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
