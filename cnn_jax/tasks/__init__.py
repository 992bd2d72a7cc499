"""What a run learns to predict: each task owns its targets, loss, sums and metrics.

`config.task` names one of `TASKS`; the training loop asks only the `Task`
interface (see `base`), so classification, segmentation and detection share the loop.
"""

from __future__ import annotations

from typing import Any

from cnn_jax.errors import ConfigError
from cnn_jax.tasks.base import Task
from cnn_jax.tasks.classification import Classification
from cnn_jax.tasks.detection import Detection
from cnn_jax.tasks.segmentation import Segmentation

TASKS = ("classification", "segmentation", "detection")


def from_config(config: Any, dataset_classes: int) -> Task:
  """The task of a training config.

  Args:
    config: the training config (`task`, and classification's loss fields).
    dataset_classes: the dataset's classes (for segmentation, background not counted).

  Returns:
    A Classification, Segmentation or Detection.

  Raises:
    ConfigError: for an unknown config.task.
  """
  name = config.get("task", "classification")  # runs saved before config.task: classification
  if name == "classification":
    defaults = Classification()  # for fields that older runs' configs lack
    return Classification(
        config.get("label_smoothing", defaults.label_smoothing),
        config.get("aux_loss_weight", defaults.aux_loss_weight),
        config.get("loss", defaults.kind),
        config.get("map_j", defaults.map_j),
    )
  if name == "segmentation":
    return Segmentation(dataset_classes + 1)  # background is class 0
  if name == "detection":
    return Detection(dataset_classes)
  raise ConfigError(f"config.task={name!r}; use one of {TASKS}")


def headline(name: str) -> str:
  """The metric that runs of the task named `name` (config.task) are compared by.

  Args:
    name: "classification", "segmentation" or "detection".

  Returns:
    Its eval metric's name, e.g. "accuracy", "mean_iou", "AP".
  """
  classes = {"classification": Classification, "segmentation": Segmentation}
  return {**classes, "detection": Detection}[name].headline


def num_outputs(task: Task, dataset_classes: int) -> int:
  """The model's output classes for `task` on a dataset of `dataset_classes` classes.

  A detector's own box channels come on top of these (`cnn_jax.models.centernet`).
  """
  return task.num_classes if isinstance(task, Segmentation) else dataset_classes


__all__ = [
    "TASKS",
    "Classification",
    "Detection",
    "Segmentation",
    "Task",
    "from_config",
    "headline",
    "num_outputs",
]
