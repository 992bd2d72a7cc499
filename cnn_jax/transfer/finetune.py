"""Fine-tuning: which parameters train, at which rate, and from which weights.

The lecture's recipe for a small dataset: keep the pretrained network and
retrain only the head; with more data, fine-tune more layers at a lower rate.
In a config:

    config.init_from = "/runs/digits"      # our workdir or checkpoint, or a torchvision .pth
    config.init_skip = ""                  # regex of parameters to re-initialize (default: head)
    config.freeze = "all_but_head"         # or "up_to:<layer>", or a regex of parameter paths
    config.unfreeze_after_epochs = 5       # two phases: head only, then everything (0: never)
    config.lr_mults = (("^(?!fc/)", 0.1),) # (regex, multiplier) pairs; the first match counts

The head is the family's output layers (`cnn_jax.models.head_pattern`,
declared with the family).

Frozen parameters get no update and no weight decay (optax masking: their
gradients are zeroed before the optimizer and its updates after it), and
frozen batch-norm layers normalize with their running statistics instead of
the batch's, and leave them unchanged.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import optax

from cnn_jax import introspection, models
from cnn_jax.errors import ConfigError


def frozen_mask(
    model: nn.Module, variables: Any, sample_input: jax.Array, freeze: str, head: str
) -> Any:
  """True for each parameter that `freeze` keeps fixed.

  Args:
    model: the flax model.
    variables: its variables (shapes suffice).
    sample_input: an input batch, to find the order of the layers.
    freeze: "" (nothing), "all_but_head", "up_to:<layer>" (that top-level
      layer and every one the forward pass calls before it), or a regex
      matched against parameter paths.
    head: regex of the head's parameters (for "all_but_head"), e.g.
      `cnn_jax.models.head_pattern(model_name)`.

  Returns:
    A pytree of bools shaped like params.

  Raises:
    ConfigError: for an unknown layer in "up_to:" or a freeze that matches nothing.
  """
  params = variables["params"]
  if not freeze:
    return jax.tree.map(lambda _: False, params)
  if freeze == "all_but_head":
    return introspection.map_with_paths(lambda path, _: re.search(head, path) is None, params)
  if freeze.startswith("up_to:"):
    layer = freeze[len("up_to:") :]
    order = list(
        dict.fromkeys(
            name.split("/")[0]
            for name in introspection.layer_shapes(model, variables, sample_input)
        )
    )
    if layer not in order:
      raise ConfigError(
          f"config.freeze={freeze!r}: no top-level layer {layer!r}; layers in "
          f"forward order: {', '.join(order)}"
      )
    frozen_layers = set(order[: order.index(layer) + 1])
    return introspection.map_with_paths(lambda path, _: path.split("/")[0] in frozen_layers, params)
  mask = introspection.map_with_paths(lambda path, _: re.search(freeze, path) is not None, params)
  if not any(jax.tree.leaves(mask)):
    raise ConfigError(
        f"config.freeze={freeze!r} matches no parameter; paths look like "
        f"{', '.join(list(introspection.by_path(params))[:4])}"
    )
  return mask


def lr_multipliers(params: Any, pairs: Sequence[tuple[str, float]]) -> Any:
  """Each parameter's learning-rate multiplier: the first matching regex's, else 1."""
  compiled = [(re.compile(pattern), float(mult)) for pattern, mult in pairs]
  return introspection.map_with_paths(
      lambda path, _: next((mult for pattern, mult in compiled if pattern.search(path)), 1.0),
      params,
  )


def fine_tuning_optimizer(
    tx: optax.GradientTransformation, frozen: Any, multipliers: Any, unfreeze_step: int = 0
) -> optax.GradientTransformation:
  """`tx` with frozen parameters masked out and per-parameter learning-rate multipliers.

  Args:
    tx: the optimizer of the config.
    frozen: pytree of bools (see `frozen_mask`).
    multipliers: pytree of floats (see `lr_multipliers`).
    unfreeze_step: frozen parameters train from this step on (0: never).

  Returns:
    An optax GradientTransformation.

  Raises:
    ConfigError: when every parameter is frozen and nothing unfreezes.
  """
  labels = jax.tree.map(lambda f: "frozen" if f else "trained", frozen)
  if not any(not f for f in jax.tree.leaves(frozen)) and unfreeze_step <= 0:
    raise ConfigError(
        "config.freeze freezes every parameter and nothing unfreezes: "
        "leave the head trainable or set config.unfreeze_after_epochs"
    )
  # Frozen: no update and no weight decay (the update is zeroed after the
  # optimizer), and the optimizer state stands still until the second phase.
  # Standing still matters for Adam: had it counted the frozen steps, its bias
  # correction would be spent and its first real steps several times too large.
  frozen_tx = (
      optax.transforms.conditionally_mask(tx, lambda step: step >= unfreeze_step)
      if unfreeze_step > 0
      else optax.set_to_zero()
  )
  masked = optax.multi_transform({"trained": tx, "frozen": frozen_tx}, labels)
  distinct = sorted(set(jax.tree.leaves(multipliers)))
  if distinct == [1.0]:
    return masked
  scaled = optax.multi_transform(
      {f"x{m}": optax.scale(m) for m in distinct}, jax.tree.map(lambda m: f"x{m}", multipliers)
  )
  return optax.chain(masked, scaled)


def frozen_batch_norm(frozen: Any) -> set[str]:
  """Paths of the batch-norm modules whose scale is frozen."""
  return {
      path.rsplit("/", 1)[0]
      for path, is_frozen in introspection.by_path(frozen).items()
      if is_frozen and path.endswith("/scale")
  }


def running_statistics_for(modules: set[str]):
  """A flax interceptor: these BatchNorm modules use their running statistics.

  Use as `with nn.intercept_methods(running_statistics_for(paths)): model.apply(...)`.
  The statistics are read, not updated, so a frozen layer stays as loaded.
  """

  def intercept(next_fun, args, kwargs, context):
    module = context.module
    if (
        not isinstance(module, nn.BatchNorm)
        or context.method_name != "__call__"
        or "/".join(module.path) not in modules
    ):
      return next_fun(*args, **kwargs)
    x = args[0]
    mean = module.get_variable("batch_stats", "mean")
    var = module.get_variable("batch_stats", "var")
    # Flax's own order of operations, so that frozen equals eval mode closely.
    multiplier = jax.lax.rsqrt(var + module.epsilon)
    if module.use_scale:
      multiplier = multiplier * module.get_variable("params", "scale")
    y = (x - mean) * multiplier
    if module.use_bias:
      y = y + module.get_variable("params", "bias")
    return y.astype(module.dtype or x.dtype)

  return intercept


@dataclasses.dataclass(frozen=True)
class FineTuning:
  """What the training loop needs from a config's freeze settings.

  Attributes:
    tx: the run's optimizer with frozen parameters masked out and the
      learning-rate multipliers applied.
    frozen_batch_norm: paths of the batch-norm layers whose scale is frozen;
      while frozen they normalize with their running statistics.
    unfreeze_step: frozen parameters train from this step on (0: never).
  """

  tx: optax.GradientTransformation
  frozen_batch_norm: frozenset[str] = frozenset()
  unfreeze_step: int = 0

  def batch_norm_frozen(self, step: int) -> bool:
    """Whether step `step` runs the frozen batch-norm layers on their running statistics."""
    return bool(self.frozen_batch_norm) and (not self.unfreeze_step or step < self.unfreeze_step)

  def interceptor(self, batch_norm_frozen: bool) -> Callable | None:
    """The flax method interceptor of a training step in that phase (None: no change)."""
    if not batch_norm_frozen:
      return None
    return running_statistics_for(set(self.frozen_batch_norm))


def from_config(
    config: Any,
    model: nn.Module,
    tx: optax.GradientTransformation,
    sample_input: jax.Array,
    unfreeze_step: int,
) -> FineTuning:
  """The fine-tuning of a training config: `freeze` and `lr_mults` applied to its optimizer.

  Args:
    config: a training config (`model`, `freeze`, `lr_mults`).
    model: the flax model.
    tx: the config's optimizer.
    sample_input: an input batch (its shape only), to find the layers' order.
    unfreeze_step: the step from which frozen parameters train (0: never),
      from `unfreeze_after_steps` or `unfreeze_after_epochs`.

  Returns:
    The FineTuning; without freeze settings, `tx` unchanged and nothing frozen.

  Raises:
    ConfigError: for a freeze setting or multiplier pattern that cannot apply.
  """
  if not (config.freeze or config.lr_mults):
    return FineTuning(tx)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), sample_input, train=False))
  try:
    frozen = frozen_mask(
        model, abstract, sample_input, config.freeze, models.head_pattern(config.model)
    )
    tx = fine_tuning_optimizer(
        tx, frozen, lr_multipliers(abstract["params"], config.lr_mults), unfreeze_step
    )
  except (ValueError, re.error) as e:
    raise ConfigError(str(e)) from None
  return FineTuning(tx, frozenset(frozen_batch_norm(frozen)), unfreeze_step)
