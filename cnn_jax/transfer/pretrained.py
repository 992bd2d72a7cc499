"""Starting a run from trained weights: `config.init_from` and `config.init_skip`."""

from __future__ import annotations

import functools
import os
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnn_jax import introspection, models, saved_runs
from cnn_jax.errors import WeightMismatchError
from cnn_jax.transfer.state_dict import load_state_dict
from cnn_jax.transfer.torchvision_weights import (
    check_supported,
    from_torchvision,
    installed_weights,
)

_COLLECTIONS = ("params", "batch_stats")
# config.init_from's name for the ImageNet weights a pip package installs (installed_weights).
IMAGENET = "imagenet"


def load(init_from: str, model_name: str) -> dict[str, Any]:
  """The variables stored at `init_from`.

  Args:
    init_from: a training workdir of ours (its newest readable checkpoint), one
      checkpoint folder (".../checkpoints/<step>"), a torchvision state
      dict file (.pth/.pt, converted for `model_name`, or for its backbone:
      an FCN's ImageNet weights are its backbone's), or "imagenet": the
      file an installed weights package ships for the model or its backbone.
    model_name: the model being trained (for torchvision's names).

  Returns:
    {"params": ..., "batch_stats": ...}.

  Raises:
    WeightMismatchError: when nothing usable is at init_from.
    CheckpointError: when a workdir there holds no readable checkpoint.
    WeightMismatchError: a .pth file for a model it cannot fit.
    StateDictError: a file that is not a readable state dict.
  """
  if init_from == IMAGENET:
    init_from = installed_weights(models.backbone(model_name) or model_name)
  if not os.path.exists(init_from):
    raise WeightMismatchError(
        f"config.init_from={init_from!r} does not exist; give a "
        "training workdir, a checkpoint folder or a .pth file"
    )
  if os.path.isfile(init_from):
    backbone = models.backbone(model_name)
    check_supported(backbone or model_name)  # before seconds go into reading the file
    variables = from_torchvision(backbone or model_name, load_state_dict(init_from))
    if backbone is None:
      return variables
    # The backbone's own tree sits under "backbone" (cnn_jax.models.fcn).
    return {collection: {"backbone": tree} for collection, tree in variables.items()}
  if not (
      os.path.isdir(os.path.join(init_from, "state"))
      or os.path.isdir(os.path.join(init_from, "checkpoints"))
  ):
    raise WeightMismatchError(
        f"config.init_from={init_from!r} is neither a .pth file, a "
        "training workdir nor a checkpoint folder"
    )
  # The weights that run evaluated: its EMA, if it kept one.
  return saved_runs.load_variables(init_from)[1]


def merge(fresh: dict[str, Any], pretrained: dict[str, Any], skip: str) -> dict[str, Any]:
  """The fresh variables with every non-skipped leaf taken from `pretrained`.

  Args:
    fresh: the model's freshly initialized variables.
    pretrained: variables from `load`.
    skip: regex of parameter paths to keep freshly initialized (the head,
      whose shape follows the number of classes).

  Returns:
    Variables shaped like `fresh`.

  Raises:
    WeightMismatchError: listing leaves of the model that the weights do
      not have, leaves of the weights that the model does not have, and
      shape mismatches (never a silent partial load).
  """

  def flat(variables):
    return introspection.variables_by_path(
        {c: v for c, v in variables.items() if c in _COLLECTIONS}
    )

  ours, theirs = flat(fresh), flat(pretrained)
  skipped = {key for key in ours | theirs if re.search(skip, key[1])}
  missing = [
      f"{c}:{p} {np.shape(v)}"
      for (c, p), v in ours.items()
      if (c, p) not in theirs and (c, p) not in skipped
  ]
  unused = [
      f"{c}:{p} {np.shape(v)}"
      for (c, p), v in theirs.items()
      if (c, p) not in ours and (c, p) not in skipped
  ]
  wrong = [
      f"{c}:{p} model {np.shape(v)} vs weights {np.shape(theirs[(c, p)])}"
      for (c, p), v in ours.items()
      if (c, p) in theirs and (c, p) not in skipped and np.shape(v) != np.shape(theirs[(c, p)])
  ]
  if missing or unused or wrong:
    raise WeightMismatchError(
        "config.init_from does not fit the model: "
        + introspection.mismatch_report(missing, unused, wrong)
        + f"; re-initialize such parameters with config.init_skip (now {skip!r})"
    )

  def pick(collection, path, leaf):
    key = (collection, path)
    if key in skipped or key not in theirs:
      return leaf
    return np.asarray(theirs[key], np.asarray(leaf).dtype)

  return {
      collection: introspection.map_with_paths(functools.partial(pick, collection), tree)
      for collection, tree in fresh.items()
  }


def skip_pattern(init_skip: str, model_name: str, weights: dict[str, Any]) -> str:
  """The regex of parameters a run re-initializes.

  Args:
    init_skip: `config.init_skip`; "" for the default.
    model_name: the model being trained.
    weights: the variables from `load`.

  Returns:
    `init_skip` if given; else, for weights of a backbone alone (ImageNet's for
    an FCN or a CenterNet), every layer outside the backbone, which they do
    not have; else the model's head, whose shape follows the classes.
  """
  if init_skip:
    return init_skip
  if set(weights.get("params", {})) == {"backbone"}:
    return "^(?!backbone(/|$))"
  return models.head_pattern(model_name)


def initialize(
    state: Any,
    weights: dict[str, Any],
    tx: optax.GradientTransformation,
    place: Callable[[Any], Any],
    init_skip: str,
    model_name: str,
) -> Any:
  """A fresh training state with pretrained weights in its params and batch statistics.

  Args:
    state: the run's freshly initialized TrainState.
    weights: variables from `load`.
    tx: the run's optimizer; its state starts afresh for the new params.
    place: puts a pytree of host arrays where the run keeps its state (for
      example replicated over the mesh).
    init_skip: `config.init_skip`, the parameters to keep freshly initialized
      ("": the head, whose shape follows the number of classes).
    model_name: the model being trained (`config.model`), whose family names its head.

  Returns:
    The state with the merged variables, a fresh optimizer state and, if the
    run keeps one, an EMA equal to the new params.

  Raises:
    WeightMismatchError: when the weights do not fit the model (see `merge`).
  """
  fresh = {"params": state.params, "batch_stats": state.batch_stats}
  if not state.batch_stats:
    del fresh["batch_stats"]
  merged = merge(jax.device_get(fresh), weights, skip_pattern(init_skip, model_name, weights))
  params = place(merged["params"])
  return state.replace(
      params=params,
      batch_stats=place(merged.get("batch_stats", {})),
      opt_state=place(jax.device_get(tx.init(merged["params"]))),
      ema_params=jax.tree.map(jnp.copy, params) if state.ema_params else {},
  )
