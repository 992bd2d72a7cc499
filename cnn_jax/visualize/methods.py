"""The visualization methods of the gallery, by name: each turns a Context into pictures.

A method reads the run, the chosen images and the Options, writes its PNGs
into the output folder and returns (png path, caption) pairs; `RUNNERS`
holds them by the names `python -m cnn_jax.visualize --method=NAME` takes.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax import introspection, tasks
from cnn_jax.models import centernet
from cnn_jax.visualize import activation_max, attribution, features, plots, probe, trained
from cnn_jax.visualize.occlusion import occlusion

METHODS = (
    "filters",
    "feature_maps",
    "occlusion",
    "saliency",
    "smoothgrad",
    "integrated_gradients",
    "guided_backprop",
    "deconvnet",
    "gradcam",
    "activation_max",
    "top_patches",
    "masks",
    "boxes",
)
# What each task's runs can show: occlusion and activation maximization
# explain one label per image, the masks need a class per pixel, the boxes
# a detector.
_NOT_FOR = {
    "classification": ("masks", "boxes"),
    "segmentation": ("occlusion", "activation_max", "boxes"),
    "detection": ("occlusion", "activation_max", "masks"),
}

# (png path, caption) pairs that a method produced.
Pictures = list[tuple[str, str]]


@dataclasses.dataclass(frozen=True)
class Options:
  """What the methods may be asked for beyond the images.

  Attributes:
    layer: the layer to show (None: a sensible one per method).
    channel: the channel of `layer` whose top patches are shown.
    steps: activation_max's ascent steps.
    occlusion_fill: the occluder's value: "mean" (the dataset mean), "gray"
      (Zeiler & Fergus's 0.5) or "black" (0).
    window: the occluder's side in pixels (0: a third of the image).
    min_score: the lowest score of a detection that `boxes` draws.
  """

  layer: str | None = None
  channel: int = 0
  steps: int = 256
  occlusion_fill: str = "mean"
  window: int = 0
  min_score: float = 0.3


def applicable(task: str) -> tuple[str, ...]:
  """The methods a run of `task` (config.task) can show, in the gallery's order."""
  return tuple(m for m in METHODS if m not in _NOT_FOR.get(task, ()))


def largest_class(mask: np.ndarray) -> int:
  """The class covering most of a mask's pixels, background (0) aside; 0 for an empty mask."""
  counts = np.bincount(np.asarray(mask).ravel())
  return int(np.argmax(counts[1:]) + 1) if counts[1:].any() else 0


def _iou(truth: np.ndarray, predicted: np.ndarray) -> float:
  union = np.logical_or(truth, predicted).sum()
  return float(np.logical_and(truth, predicted).sum() / union) if union else 1.0


class Context:
  """The run, the chosen images and their predictions, shared by all methods."""

  def __init__(
      self,
      run: trained.TrainedModel,
      count: int,
      out: str,
      options: Options,
      every_method: bool = False,
  ):
    self.run, self.out, self.options = run, out, options
    self.layer = options.layer
    # With --method=all one --layer serves methods that name layers differently.
    self.every_method = every_method
    self.default_layer = None  # Grad-CAM's and the maps' layer: the model's last spatial one
    images, targets = run.examples(count)
    self.x = run.network_input(images)
    self.display = run.to_display(self.x)
    outputs = run.model.apply(run.variables, self.x, train=False)
    if isinstance(run.task, tasks.Detection):
      self._caption_detections(targets, outputs)
      return
    probs = jax.nn.softmax(outputs)
    self.predicted = np.asarray(jnp.argmax(probs, axis=-1))
    self.confidence = np.asarray(jnp.max(probs, axis=-1))
    if self.predicted.ndim == 3:  # a class per pixel
      self._caption_masks(targets)
      return
    self.labels = targets
    # Photos have no labels: their "label" is the network's top-1 class.
    self.target = "top-1 class" if isinstance(run, trained.PretrainedModel) else "true class"
    if self.target == "top-1 class":
      self.titles = [f"{self.name(p)} ({c:.2f})" for p, c in zip(self.predicted, self.confidence)]
      self.images_caption = "images (top-1 class (probability)): " + ", ".join(self.titles)
    else:
      self.titles = [
          f"true {self.name(t)} / pred {self.name(p)} ({c:.2f})"
          for t, p, c in zip(self.labels, self.predicted, self.confidence)
      ]
      self.images_caption = "images (true / predicted (probability)): " + ", ".join(
          f"{self.name(t)} / {self.name(p)} ({c:.2f})"
          for t, p, c in zip(self.labels, self.predicted, self.confidence)
      )

  def _caption_masks(self, masks: np.ndarray) -> None:
    """A segmentation run's images: each explained for its largest true class."""
    self.masks = masks
    # The attribution methods explain one class per image: the largest object's.
    self.labels = np.array([largest_class(m) for m in masks], np.int32)
    self.target = "largest true class (its logits over the pixels predicted as it)"
    ious = [
        _iou(mask == label, predicted == label)
        for mask, predicted, label in zip(masks, self.predicted, self.labels)
    ]
    self.titles = [f"{self.name(c)}: IoU {iou:.2f}" for c, iou in zip(self.labels, ious)]
    self.images_caption = "images (largest true class: its IoU): " + ", ".join(self.titles)

  def _caption_detections(self, objects: dict[str, np.ndarray], outputs: jax.Array) -> None:
    """A detection run's images: each explained for its top detection's class score."""
    self.objects = objects
    self.detections = np.asarray(self.run.task.predict(outputs))  # (N, 100, 6)
    heat = np.asarray(outputs[..., : self.run.task.num_classes])
    # The top detection is the heatmap's highest cell (always a peak of the
    # 3x3 max pool that decoding takes): (class, row, column) for the methods.
    cells = [np.unravel_index(np.argmax(h), h.shape) for h in heat]
    self.labels = np.array([(c, row, col) for row, col, c in cells], np.int32)
    self.target = "top detection's class score (its heatmap logit at its centre)"
    # Every head reads the neck's output: the maps show what the detection
    # is computed from, at stride 4.
    self.default_layer = centernet.HEADS_INPUT
    self.titles = [
        f"top {self.name(c)} ({found[0, 4]:.2f})"
        for (c, _, _), found in zip(self.labels, self.detections)
    ]
    self.images_caption = "images (top detection (score)): " + ", ".join(self.titles)

  def name(self, label: int) -> str:
    """A label as the captions show it: its class name if known, else its number."""
    return self.run.class_names[label] if self.run.class_names else str(label)

  def path(self, name: str) -> str:
    return os.path.join(self.out, name)

  def spatial_layer(self) -> str:
    return (
        self.layer
        or self.default_layer
        or probe.default_conv_layer(self.run.model, self.run.variables, self.x)
    )


def _filters(ctx: Context) -> Pictures:
  layer = ctx.layer
  kernels = features.all_conv_kernels(ctx.run.variables)
  if layer is not None and ctx.every_method:
    layer = layer if layer in kernels else None
  first = layer is None
  if first:  # the conv that sees the image: the first one called (a depthwise conv has 1 input)
    layer = next(
        n
        for n in introspection.layer_shapes(ctx.run.model, ctx.run.variables, ctx.x[:1])
        if n in kernels
    )
  name, kernel = features.conv_kernels(ctx.run.variables, layer)
  if first:
    grid = list(features.filter_images(kernel))
  else:  # rows: output filters, columns: input channels
    grid = list(features.kernels_per_input_channel(kernel).reshape(-1, *kernel.shape[:2]))
  path = plots.save_grid(
      grid,
      ctx.path(f"filters_{name.replace('/', '.')}.png"),
      ncols=None if first else kernel.shape[2],
      title=f"{name} kernels {kernel.shape[0]}x{kernel.shape[1]}",
  )
  return [
      (
          path,
          f"filters of {name}: {kernel.shape[3]} kernels of "
          f"{kernel.shape[0]}x{kernel.shape[1]}x{kernel.shape[2]}, each scaled to [0, 1]",
      )
  ]


def _feature_maps(ctx: Context) -> Pictures:
  layer = ctx.spatial_layer()
  maps = np.asarray(features.feature_maps(ctx.run.model, ctx.run.variables, ctx.x[:1], layer))[0]
  grid = [ctx.display[0]] + [plots.unit_range(maps[..., c]) for c in range(maps.shape[-1])]
  path = plots.save_grid(
      grid,
      ctx.path(f"feature_maps_{layer.replace('/', '.')}.png"),
      titles=["input"] + [f"ch {c}" for c in range(maps.shape[-1])],
      title=f"{layer} on image 0 ({ctx.titles[0]})",
  )
  return [
      (
          path,
          f"feature maps of {layer} for eval image 0, {ctx.titles[0]}; each map "
          "scaled to [0, 1]",
      )
  ]


def _occlusion(ctx: Context) -> Pictures:
  size = ctx.x.shape[1]
  fill_name = ctx.options.occlusion_fill
  window = ctx.options.window or max(2, size // 3)
  stride = max(1, window // 4)
  while (size - window) % stride:  # positions must tile the image exactly
    stride -= 1
  # In normalized units the dataset mean is 0.
  pixel = {"mean": np.asarray(ctx.run.mean), "gray": 0.5, "black": 0.0}[fill_name]
  fill = (pixel - np.asarray(ctx.run.mean)) / np.asarray(ctx.run.std)
  maps = occlusion(
      ctx.run.model,
      ctx.run.variables,
      ctx.x,
      jnp.asarray(ctx.labels),
      window=window,
      stride=stride,
      fill=fill,
  )
  title = f"P({ctx.target}) with a {fill_name} {window}x{window} square there"
  path = plots.save_overlays(
      ctx.display,
      np.asarray(maps.probability),
      ctx.path(f"occlusion_{fill_name}.png"),
      titles=ctx.titles,
      title=title,
      value_range=(0.0, 1.0),
      extent=maps.extent(),
  )
  # Zeiler & Fergus's panel (e): the most probable label with the square there.
  classes = int(ctx.run.model.apply(ctx.run.variables, ctx.x[:1], train=False).shape[-1])
  labels_path = plots.save_overlays(
      ctx.display,
      np.asarray(maps.predicted, np.float32),
      ctx.path(f"occlusion_{fill_name}_labels.png"),
      titles=ctx.titles,
      cmap="tab10",
      alpha=0.6,
      title=f"most probable label with a {fill_name} {window}x{window} square there",
      value_range=(-0.5, classes - 0.5),
      extent=maps.extent(),
      interpolation="nearest",
  )
  return [
      (
          path,
          f"occlusion: probability of the {ctx.target} when a {fill_name}-valued "
          f"{window}x{window} square (stride {stride}) covers each place (blue: the "
          f"class is lost there); layer: input; {ctx.images_caption}",
      ),
      (
          labels_path,
          f"occlusion: the most probable label with the {fill_name} square "
          f"at each place (colour = label, see the colorbar); "
          f"{ctx.images_caption}",
      ),
  ]


def _gradient_method(name: str, fn: Callable, caption: str) -> Callable[[Context], Pictures]:
  def method(ctx: Context) -> Pictures:
    maps = attribution.heatmap(fn(ctx.run.model, ctx.run.variables, ctx.x, jnp.asarray(ctx.labels)))
    path = plots.save_overlays(
        ctx.display, np.asarray(maps), ctx.path(f"{name}.png"), titles=ctx.titles, title=caption
    )
    return [
        (
            path,
            f"{caption}: max |value| over channels for the {ctx.target}, with respect "
            f"to the input; {ctx.images_caption}",
        )
    ]

  return method


def _gradcam(ctx: Context) -> Pictures:
  layer = ctx.spatial_layer()
  maps = attribution.gradcam(
      ctx.run.model, ctx.run.variables, ctx.x, jnp.asarray(ctx.labels), layer
  )
  path = plots.save_overlays(
      ctx.display,
      np.asarray(maps),
      ctx.path("gradcam.png"),
      titles=ctx.titles,
      title=f"Grad-CAM at {layer}",
  )
  return [(path, f"Grad-CAM at layer {layer} for the {ctx.target}; {ctx.images_caption}")]


def _activation_max(ctx: Context) -> Pictures:
  """Class logits by default; the first channels of --layer when one is given."""
  run = ctx.run
  shape = tuple(ctx.x.shape[1:])
  if ctx.layer and not ctx.every_method:
    channels = introspection.layer_shapes(run.model, run.variables, ctx.x[:1])
    probe.check_layer(ctx.layer, channels)
    objectives = [("channel", ctx.layer, c) for c in range(min(10, channels[ctx.layer][-1]))]
    name, what = f"activation_max_{ctx.layer.replace('/', '.')}", f"{ctx.layer} channel"
  else:
    classes = int(run.model.apply(run.variables, ctx.x[:1], train=False).shape[-1])
    # ImageNet: the classes the photos show, not tench, goldfish, ... (labels 0-9).
    chosen = (
        list(dict.fromkeys(int(p) for p in ctx.predicted))[:10]
        if run.class_names
        else range(min(10, classes))
    )
    objectives = [("logit", c) for c in chosen]
    name, what = "activation_max", "class"
  images = [
      activation_max.activation_maximization(
          run.model,
          run.variables,
          shape,
          objective,
          steps=ctx.options.steps,
          mean=run.mean,
          std=run.std,
          learning_rate=0.02,
          tv=0.5,
          seed=i,
      )["image"]
      for i, objective in enumerate(objectives)
  ]
  path = plots.save_grid(
      images,
      ctx.path(f"{name}.png"),
      titles=[f"{what} {ctx.name(o[-1]) if what == 'class' else o[-1]}" for o in objectives],
      ncols=len(images),
      title=f"inputs that maximize each {what} (Fourier, jitter, TV)",
  )
  return [
      (
          path,
          f"activation maximization of each {what}, {ctx.options.steps} steps of "
          "Adam on a decorrelated Fourier image with jitter, scale, rotation and a "
          "total-variation penalty",
      )
  ]


def _top_patches(ctx: Context) -> Pictures:
  run = ctx.run
  layer = ctx.spatial_layer()
  images, _ = run.examples(10_000, split=run.config.eval_split)
  x = run.network_input(images)
  patches = features.top_patches(run.model, run.variables, x, layer, ctx.options.channel, k=9)
  display = run.to_display(x)
  crops, titles = [], []
  for patch in patches:
    top, bottom, left, right = patch.box
    crops.append(display[patch.image_index, top:bottom, left:right])
    titles.append(f"#{patch.image_index} {patch.activation:.2f}")
  path = plots.save_grid(
      crops,
      ctx.path(f"top_patches_{layer.replace('/', '.')}" f"_ch{ctx.options.channel}.png"),
      titles=titles,
      ncols=9,
      title=f"{layer} channel {ctx.options.channel}: top-9 receptive fields",
  )
  return [
      (
          path,
          f"the 9 eval images whose {layer} channel {ctx.options.channel} responds most, "
          "cropped to the receptive field of the strongest unit",
      )
  ]


def _masks(ctx: Context) -> Pictures:
  path = plots.save_masks(
      ctx.display,
      ctx.masks,
      ctx.predicted,
      ctx.path("masks.png"),
      ctx.run.class_names
      or [str(c) for c in range(int(max(ctx.predicted.max(), ctx.masks.max())) + 1)],
      titles=ctx.titles,
      title=f"true (top) and predicted (bottom) masks at step {ctx.run.step}",
  )
  return [
      (
          path,
          "the true mask (top) and the predicted one (bottom) over each eval image, a colour "
          f"per class (legend); {ctx.images_caption}",
      )
  ]


def _boxes(ctx: Context) -> Pictures:
  min_score = ctx.options.min_score
  path = plots.save_boxes(
      ctx.display,
      ctx.objects,
      [found[found[:, 4] >= min_score] for found in ctx.detections],
      ctx.path("boxes.png"),
      ctx.run.class_names or [str(c) for c in range(ctx.run.task.num_classes)],
      titles=ctx.titles,
      title=f"true (top) and detected (bottom, score >= {min_score:g}) boxes, step {ctx.run.step}",
  )
  return [
      (
          path,
          "the true boxes (top) and the detections scoring at least "
          f"{min_score:g} (bottom) with class and score, a colour per class; "
          f"{ctx.images_caption}",
      )
  ]


RUNNERS: dict[str, Callable[[Context], Pictures]] = {
    "filters": _filters,
    "feature_maps": _feature_maps,
    "occlusion": _occlusion,
    "saliency": _gradient_method("saliency", attribution.vanilla_gradient, "vanilla gradient"),
    "smoothgrad": _gradient_method("smoothgrad", attribution.smoothgrad, "SmoothGrad"),
    "integrated_gradients": _gradient_method(
        "integrated_gradients",
        attribution.integrated_gradients,
        "integrated gradients (64 steps, mean-image baseline)",
    ),
    "guided_backprop": _gradient_method(
        "guided_backprop", attribution.guided_backprop, "guided backprop"
    ),
    "deconvnet": _gradient_method("deconvnet", attribution.deconvnet, "deconvnet"),
    "gradcam": _gradcam,
    "activation_max": _activation_max,
    "top_patches": _top_patches,
    "masks": _masks,
    "boxes": _boxes,
}
