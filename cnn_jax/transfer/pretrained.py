"""Starting a run from trained weights: `config.init_from` and `config.init_skip`."""

from __future__ import annotations

import os
import re
from typing import Any

import jax
import numpy as np
from absl import logging

from cnn_jax.errors import UserError
from cnn_jax.train import checkpoints
from cnn_jax.transfer import finetune
from cnn_jax.transfer.state_dict import load_state_dict
from cnn_jax.transfer.torchvision_weights import from_torchvision

_COLLECTIONS = ("params", "batch_stats")


class PretrainedMismatchError(UserError, ValueError):
  """Pretrained weights that do not fit the model; the message lists them."""


def load(init_from: str, model_name: str) -> dict[str, Any]:
  """The variables stored at `init_from`.

  Args:
    init_from: a training workdir of ours (its newest readable checkpoint), one
      checkpoint folder (".../checkpoints/<step>"), or a torchvision state
      dict file (.pth/.pt, converted for `model_name`).
    model_name: the model being trained (for torchvision's names).

  Returns:
    {"params": ..., "batch_stats": ...}.

  Raises:
    PretrainedMismatchError: when nothing usable is at init_from.
  """
  if not os.path.exists(init_from):
    raise PretrainedMismatchError(f"config.init_from={init_from!r} does not exist; give a "
                                  "training workdir, a checkpoint folder or a .pth file")
  if os.path.isfile(init_from):
    return from_torchvision(model_name, load_state_dict(init_from))
  if os.path.isdir(os.path.join(init_from, "state")):
    state = checkpoints.read_state(os.path.join(init_from, "state"))
    where = init_from
  elif os.path.isdir(os.path.join(init_from, "checkpoints")):
    step, state = checkpoints.newest_readable_state(os.path.join(init_from, "checkpoints"))
    where = f"{init_from} at step {step}"
  else:
    raise PretrainedMismatchError(f"config.init_from={init_from!r} is neither a .pth file, a "
                            "training workdir nor a checkpoint folder")
  # The weights that run evaluated: its EMA, if it kept one.
  params = state["ema_params"] if state.get("ema_params") else state["params"]
  logging.info("pretrained weights from %s%s", where, " (EMA)" if state.get("ema_params") else "")
  return {"params": params, **({"batch_stats": state["batch_stats"]}
                               if state.get("batch_stats") else {})}


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
    PretrainedMismatchError: listing leaves of the model that the weights do
      not have, leaves of the weights that the model does not have, and
      shape mismatches (never a silent partial load).
  """
  ours = finetune.flat_variables({c: v for c, v in fresh.items() if c in _COLLECTIONS})
  theirs = finetune.flat_variables({c: v for c, v in pretrained.items() if c in _COLLECTIONS})
  skipped = {key for key in ours | theirs if re.search(skip, key[1])}
  missing = [f"{c}:{p} {np.shape(v)}" for (c, p), v in ours.items()
             if (c, p) not in theirs and (c, p) not in skipped]
  unused = [f"{c}:{p} {np.shape(v)}" for (c, p), v in theirs.items()
            if (c, p) not in ours and (c, p) not in skipped]
  wrong = [f"{c}:{p} model {np.shape(v)} vs weights {np.shape(theirs[(c, p)])}"
           for (c, p), v in ours.items() if (c, p) in theirs and (c, p) not in skipped
           and np.shape(v) != np.shape(theirs[(c, p)])]
  if missing or unused or wrong:
    raise PretrainedMismatchError(
        "config.init_from does not fit the model: " + finetune.mismatch_report(
            missing, unused, wrong)
        + f"; re-initialize such parameters with config.init_skip (now {skip!r})")
  merged = {}
  for collection in fresh:
    paths = iter(finetune.param_paths(fresh[collection]))

    def pick(leaf, collection=collection):
      key = (collection, next(paths))
      if key in skipped or key not in theirs:
        return leaf
      return np.asarray(theirs[key], np.asarray(leaf).dtype)

    merged[collection] = jax.tree.map(pick, fresh[collection])
  return merged
