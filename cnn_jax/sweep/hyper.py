"""The language of sweep definitions: `h` in a config file's `get_sweep(h)`.

    def get_sweep(h):
      return h.product([h.sweep("optimizer.learning_rate", [1e-3, 3e-3, 1e-2]),
                        h.sweep("seed", [0, 1])])

A sweep is a list of runs; a run is a dict of config overrides whose keys are
config fields as on the command line, without the "config." prefix.
"""

from __future__ import annotations

import builtins
import itertools
from typing import Any, Sequence

from cnn_jax.errors import SweepError

Overrides = dict[str, Any]


def sweep(key: str, values: Sequence[Any]) -> list[Overrides]:
  """One axis: the runs {key: v} for each v in values."""
  if isinstance(values, (str, bytes)) or not len(values):
    raise SweepError(f"sweep({key!r}, ...) needs a non-empty list of values")
  return [{key: v} for v in values]


def fixed(key: str, value: Any) -> list[Overrides]:
  """One value, for every run of a product or zip it joins."""
  return [{key: value}]


def product(axes: Sequence[list[Overrides]]) -> list[Overrides]:
  """Every combination of the axes' runs (the last axis varies fastest)."""
  return [_merge(combination) for combination in itertools.product(*axes)]


def zip(axes: Sequence[list[Overrides]]) -> list[Overrides]:  # pylint: disable=redefined-builtin
  """The i-th runs of all axes together; the axes must be equally long."""
  lengths = sorted({len(axis) for axis in axes})
  if len(lengths) > 1:
    raise SweepError(f"zip needs axes of equal length, got lengths {lengths}")
  return [_merge(runs) for runs in builtins.zip(*axes)]


def _merge(runs: Sequence[Overrides]) -> Overrides:
  merged: Overrides = {}
  for run in runs:
    for key, value in run.items():
      if key in merged and merged[key] != value:
        raise SweepError(f"two axes set {key!r} ({merged[key]!r} and {value!r})")
      merged[key] = value
  return merged
