"""Sanity checks for saliency maps (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

A map that explains the model must change when the model changes. The
cascading model-parameter randomization test re-initializes the layers from
the logits downwards, one more at a time, and measures how similar the map
of the randomized model stays to the trained model's map (Spearman rank
correlation of |map|). A method whose maps stay similar is showing the
input (edges), not what the network learned.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import numpy as np
import scipy.stats

from cnn_jax import introspection

# explain(variables) -> maps (N, H, W): a saliency method bound to its images and labels.
Explainer = Callable[[Any], Any]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
  """Spearman rank correlation of two arrays of equal size.

  Tied values share their average rank, so a constant map (all zeros after
  Grad-CAM's ReLU, say) has no order to agree with and scores 0.

  Args:
    a: any shape.
    b: the same number of values.

  Returns:
    The Pearson correlation of the ranks, in [-1, 1] (0 if one is constant).
  """
  ranks_a = scipy.stats.rankdata(np.ravel(a)).astype(np.float64)
  ranks_b = scipy.stats.rankdata(np.ravel(b)).astype(np.float64)
  ranks_a -= ranks_a.mean()
  ranks_b -= ranks_b.mean()
  denominator = np.sqrt((ranks_a**2).sum() * (ranks_b**2).sum())
  return float((ranks_a * ranks_b).sum() / denominator) if denominator else 0.0


def parameter_layers(model: nn.Module, variables: Any, x: jax.Array) -> list[str]:
  """Top-level layers with parameters, in the order the forward pass calls them.

  (The order of the keys of a params dict is not that order: restoring a
  checkpoint sorts them.)
  """
  called = [name.split("/")[0] for name in introspection.layer_shapes(model, variables, x)]
  return [name for name in dict.fromkeys(called) if name in variables["params"]]


def _mean_correlation(maps_a: np.ndarray, maps_b: np.ndarray, margin: int) -> float:
  """Mean over images of the Spearman correlation of |map|, `margin` pixels from the edge."""
  inner = (slice(None), slice(margin, -margin or None), slice(margin, -margin or None))
  a, b = np.abs(maps_a)[inner], np.abs(maps_b)[inner]
  return float(np.mean([spearman(x, y) for x, y in zip(a, b)]))


def _fresh_params(model: nn.Module, sample_input: Any, seed: int) -> Any:
  """Freshly initialized parameters, drawn with PRNG key `seed`."""
  return _jitted_init(model, sample_input, jax.random.key(seed))


# Jitted once per (model, input shape): an eager init compiles each op on its
# own (EfficientNet-Lite0 at 224x224: 23 s eager, 9 s jitted, then instant).
@functools.partial(jax.jit, static_argnames=("model",))
def _jitted_init(model: nn.Module, sample_input: Any, key: jax.Array) -> Any:
  return model.init(key, sample_input, train=False)["params"]


def cascading_randomization(
    model: nn.Module,
    variables: Any,
    explain: Explainer,
    sample_input: Any,
    seed: int = 1,
    margin: int = 0,
) -> list[tuple[str, float]]:
  """Rank correlation of |map| as the layers are randomized from the top down.

  Args:
    model: the flax model.
    variables: its trained variables.
    explain: variables -> maps (N, H, W) for fixed images and labels.
    sample_input: an input batch, to draw fresh parameters with `model.init`.
    seed: PRNG seed of the fresh parameters.
    margin: compare only the pixels at least this far from the image's edge.
      With unpadded ("VALID") convolutions a border pixel feeds fewer
      windows than an inner one, so every such network, trained or random,
      has small gradients there; that shared vignette alone correlates any
      two maps (see `random_baseline`).

  Returns:
    [(name of the last layer randomized, mean over images of the Spearman
    correlation between |trained map| and |randomized map|), ...], starting
    with the logits layer and ending with every layer randomized.
  """
  fresh = _fresh_params(model, sample_input, seed)
  trained_maps = np.asarray(explain(variables))
  names = parameter_layers(model, variables, sample_input)
  results = []
  params = dict(variables["params"])
  for name in reversed(names):
    params[name] = fresh[name]
    maps = np.asarray(explain({**variables, "params": params}))
    results.append((name, _mean_correlation(trained_maps, maps, margin)))
  return results


def random_baseline(
    model: nn.Module,
    variables: Any,
    explain: Explainer,
    sample_input: Any,
    seeds: tuple[int, int] = (101, 102),
    margin: int = 0,
) -> float:
  """The rank correlation of the maps of two independently initialized models.

  Neither model has learned anything, so this is what a map that does not
  depend on the parameters at all would score against its randomized self:
  the floor of `cascading_randomization`'s last value, set by what every
  network of the architecture shares (the input, the border).

  Args:
    model: the flax model.
    variables: any variables of it (only non-parameter collections are kept).
    explain: variables -> maps (N, H, W) for fixed images and labels.
    sample_input: an input batch, for `model.init`.
    seeds: the two models' PRNG seeds.
    margin: as in `cascading_randomization`.

  Returns:
    Mean over images of the Spearman correlation of the two |maps|.
  """
  maps = [
      np.asarray(explain({**variables, "params": _fresh_params(model, sample_input, seed)}))
      for seed in seeds
  ]
  return _mean_correlation(maps[0], maps[1], margin)
