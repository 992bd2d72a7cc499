"""A run's record, and which config changes a resumed run may make to it.

A workdir's record says what its run is: config.json holds the config the run
started with and is never rewritten; environment.json lists under "resumes"
every later invocation that trained on, with its step and the fields it
changed (cnn_jax.train.reporting writes both). Re-running a command in a
workdir that has a record compares the command's config with the run's:

- RESUMABLE fields say how long the run goes and how it is watched, not what
  it is: its length, and the logging, evaluation and checkpoint cadence.
  A resume may change them; the change is recorded with its step.
- Every other field (IDENTITY lists those of `base_config`; a field a config
  file adds counts as one too) defines the run: data, model, optimizer,
  schedule, augmentation, seed. A command that would train on, or write the
  run's results, with another value is refused in one line naming the field
  and both values, before anything is written: the first steps of the run
  were trained with the recorded value, and its record must say so.

Re-running a finished run whose results are intact only re-evaluates it and
writes nothing, so it is not refused (it may evaluate with other settings;
the record keeps the run's).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import ml_collections

from cnn_jax import records, saved_runs
from cnn_jax.errors import ConfigError
from cnn_jax.train.config import base_config
from cnn_jax.train.workdir import WorkdirError

# How long the run goes and how it is watched: a resume may change these.
RESUMABLE = (
    "num_train_steps",
    "num_epochs",  # run length
    "eval_every_steps",
    "eval_every_epochs",  # eval cadence
    "log_every_steps",  # logging cadence
    "checkpoint_every_steps",
    "checkpoint_every_epochs",  # checkpoint cadence
    "keep_checkpoints",
    "keep_best",
    "async_checkpoints",
    "eval_batch_size",  # evaluation is padded and masked: every example counts once
)

# What the run is (base_config's other fields): a resume may not change these.
IDENTITY = (
    "seed",
    "task",
    "model",
    "model_kwargs",
    "dtype",
    "dataset",
    "data_dir",
    "train_split",
    "eval_split",
    "image_size",
    "resize",
    "input_pipeline",
    "grain_workers",  # the Grain iterator state is saved per worker layout
    "augment",
    "mean",
    "std",
    "normalize",
    "batch_size",
    "optimizer",
    "schedule",
    "loss",
    "map_j",
    "label_smoothing",
    "aux_loss_weight",
    "ema_decay",
    "init_from",
    "init_skip",
    "freeze",
    "unfreeze_after_epochs",
    "unfreeze_after_steps",
    "lr_mults",
)

_ABSENT = object()


def is_resumable(field: str) -> bool:
  """Whether a resume may change a (dotted) config field; see the module docstring."""
  return field.split(".", 1)[0] in RESUMABLE


@dataclasses.dataclass
class Comparison:
  """A command's config against the run recorded in its workdir.

  Attributes:
    workdir: the run's folder.
    redefined: (field, value here, value in the run) of IDENTITY fields that differ.
    changed: {field: {"from": value in force, "to": value here}} of RESUMABLE ones.
  """

  workdir: str
  redefined: list[tuple[str, Any, Any]]
  changed: dict[str, dict[str, Any]]

  def refusal(self) -> ConfigError:
    """The one-line error for the redefined fields."""
    parts = [
        f"config.{field} is {_show(here)} here but {_show(there)}"
        for field, here, there in self.redefined
    ]
    values = "its value" if len(parts) == 1 else "its values"
    return ConfigError(
        f"{', '.join(parts)} in the run in {self.workdir} (its config.json); "
        f"use {values}, or a new --workdir"
    )


def _show(value: Any) -> str:
  """A value as a user writes it in a config: tuples for lists, quoted strings."""
  if value is _ABSENT:
    return "not set"
  if isinstance(value, list):
    return "(" + ", ".join(_show(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  return repr(value)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  """{"optimizer.learning_rate": 0.1, ...}: nested dicts by dotted path."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def _as_recorded(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
  """A config as config.json holds it (tuples as lists), flattened."""
  tree = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
  return _flatten(json.loads(json.dumps(tree)))


def _recorded_config(workdir: str) -> dict[str, Any] | None:
  """The run's config in force: config.json with the changes of its resumes applied."""
  try:
    started = records.read_config(workdir)
  except records.DamagedRecord as e:
    raise WorkdirError(
        f"{e}: the run's config cannot be compared with this one; restore "
        "the file from a copy, or use a new --workdir"
    ) from None
  if started is None:
    return None
  current = _flatten(started)
  try:  # only the RESUMABLE fields' history is lost with it (reporting notes the damage)
    environment = records.read_json(os.path.join(workdir, "environment.json"))
  except records.DamagedRecord:
    environment = None
  resumes = environment.get("resumes", []) if isinstance(environment, dict) else []
  for resume in resumes:
    current.update({k: v["to"] for k, v in resume.get("changed", {}).items()})
  return current


def compare(config: ml_collections.ConfigDict, workdir: str) -> Comparison | None:
  """Compares a config with the run recorded in a workdir.

  A field that only one side has (a run from before the field existed)
  counts as `base_config`'s default on that side.

  Args:
    config: the command's config.
    workdir: the run's folder.

  Returns:
    The Comparison, or None when the workdir has no config.json (a new run).

  Raises:
    WorkdirError: config.json or environment.json is damaged.
  """
  recorded = _recorded_config(workdir)
  if recorded is None:
    return None
  here = _as_recorded(config)
  defaults = _as_recorded(base_config())
  redefined, changed = [], {}
  for field in dict.fromkeys([*here, *recorded]):
    now = here.get(field, defaults.get(field, _ABSENT))
    then = recorded.get(field, defaults.get(field, _ABSENT))
    if now == then:
      continue
    if is_resumable(field):
      changed[field] = {"from": None if then is _ABSENT else then, "to": now}
    else:
      redefined.append((field, now, then))
  return Comparison(workdir, redefined, changed)


def newest_checkpoint(workdir: str) -> int | None:
  """The step of the workdir's newest checkpoint folder (None if there is none)."""
  steps = saved_runs.checkpoint_steps(os.path.join(workdir, "checkpoints"))
  return steps[-1] if steps else None


def check(comparison: Comparison | None, step: int | None, total_steps: int) -> None:
  """Refuses a command that would train on, or write results, with a redefined run.

  Args:
    comparison: from `compare` (None: a new run).
    step: the step the run stands at (its newest checkpoint's; None without one).
    total_steps: the command's run length.

  Raises:
    ConfigError: naming each redefined field with both values; unless the
      run is finished and its results.json is intact, so that the command
      only re-evaluates it and writes nothing.
  """
  if comparison is None or not comparison.redefined:
    return
  if (
      step is not None
      and step >= total_steps
      and records.read_results(comparison.workdir) is not None
  ):
    return
  raise comparison.refusal()
