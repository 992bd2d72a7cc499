"""The colours of mask classes and object labels, shared by the data preview and the gallery."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: works on machines without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def label_colour(label: int) -> tuple[float, float, float, float]:
  """Label `label`'s RGBA colour (tab20's, repeated for more than 20 classes).

  Args:
    label: a class label (0 for the first class; a mask's class c is label c - 1).

  Returns:
    (red, green, blue, alpha) in [0, 1].
  """
  palette = plt.get_cmap("tab20")
  return palette((2 * label) % 20 + (label // 10) % 2)  # tab10's colours first, then their pales


def mask_overlay(mask: np.ndarray) -> np.ndarray:
  """An RGBA image of a mask: class c in label c - 1's colour, half opaque; 0 clear.

  Args:
    mask: int (H, W), 0 for background.

  Returns:
    float (H, W, 4), to draw over the image.
  """
  rgba = np.zeros((*mask.shape, 4))
  for value in np.unique(mask[mask > 0]):
    rgba[mask == value] = (*label_colour(int(value) - 1)[:3], 0.55)
  return rgba
