"""The task interface: what the training loop asks of classification, segmentation, ...

A task is a frozen dataclass (hashable: it is part of the jitted steps). The
loop knows only this interface, so everything it guarantees (resume, the
non-finite guard, checkpoints, sweeps, init_from, freezing) holds for every
task. Batches are dicts: "image" (uint8 NHWC) plus the task's `targets`,
and in evaluation "mask" (bool, the real examples of a padded batch) and
"index" (int32, each example's place in the eval split).
"""

from __future__ import annotations

import abc
from typing import Any

import jax
import jax.numpy as jnp

Sums = dict[str, jax.Array]


class Task(abc.ABC):
  """One kind of prediction: its targets, loss, on-device sums and metrics."""

  # The features a batch carries besides "image" (see `cnn_jax.data.sources.target_array`).
  targets: tuple[str, ...] = ()
  # The eval metric that ranks checkpoints (config.keep_best) and leads the logs.
  headline: str = "accuracy"

  @abc.abstractmethod
  def loss(self, outputs: jax.Array, aux_outputs: Any, batch: dict[str, jax.Array]) -> jax.Array:
    """The training loss of a batch (a float32 scalar).

    Args:
      outputs: the model's outputs (logits).
      aux_outputs: auxiliary heads' outputs (GoogLeNet's classifiers), a pytree or {}.
      batch: the batch's targets (and image).

    Returns:
      The loss the optimizer minimizes.
    """

  @abc.abstractmethod
  def empty_train_sums(self) -> Sums:
    """The training step's running sums of this task, at zero."""

  @abc.abstractmethod
  def train_sums(self, outputs: jax.Array, batch: dict[str, jax.Array]) -> Sums:
    """One training batch's contribution to the running sums (added by the loop)."""

  @abc.abstractmethod
  def train_metrics(self, sums: dict[str, Any]) -> dict[str, float]:
    """The logged training metrics of host values of the running sums."""

  @abc.abstractmethod
  def empty_eval_sums(self, num_examples: int) -> Sums:
    """The eval step's running sums, at zero.

    Args:
      num_examples: the eval split's size, for sums kept per example (a
        batch's examples are placed by batch["index"], their place in the split).

    Returns:
      The sums.
    """

  @abc.abstractmethod
  def eval_sums(self, outputs: jax.Array, batch: dict[str, jax.Array]) -> Sums:
    """One eval batch's sums over its real examples (batch["mask"])."""

  def add_eval_sums(self, totals: Sums, outputs: jax.Array, batch: dict[str, jax.Array]) -> Sums:
    """The eval step's update: the totals with one batch's `eval_sums` added.

    A task whose sums are kept per example (detection: each image's boxes)
    writes them in here instead.

    Args:
      totals: the sums so far.
      outputs: the model's outputs on the batch.
      batch: the batch (with "mask" and "index").

    Returns:
      The new totals.
    """
    return jax.tree.map(jnp.add, totals, self.eval_sums(outputs, batch))

  @abc.abstractmethod
  def eval_metrics(self, sums: dict[str, Any]) -> dict[str, Any]:
    """The eval metrics (results.json) of host values of the eval sums."""

  @abc.abstractmethod
  def eval_line(self, metrics: dict[str, Any]) -> str:
    """The eval metrics in a few words for the log, e.g. "accuracy 0.9912  loss 0.031"."""

  @abc.abstractmethod
  def predict(self, outputs: jax.Array) -> jax.Array:
    """The prediction of each example: a class, or a class per pixel."""
