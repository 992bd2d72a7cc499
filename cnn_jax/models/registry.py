"""Models by name: every variant is a partial of one family class."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.errors import ArgumentError, UserError

# The per-channel statistics, in [0, 1] units, of the ImageNet training images
# that torchvision's weights (and every ImageNet recipe here) normalize with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A registered model: how to build it and the input it was designed for."""

  constructor: Callable[..., nn.Module]
  image_size: int
  channels: int
  num_classes: int
  paper: str


class UnknownModelError(UserError, KeyError):
  """A model name that is not in the zoo."""


_REGISTRY: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}


def register(
    name: str,
    constructor: Callable[..., nn.Module],
    *,
    image_size: int,
    channels: int = 3,
    num_classes: int = 1000,
    paper: str = "",
    aliases: tuple[str, ...] = (),
) -> None:
  """Adds a model to the zoo.

  Args:
    name: the registry name, e.g. "resnet50".
    constructor: a family class or a functools.partial of one.
    image_size: the input size of the paper's design (square).
    channels: input channels of the paper's design.
    num_classes: the paper's number of classes (used when the caller gives none).
    paper: short citation, shown by the summary and the README.
    aliases: other names for the same model.
  """
  if name in _REGISTRY or name in _ALIASES:
    raise ValueError(f"model {name!r} is registered twice")
  _REGISTRY[name] = ModelSpec(constructor, image_size, channels, num_classes, paper)
  for alias in aliases:
    _ALIASES[alias] = name


def spec(name: str) -> ModelSpec:
  """The registry entry of a model name or alias.

  Args:
    name: a name from `names()` or an alias such as "vgg16".

  Returns:
    Its `ModelSpec`.

  Raises:
    UnknownModelError: (a KeyError) naming the unknown model and listing the
      known ones.
  """
  name = _ALIASES.get(name, name)
  if name not in _REGISTRY:
    close = difflib.get_close_matches(name, [*names(), *_ALIASES], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UnknownModelError(f"unknown model {name!r}; {hint}known models: {', '.join(names())}")
  return _REGISTRY[name]


def names() -> list[str]:
  """The registered model names (aliases not included), in registration order."""
  return list(_REGISTRY)


def create(name: str, num_classes: int | None = None, **overrides) -> nn.Module:
  """Builds a zoo model.

  Args:
    name: a model name or alias (see `names()`).
    num_classes: output classes; defaults to the paper's.
    **overrides: any field of the family class, e.g. dtype=jnp.bfloat16,
      conv_impl="lecture", shortcut="B".

  Returns:
    An unbound `flax.linen.Module`; call `init`/`apply` on NHWC float input.
  """
  entry = spec(name)
  classes = entry.num_classes if num_classes is None else num_classes
  family = getattr(entry.constructor, "func", entry.constructor)
  fields = (
      [f.name for f in dataclasses.fields(family) if f.init and f.name not in ("parent", "name")]
      if dataclasses.is_dataclass(family)
      else []
  )
  # (a builder function, e.g. a CIFAR ResNet of some depth, checks its own arguments)
  unknown = [key for key in overrides if fields and key not in fields]
  if unknown:
    close = difflib.get_close_matches(unknown[0], fields, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ArgumentError(
        f"model {name!r} has no argument {unknown[0]!r}; {hint}its arguments: "
        f"{', '.join(fields)}"
    )
  return entry.constructor(num_classes=classes, **overrides)


def from_config(config: Any, num_classes: int) -> nn.Module:
  """The model a training config names: `config.model` with its overrides and compute dtype.

  Args:
    config: a training config (`model`, `model_kwargs`, `dtype`; see
      cnn_jax.train.config).
    num_classes: the dataset's number of classes.

  Returns:
    The flax module.
  """
  kwargs = {k: _tuples(v) for k, v in config.model_kwargs.to_dict().items()}
  return create(config.model, num_classes=num_classes, dtype=jnp.dtype(config.dtype), **kwargs)


def _tuples(value: Any) -> Any:
  """Lists as tuples, nested too: a run's config.json (JSON has no tuples) gives
  `widths=[8, 16]` where its config file said (8, 16), and a flax module's
  attributes must be hashable."""
  if isinstance(value, (list, tuple)):
    return tuple(_tuples(v) for v in value)
  return value
