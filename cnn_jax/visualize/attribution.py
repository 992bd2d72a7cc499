"""Which input pixels a class score depends on: gradient-based maps and Grad-CAM.

All functions take a batch of *normalized* float images (N, H, W, C), as the
network sees them, and integer labels (N,): the class whose logit is
explained for each image (of a detector: (N, 3) rows of class, row and
column, one detection's score; see `_label_logits`). They return raw arrays; `heatmap` reduces an
attribution over channels for display.

    vanilla_gradient      d logit / d x (Simonyan et al. 2014)
    smoothgrad            the gradient averaged over noisy copies (Smilkov et al. 2017)
    integrated_gradients  (x - x') times the gradient averaged along x' -> x
                          (Sundararajan et al. 2017); sums to f(x) - f(x')
    guided_backprop       ReLUs pass gradient only where input and gradient are
                          positive (Springenberg et al. 2015)
    deconvnet             ReLUs pass positive gradient whatever the input; max
                          pools route it to the forward maximum (their "switches")
                          (Zeiler & Fergus 2014)
    gradcam               channel weights = mean gradient at a conv layer; ReLU of
                          the weighted sum, upsampled (Selvaraju et al. 2017)

The ReLU rules are custom VJPs selected with `cnn_jax.backward_rules.backward_rule`;
max pooling needs no special rule: its gradient already flows only to the
position that won the forward max, which is exactly the deconvnet's switch.
The functions are jitted once per (model, rule, shapes): the model is a
static argument, the variables are not, so randomized variables (see
sanity.py) reuse the compiled code.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax import backward_rules
from cnn_jax.errors import ArgumentError
from cnn_jax.visualize import features, probe

# Examples (images x noise samples, or x path points) per compiled batch.
_CHUNK = 64


def _label_logits(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Each image's logit of its label, (N,).

  For per-pixel logits (N, H, W, C) of a segmentation model: the label's
  logit summed over the pixels predicted as that label (its pixel mass, the
  target pytorch-grad-cam's SemanticSegmentationTarget takes); over every
  pixel where none is. For a detector's output map and labels (N, 3) of
  (class, row, column): that class's logit at that cell (one detection's
  class score, e.g. CenterNet's heatmap at a peak).
  """
  logits = logits.astype(jnp.float32)
  if labels.ndim == 2:
    rows = jnp.arange(labels.shape[0])
    return logits[rows, labels[:, 1], labels[:, 2], labels[:, 0]]
  if logits.ndim == 4:
    chosen = jnp.argmax(logits, axis=-1) == labels[:, None, None]
    weights = jnp.where(jnp.any(chosen, axis=(1, 2), keepdims=True), chosen, True)
    logits = jnp.sum(logits * jax.lax.stop_gradient(weights)[..., None], axis=(1, 2))
  return jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]


@functools.partial(jax.jit, static_argnames=("model", "rule"))
def _input_gradient(
    model: nn.Module, variables: Any, images: jax.Array, labels: jax.Array, rule: str = "gradient"
) -> jax.Array:
  def total_logit(x):
    # Inside the traced function: the rule is part of this trace (and of the
    # jit cache key), never inherited from a trace made under another rule.
    with backward_rules.backward_rule(rule) as relus:
      logits = model.apply(variables, x, train=False)
    if rule != "gradient" and not relus:
      raise ArgumentError(
          f"the {rule} rule changes how ReLU layers pass gradients, and "
          f"{type(model).__name__} has no ReLU layer; use a ReLU model"
      )
    return jnp.sum(_label_logits(logits, labels))

  return jax.grad(total_logit)(images)


def vanilla_gradient(
    model: nn.Module, variables: Any, images: jax.Array, labels: jax.Array
) -> jax.Array:
  """d logit[label] / d image.

  Args:
    model: the flax model.
    variables: its variables.
    images: float (N, H, W, C), normalized.
    labels: int (N,), the class explained per image.

  Returns:
    float32 (N, H, W, C).
  """
  return _input_gradient(model, variables, images, labels)


def guided_backprop(
    model: nn.Module, variables: Any, images: jax.Array, labels: jax.Array
) -> jax.Array:
  """Guided backpropagation (same arguments and result as `vanilla_gradient`)."""
  return _input_gradient(model, variables, images, labels, rule="guided")


