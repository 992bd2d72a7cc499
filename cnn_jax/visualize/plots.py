"""PNG grids and heatmap overlays with matplotlib (no display needed)."""

from __future__ import annotations

import math
import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: works on machines without a display

import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cnn_jax.data import mask_colours  # noqa: E402


def unit_range(x: np.ndarray) -> np.ndarray:
  """Scales an array to [0, 1] (a constant array becomes 0)."""
  x = np.asarray(x, np.float32)
  low, high = float(x.min()), float(x.max())
  return (x - low) / (high - low) if high > low else np.zeros_like(x)


def _show(axis, image: np.ndarray, cmap: str) -> None:
  image = np.asarray(image, np.float32)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  axis.imshow(
      np.clip(image, 0.0, 1.0),
      cmap=cmap if image.ndim == 2 else None,
      vmin=0.0,
      vmax=1.0,
      interpolation="nearest",
  )
  axis.set_xticks([])
  axis.set_yticks([])


def save_grid(
    images: Sequence[np.ndarray],
    path: str,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    cmap: str = "gray",
    title: str | None = None,
    cell_inches: float = 1.2,
) -> str:
  """Saves images in [0, 1] as a grid PNG.

  Args:
    images: (H, W), (H, W, 1) or (H, W, 3) arrays in [0, 1].
    path: the PNG file to write (folders are created).
    titles: one small caption per image.
    ncols: columns (default: about a square).
    cmap: colour map for single-channel images.
    title: a caption over the whole grid.
    cell_inches: size of one cell.

  Returns:
    The path written.
  """
  count = len(images)
  ncols = ncols or math.ceil(math.sqrt(count))
  nrows = math.ceil(count / ncols)
  figure, axes = plt.subplots(
      nrows, ncols, figsize=(ncols * cell_inches, nrows * cell_inches), squeeze=False
  )
  for index, axis in enumerate(axes.flat):
    if index < count:
      _show(axis, images[index], cmap)
      if titles:
        axis.set_title(titles[index], fontsize=7)
    else:
      axis.axis("off")
  if title:
    figure.suptitle(title, fontsize=9)
  return _save(figure, path)


def save_overlays(
    images: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    path: str,
    titles: Sequence[str] | None = None,
    cmap: str = "jet",
    alpha: float = 0.5,
    title: str | None = None,
    signed: bool = False,
    value_range: tuple[float, float] | None = None,
    extent: tuple[float, float, float, float] | None = None,
    interpolation: str = "bilinear",
) -> str:
  """Saves each image with a heatmap over it, and a colorbar, side by side.

  Args:
    images: (H, W[, C]) images in [0, 1].
    maps: (H, W) heatmaps, in their own units (shown on the colorbar).
    path: the PNG file to write.
    titles: one caption per pair.
    cmap: the heatmap's colour map.
    alpha: the heatmap's opacity.
    title: a caption over the figure.
    signed: centre the colour scale on zero (for signed attributions).
    value_range: a fixed (low, high) colour scale for every map (e.g. (0, 1)
      for probabilities); default: each map's own range.
    extent: where the map lies on the image, (left, right, bottom, top) in
      pixel coordinates, for maps coarser than the image; default: all of it.
    interpolation: how matplotlib draws the map ("nearest" for labels).

  Returns:
    The path written.
  """
  count = len(images)
  figure, axes = plt.subplots(2, count, figsize=(count * 1.6 + 0.6, 3.4), squeeze=False)
  for index in range(count):
    _show(axes[0, index], images[index], "gray")
    if titles:
      axes[0, index].set_title(titles[index], fontsize=7)
    heat = np.asarray(maps[index], np.float32)
    limit = float(np.abs(heat).max()) or 1.0
    low, high = (-limit, limit) if signed else (float(heat.min()), float(heat.max()))
    if value_range is not None:
      low, high = value_range
    _show(axes[1, index], images[index], "gray")
    shown = axes[1, index].imshow(
        heat,
        cmap="bwr" if signed else cmap,
        alpha=alpha,
        vmin=low,
        vmax=high if high > low else low + 1e-6,
        interpolation=interpolation,
        extent=extent,
    )
    axes[1, index].set_xlim(-0.5, np.shape(images[index])[1] - 0.5)
    axes[1, index].set_ylim(np.shape(images[index])[0] - 0.5, -0.5)
    figure.colorbar(shown, ax=axes[1, index], fraction=0.046, pad=0.04)
  if title:
    figure.suptitle(title, fontsize=9)
  return _save(figure, path)


