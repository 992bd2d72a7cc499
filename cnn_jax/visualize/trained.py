"""A trained model from a training workdir (its config, newest checkpoint and data),
or a zoo model with ImageNet weights and image files."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cnn_jax import data, models, records, saved_runs, tasks
from cnn_jax.data import imagenet, preprocess, sources
from cnn_jax.errors import WorkdirError
from cnn_jax.transfer import imagenet_weights


@dataclasses.dataclass
class TrainedModel:
  """What the visualizations need from a run.

  Attributes:
    model: the flax model (built from the run's config).
    variables: params (the EMA's, if the run kept one) and batch statistics.
    config: the run's config.
    step: the checkpoint's step.
    mean: per-channel normalization mean of the run.
    std: per-channel normalization standard deviation.
    class_names: names of the labels, when known (captions use them); of a
      segmentation run, of each mask value (0: background).
    task: what the run predicts (a segmentation run's examples are masks).
  """

  model: nn.Module
  variables: dict[str, Any]
  config: ml_collections.ConfigDict
  step: int
  mean: list[float]
  std: list[float]
  class_names: list[str] | None = None
  task: tasks.Task = dataclasses.field(default_factory=tasks.Classification)

  def network_input(self, images: np.ndarray) -> jax.Array:
    """uint8 images -> the float input the network was trained on."""
    return preprocess.standardize_uint8(jnp.asarray(images), self.mean, self.std)

  def to_display(self, x: jax.Array) -> np.ndarray:
    """Normalized float images -> [0, 1] for display."""
    return np.clip(np.asarray(x) * np.asarray(self.std) + np.asarray(self.mean), 0.0, 1.0)

  def examples(
      self, count: int, split: str | None = None, start: int = 0
  ) -> tuple[np.ndarray, np.ndarray | dict[str, np.ndarray]]:
    """The first `count` examples (from `start`) of a split (default: the eval split).

    Returns:
      (uint8 images (N, H, W, C) at the run's image size, int32 labels (N,));
      of a segmentation run, int32 masks (N, H, W) instead of labels; of a
      detection run, its objects: the task's targets by name ("boxes" (N, K, 4)
      normalized, "box_labels" (N, K), "box_valid" (N, K)).
    """
    config = self.config
    # Runs saved before config.resize existed were resized bilinearly.
    arrays = data.as_numpy(
        config.dataset,
        split or config.eval_split,
        config.image_size,
        config.data_dir or None,
        config.get("resize", "bilinear"),
        start=start,
        count=count,
        targets=self.task.targets,
    )
    if len(self.task.targets) > 1:
      return arrays["image"], {name: arrays[name] for name in self.task.targets}
    return arrays["image"], arrays[self.task.targets[0]].astype(np.int32)


def run_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a training workdir was run with (its config.json).

  Raises:
    WorkdirError: when the workdir has no config.json, with the command that makes one,
      or one that is not a JSON object (damaged, or another program's).
  """
  try:
    config = records.read_config(workdir)
  except records.DamagedRecord as e:
    raise WorkdirError(
        f"{e}; restore it from a copy (it is the config the run started "
        "with), or train the run again in a new --workdir"
    ) from None
  if config is None:
    raise WorkdirError(
        f"{workdir} has no config.json: it is not a training workdir; train "
        f"one with `python -m cnn_jax.main --config=configs/default.py "
        f"--workdir={workdir}`"
    )
  return ml_collections.ConfigDict(config)


def load(workdir: str) -> TrainedModel:
  """Loads a training workdir's model at its newest checkpoint.

  Args:
    workdir: a folder written by `python -m cnn_jax.main`.

  Returns:
    The TrainedModel.

  Raises:
    WorkdirError: when the config or every checkpoint is missing, with the
      command that makes them.
  """
  config = run_config(workdir)
  try:
    step, variables = saved_runs.load_variables(workdir)
  except saved_runs.CheckpointError as e:
    raise WorkdirError(str(e)) from None
  dataset_classes = sources.num_classes(config.dataset, config.data_dir or None)
  task = tasks.from_config(config, dataset_classes)
  model = models.from_config(config, tasks.num_outputs(task, dataset_classes))
  # As the run standardized its input (cnn_jax.train.config.input_mean_std).
  training_images = preprocess.ImageSplit(
      config.dataset, config.train_split, config.data_dir or None, config.image_size, config.resize
  )
  mean, std = preprocess.input_mean_std(config.normalize, config.mean, config.std, training_images)
  names = None
  if isinstance(task, tasks.Segmentation):
    names = ["background", *sources.class_names(config.dataset, config.data_dir or None)]
  return TrainedModel(model, variables, config, step, mean, std, names, task)


@dataclasses.dataclass
class PretrainedModel(TrainedModel):
  """A zoo model with ImageNet weights, shown on image files instead of a dataset.

  The photos have no labels: `examples` labels each with the network's own
  most probable class, which the methods then explain.
  """

  photos: np.ndarray | None = None  # uint8 (N, H, W, 3)

  def examples(
      self, count: int, split: str | None = None, start: int = 0
  ) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` photos (from `start`) and their top-1 classes (split: ignored)."""
    del split
    images = self.photos[start : start + count]
    logits = jax.jit(self.model.apply)(self.variables, self.network_input(images))
    return images, np.asarray(jnp.argmax(logits, axis=-1), np.int32)


def load_pretrained(
    model_name: str, weights: str | None, image_paths: list[str]
) -> PretrainedModel:
  """A zoo model with ImageNet weights and the photos to show it.

  Args:
    model_name: e.g. "efficientnet_lite0".
    weights: its .pth file; None: the installed weights package's.
    image_paths: image files, resized and centre-cropped to the model's input.

  Returns:
    The PretrainedModel (its config names the model; step 0).
  """
  size = models.spec(model_name).image_size
  photos = np.stack([imagenet.load_photo(path, size) for path in image_paths])
  model, variables = imagenet_weights.pretrained(model_name, weights)
  mean, std = imagenet_weights.pixel_normalization(model_name)
  config = ml_collections.ConfigDict({"model": model_name, "image_size": size, "eval_split": None})
  return PretrainedModel(
      model,
      variables,
      config,
      0,
      list(mean),
      list(std),
      imagenet.short_class_names(),
      photos=photos,
  )