def deconvnet(model: nn.Module, variables: Any, images: jax.Array, labels: jax.Array) -> jax.Array:
  """Zeiler & Fergus's deconvnet reconstruction (arguments as `vanilla_gradient`)."""
  return _input_gradient(model, variables, images, labels, rule="deconvnet")


def _chunked_mean_gradient(
    model, variables, points: jax.Array, labels: jax.Array, weights: jax.Array | None = None
) -> jax.Array:
  """Mean over axis 1 of the (weighted) gradients at points (N, S, H, W, C)."""
  n, s = points.shape[:2]
  flat = points.reshape(n * s, *points.shape[2:])
  flat_labels = jnp.repeat(labels, s, axis=0)
  grads = jnp.concatenate(
      [
          _input_gradient(model, variables, flat[i : i + _CHUNK], flat_labels[i : i + _CHUNK])
          for i in range(0, n * s, _CHUNK)
      ]
  ).reshape(points.shape)
  if weights is not None:
    grads = grads * weights[None, :, None, None, None]
  return grads.mean(axis=1)


def smoothgrad(
    model: nn.Module,
    variables: Any,
    images: jax.Array,
    labels: jax.Array,
    *,
    samples: int = 32,
    noise: float = 0.15,
    seed: int = 0,
) -> jax.Array:
  """SmoothGrad: the gradient averaged over copies with Gaussian noise.

  Args:
    model: the flax model.
    variables: its variables.
    images: float (N, H, W, C), normalized.
    labels: int (N,).
    samples: noisy copies per image.
    noise: noise standard deviation as a fraction of each image's value range
      (the paper's 10-20%).
    seed: PRNG seed of the noise.

  Returns:
    float32 (N, H, W, C).
  """
  spread = (images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3)))[:, None, None, None, None]
  eps = jax.random.normal(jax.random.key(seed), (images.shape[0], samples, *images.shape[1:]))
  return _chunked_mean_gradient(model, variables, images[:, None] + noise * spread * eps, labels)


def integrated_gradients(
    model: nn.Module,
    variables: Any,
    images: jax.Array,
    labels: jax.Array,
    *,
    steps: int = 64,
    baseline: jax.Array | float = 0.0,
) -> jax.Array:
  """Integrated gradients along the straight path from `baseline` to the image.

  The path integral uses the trapezoidal rule over steps + 1 points, so the
  attributions sum to logit(x) - logit(baseline) up to the rule's error
  (see `completeness_gap`).

  Args:
    model: the flax model.
    variables: its variables.
    images: float (N, H, W, C), normalized.
    labels: int (N,).
    steps: intervals of the path.
    baseline: an image or a value (0: the dataset mean, after normalization).

  Returns:
    float32 (N, H, W, C).
  """
  baseline = jnp.broadcast_to(jnp.asarray(baseline, images.dtype), images.shape)
  alphas = jnp.linspace(0.0, 1.0, steps + 1)
  weights = jnp.full((steps + 1,), 1.0).at[0].set(0.5).at[-1].set(0.5) * (steps + 1) / steps
  path = baseline[:, None] + alphas[None, :, None, None, None] * (images - baseline)[:, None]
  # mean(weights * grad) over the points is the trapezoidal average of the gradient.
  return (images - baseline) * _chunked_mean_gradient(model, variables, path, labels, weights)


def completeness_gap(
    model: nn.Module,
    variables: Any,
    images: jax.Array,
    labels: jax.Array,
    attributions: jax.Array,
    baseline: jax.Array | float = 0.0,
) -> jax.Array:
  """|sum(attributions) - (f(x) - f(baseline))| / |f(x) - f(baseline)| per image.

  Args:
    model: the flax model.
    variables: its variables.
    images: float (N, H, W, C), normalized.
    labels: int (N,).
    attributions: integrated gradients of these images.
    baseline: the baseline they were computed from.

  Returns:
    float32 (N,) relative gaps (0 is perfect completeness).
  """
  baseline = jnp.broadcast_to(jnp.asarray(baseline, images.dtype), images.shape)
  f = lambda x: _label_logits(model.apply(variables, x, train=False), labels)
  difference = f(images) - f(baseline)
  total = attributions.reshape(images.shape[0], -1).sum(axis=1)
  return jnp.abs(total - difference) / jnp.maximum(jnp.abs(difference), 1e-12)


