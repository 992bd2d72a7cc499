"""The colours of mask classes and object labels, and boxes drawn in them, shared by the data
preview and the gallery."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: works on machines without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402


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


def draw_boxes(ax, boxes, labels, texts, size: tuple[int, int]) -> None:
  """Draws boxes onto an image's axes, each in its label's colour with a text at its corner.

  Args:
    ax: the matplotlib axes showing the image.
    boxes: normalized (ymin, xmin, ymax, xmax) rows.
    labels: each box's class label (0 for the first class).
    texts: each box's text (e.g. its class name and score).
    size: the image's (height, width) in pixels.
  """
  height, width = size
  for bbox, label, text in zip(boxes, labels, texts):
    ymin, xmin, ymax, xmax = (float(v) for v in bbox)
    colour = label_colour(int(label))
    # Pixel i covers [i - 0.5, i + 0.5] in imshow's coordinates.
    ax.add_patch(
        Rectangle(
            (xmin * width - 0.5, ymin * height - 0.5),
            (xmax - xmin) * width,
            (ymax - ymin) * height,
            fill=False,
            edgecolor=colour,
            linewidth=1.2,
        )
    )
    ax.text(
        xmin * width - 0.5,
        ymin * height - 1.0,
        text,
        color=colour,
        fontsize=7,
        bbox=dict(facecolor="black", alpha=0.6, pad=0.5, linewidth=0),  # readable on ink
    )
