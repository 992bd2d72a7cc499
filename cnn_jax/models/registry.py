"""Models by name: every variant is a partial of one family class.

A family's module declares, next to its class, a `Family`: the facts that code
around the model needs (its output layers, its pretrained weights' names and
input normalization, its XLA:CPU setting), and registers its variants with it
and with each variant's input size. Fine-tuning, weight conversion, predict
and cpu_flags read these records instead of tables of their own.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.errors import ArgumentError, UnknownModelError

# The per-channel statistics, in [0, 1] units, of the ImageNet training images
# that torchvision's weights (and every ImageNet recipe here) normalize with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True, eq=False)
class PretrainedWeights:
  """A family's ImageNet weights, as state dicts in torchvision's layout.

  Data only: cnn_jax.transfer reads it (models never import transfer).

  Attributes:
    models: the zoo names, aliases included, that such weights fit.
    mean: per-channel mean, in [0, 1] units, of the input the weights were
      trained on.
    std: per-channel standard deviation of that input.
    renames: (regex, replacement) pairs that turn a state-dict key into our
      module path ("." still separating modules), applied in order.
    numbered_in_order: the keys' `features.N` are our convolutions and their
      `classifier.N` our dense layers, in order (torchvision's VGG, AlexNet).
    flattened: our dense layers whose input is a flattened feature map, with
      that map's (C, H, W): PyTorch flattens channels first, we flatten NHWC.
    output_weight: the key of the output layer's weight ("": the last
      `classifier.N.weight`).
    auxiliary: key prefixes of auxiliary heads, dropped when our model has none.
    packages: {model: pip package that ships its weights file}.
    model_kwargs: fields of the model that the weights were trained with
      (torchvision's GoogLeNet re-normalizes its input: transform_input=True).
  """

  models: tuple[str, ...]
  mean: tuple[float, ...] = IMAGENET_MEAN
  std: tuple[float, ...] = IMAGENET_STD
  renames: tuple[tuple[str, str], ...] = ()
  numbered_in_order: bool = False
  flattened: dict[str, tuple[int, int, int]] = dataclasses.field(default_factory=dict)
  output_weight: str = ""
  auxiliary: tuple[str, ...] = ()
  packages: dict[str, str] = dataclasses.field(default_factory=dict)
  model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, eq=False)
class Family:
  """What the code around a model family knows of it, declared next to its class.

  Attributes:
    name: the family, e.g. "resnet" (resnet18 ... resnet1202).
    head_layers: top-level paths of the layers that output the classes,
      auxiliary heads' included: what fine-tuning re-initializes and trains.
    pretrained: its ImageNet weights in torchvision's layout; None: none.
    xla_cpu_ynn_fusion: the value of --xla_cpu_experimental_ynn_fusion_type
      that trains it fastest on the CPU (applied by cnn_jax.cpu_flags; the
      measurements are in experiments/benchmarks/README.md); None: XLA's
      default (not measured).
    rbf_output: whether a built model of the family has Euclidean RBF output
      units, its logits -y with y_i = sum_j (x_j - w_ij)^2 (LeCun et al.
      1998), which the paper's losses need (see `has_rbf_output`); None: no
      model of the family has.
    task: what its outputs predict (config.task): "classification" (logits
      per image) or "segmentation" (logits per pixel).
  """

  name: str
  head_layers: tuple[str, ...]
  pretrained: PretrainedWeights | None = None
  xla_cpu_ynn_fusion: str | None = None
  rbf_output: Callable[[nn.Module], bool] | None = None
  task: str = "classification"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A registered model: how to build it, its family and the input it was designed for."""

  constructor: Callable[..., nn.Module]
  family: Family
  image_size: int
  channels: int
  num_classes: int
  paper: str


_REGISTRY: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}


def register(
    name: str,
    constructor: Callable[..., nn.Module],
    *,
    family: Family,
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
    family: the family's record, declared next to its class.
    image_size: the input size of the paper's design (square).
    channels: input channels of the paper's design.
    num_classes: the paper's number of classes (used when the caller gives none).
    paper: short citation, shown by the summary and the README.
    aliases: other names for the same model.
  """
  if name in _REGISTRY or name in _ALIASES:
    raise ValueError(f"model {name!r} is registered twice")
  _REGISTRY[name] = ModelSpec(constructor, family, image_size, channels, num_classes, paper)
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


def backbone(name: str) -> str | None:
  """The zoo model that a model is built on (FCN's `backbone` field), or None.

  Args:
    name: a model name or alias.

  Returns:
    The backbone's name, whose parameters sit under the model's "backbone";
    None for a model built on none.
  """
  return getattr(spec(name).constructor, "keywords", {}).get("backbone")


def family(name: str) -> Family:
  """The family record of a model name or alias (see `spec`)."""
  return spec(name).family


def has_rbf_output(name: str, model: nn.Module) -> bool:
  """Whether a model's logits are -y of Euclidean RBF units (see `Family.rbf_output`).

  Args:
    name: the model's name or alias.
    model: the module built for it (its fields may change its output layer).

  Returns:
    True for e.g. lenet5, False for lenet5_modern and every other family.
  """
  test = family(name).rbf_output
  return test is not None and bool(test(model))


def families() -> list[Family]:
  """The registered families, in the order their first model was registered."""
  return list({id(entry.family): entry.family for entry in _REGISTRY.values()}.values())


def head_pattern(name: str) -> str:
  """Regex of the parameter paths of a model's output layers (auxiliary heads' too).

  Args:
    name: a model name or alias.

  Returns:
    e.g. "^(fc)(/|$)" for a ResNet.
  """
  return f"^({_alternatives(family(name).head_layers)})(/|$)"


def body_pattern(name: str) -> str:
  """Regex of the parameter paths of every layer of a model but its output layers.

  Args:
    name: a model name or alias.

  Returns:
    e.g. "^(?!(fc)(/|$))" for a ResNet.
  """
  return f"^(?!({_alternatives(family(name).head_layers)})(/|$))"


def _alternatives(paths: tuple[str, ...]) -> str:
  return "|".join(re.escape(path) for path in paths)


def create(name: str, /, num_classes: int | None = None, **overrides) -> nn.Module:
  """Builds a zoo model.

  Args:
    name: a model name or alias (see `names()`).
    num_classes: output classes; defaults to the paper's.
    **overrides: any field of the family class, e.g. dtype=jnp.bfloat16,
      conv_impl="lecture", shortcut="B"; and the flax module `name`, which
      a module that builds a zoo model in its own `__call__` gives that
      submodule (cnn_jax.models.fcn's "backbone"; hence `name` above is
      positional-only).

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
  unknown = [key for key in overrides if fields and key not in fields and key != "name"]
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