def _truth_above_prediction(
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None,
    prediction: str,
    inches: tuple[float, float],
):
  """A figure of two rows of the images (truth above, prediction below), titled per column.

  Args:
    images: the images in [0, 1], one per column.
    titles: one caption per image (or None).
    prediction: the lower row's label.
    inches: (width per image, height) of the figure.

  Returns:
    (figure, axes (2, N)).
  """
  count = len(images)
  figure, axes = plt.subplots(2, count, figsize=(count * inches[0] + 0.4, inches[1]), squeeze=False)
  for index in range(count):
    for row in range(2):
      _show(axes[row, index], images[index], "gray")
    if titles:
      axes[0, index].set_title(titles[index], fontsize=7)
  axes[0, 0].set_ylabel("truth", fontsize=8)
  axes[1, 0].set_ylabel(prediction, fontsize=8)
  return figure, axes


def save_masks(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    predictions: Sequence[np.ndarray],
    path: str,
    class_names: Sequence[str],
    titles: Sequence[str] | None = None,
    title: str | None = None,
) -> str:
  """Saves each image with its true mask over it (top row) and the predicted one (below).

  Args:
    images: (H, W[, C]) images in [0, 1].
    truths: int (H, W) true masks, 0 for background.
    predictions: int (H, W) predicted masks.
    path: the PNG file to write.
    class_names: the name of each mask value (class 0: the background).
    titles: one caption per image.
    title: a caption over the figure.

  Returns:
    The path written.
  """
  figure, axes = _truth_above_prediction(images, titles, "predicted", (1.4, 3.6))
  for index in range(len(images)):
    for row, mask in enumerate((truths[index], predictions[index])):
      axes[row, index].imshow(mask_colours.mask_overlay(np.asarray(mask)), interpolation="nearest")
  shown = sorted({int(v) for m in (*truths, *predictions) for v in np.unique(m)} - {0})
  legend = [
      matplotlib.patches.Patch(color=mask_colours.label_colour(c - 1), label=class_names[c])
      for c in shown
  ]
  if legend:
    figure.legend(handles=legend, loc="lower center", ncol=min(len(legend), 11), fontsize=7)
  if title:
    figure.suptitle(title, fontsize=9)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.tight_layout(rect=(0, 0.08 if legend else 0, 1, 1))
  figure.savefig(path, dpi=80)
  plt.close(figure)
  return path


def save_boxes(
    images: Sequence[np.ndarray],
    objects: dict[str, np.ndarray],
    detections: Sequence[np.ndarray],
    path: str,
    class_names: Sequence[str],
    titles: Sequence[str] | None = None,
    title: str | None = None,
) -> str:
  """Saves each image with its true boxes (top row) and its detections (below).

  Args:
    images: (H, W[, C]) images in [0, 1].
    objects: the true objects: "boxes" (N, K, 4) normalized (ymin, xmin, ymax,
      xmax), "box_labels" (N, K) and "box_valid" (N, K).
    detections: per image, (D, 6) rows of normalized box, score, class.
    path: the PNG file to write.
    class_names: the name of each class.
    titles: one caption per image.
    title: a caption over the figure.

  Returns:
    The path written.
  """
  figure, axes = _truth_above_prediction(images, titles, "detected", (1.8, 4.0))
  for index in range(len(images)):
    size = images[index].shape[:2]
    valid = np.asarray(objects["box_valid"][index], bool)
    labels = np.asarray(objects["box_labels"][index])[valid]
    found = np.asarray(detections[index])
    mask_colours.draw_boxes(
        axes[0, index],
        np.asarray(objects["boxes"][index])[valid],
        labels,
        [class_names[int(c)] for c in labels],
        size,
    )
    mask_colours.draw_boxes(
        axes[1, index],
        found[:, :4],
        found[:, 5].astype(int),
        [f"{class_names[int(c)]} {score:.2f}" for score, c in found[:, 4:]],
        size,
    )
  if title:
    figure.suptitle(title, fontsize=9)
  return _save(figure, path)


def _save(figure, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.tight_layout()
  figure.savefig(path, dpi=80)
  plt.close(figure)
  return path