def gradcam(
    model: nn.Module, variables: Any, images: jax.Array, labels: jax.Array, layer: str | None = None
) -> jax.Array:
  """Grad-CAM at a named conv layer, upsampled to the input size.

  Args:
    model: the flax model.
    variables: its variables.
    images: float (N, H, W, C), normalized.
    labels: int (N,).
    layer: a layer with a spatial output (default: the last one, see
      `probe.default_conv_layer`).

  Returns:
    float32 (N, H, W), non-negative (not rescaled: divide by the max to show):
    the layer's map, interpolated between the centres of the cells'
    receptive fields.
  """
  layer = layer or probe.default_conv_layer(model, variables, images)
  delta = probe.zeros_like_layer(model, variables, images, layer)
  if delta.ndim != 4:
    raise probe.UnknownLayerError(
        f"layer {layer!r} has output shape {delta.shape}; Grad-CAM "
        "needs a spatial (N, H, W, C) layer"
    )
  maps = _gradcam_at_layer(model, variables, images, labels, delta, layer)
  return upsample_to_input(model, variables, maps, images.shape[1:], layer)


def upsample_to_input(
    model: nn.Module, variables: Any, maps: jax.Array, image_shape: tuple[int, ...], layer: str
) -> jax.Array:
  """A layer's (N, h, w) map at input resolution (N, H, W).

  Each cell is placed at the centre of its receptive field, which is not
  where stretching the map over the image would put it (VALID convolutions
  and pools move the fields inwards), and pixels between centres are
  interpolated linearly.

  Args:
    model: the flax model.
    variables: its variables.
    maps: float (N, h, w), one value per cell of `layer`'s output.
    image_shape: (H, W, C) of the input.
    layer: the layer the map belongs to.

  Returns:
    float32 (N, H, W).
  """
  rows, cols = features.receptive_field_rows_cols(model, variables, image_shape, layer)
  up_rows = _interpolation_matrix(_centres(rows), image_shape[0])  # (H, h)
  up_cols = _interpolation_matrix(_centres(cols), image_shape[1])  # (W, w)
  return jnp.einsum("Hh,nhw,Ww->nHW", up_rows, maps, up_cols)


def gradcam_at_layer(
    model: nn.Module, variables: Any, images: jax.Array, labels: jax.Array, layer: str
) -> jax.Array:
  """Grad-CAM at the layer's own resolution: relu(sum_k alpha_k A_k), (N, h, w)."""
  delta = probe.zeros_like_layer(model, variables, images, layer)
  return _gradcam_at_layer(model, variables, images, labels, delta, layer)


@functools.partial(jax.jit, static_argnames=("model", "layer"))
def _gradcam_at_layer(model, variables, images, labels, delta, layer):
  def total_logit(d):
    logits, activation = probe.apply_with_layer(model, variables, images, layer, d)
    return jnp.sum(_label_logits(logits, labels)), activation

  grads, activation = jax.grad(total_logit, has_aux=True)(delta)
  weights = grads.mean(axis=(1, 2), keepdims=True)  # alpha_k: pooled gradients
  return nn.relu(jnp.sum(weights * activation.astype(jnp.float32), axis=-1))


def _centres(support: np.ndarray) -> np.ndarray:
  """Centre (in input pixels) of each output row's receptive field.

  Where the fields outgrow the image (EfficientNet's last layers see all of
  it), their clipped centres coincide; the cells are then spread evenly
  over the image, which is where "SAME"-padded strided layers put them.
  """
  centres = np.array([np.flatnonzero(s).mean() if s.any() else np.nan for s in support])
  if len(centres) > 1 and not np.all(np.diff(centres) > 0):
    size = support.shape[1]
    centres = (np.arange(len(centres)) + 0.5) * size / len(centres) - 0.5
  return centres


def _interpolation_matrix(centres: np.ndarray, size: int) -> jnp.ndarray:
  """(size, len(centres)) weights of linear interpolation between the centres.

  Pixels outside the first/last centre take the nearest cell's value.
  """
  eye = np.eye(len(centres))
  return jnp.asarray(
      np.stack([np.interp(np.arange(size), centres, e) for e in eye], axis=1), jnp.float32
  )


def heatmap(attribution: jax.Array) -> jax.Array:
  """(N, H, W, C) attribution -> (N, H, W): max |value| over channels (Simonyan et al.)."""
  return jnp.max(jnp.abs(attribution), axis=-1)
