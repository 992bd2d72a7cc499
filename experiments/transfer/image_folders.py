"""Helpers of the transfer experiments: arrays written as image folders, class subsets.

The experiments train on `folder:` datasets, the path a user's own images
take; these functions make such folders from arrays.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def write_folder(root: str, split: str, images: np.ndarray, labels: np.ndarray) -> None:
  """root/split/<label>/<i>.png, one grayscale PNG per image ((N, H, W, 1) uint8)."""
  for i, (image, label) in enumerate(zip(images, labels)):
    folder = os.path.join(root, split, str(int(label)))
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(image[..., 0]).save(os.path.join(folder, f"{i}.png"))


def subset(
    split: dict[str, np.ndarray],
    classes,
    per_class: int | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """The examples of `classes`, all of them or `per_class` drawn by rng."""
  chosen = []
  for c in classes:
    indices = np.flatnonzero(split["label"] == c)
    chosen.extend(indices if per_class is None else rng.choice(indices, per_class, replace=False))
  chosen = np.sort(np.asarray(chosen))
  return split["image"][chosen], split["label"][chosen]
