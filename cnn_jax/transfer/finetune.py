"""Fine-tuning: which parameters train, at which rate, and from which weights.

The lecture's recipe for a small dataset: keep the pretrained network and
retrain only the head; with more data, fine-tune more layers at a lower rate.
In a config:

    config.init_from = "/runs/digits"      # our workdir or checkpoint, or a torchvision .pth
    config.init_skip = ""                  # regex of parameters to re-initialize (default: the head)
    config.freeze = "all_but_head"         # or "up_to:<layer>", or a regex of parameter paths
    config.unfreeze_after_epochs = 5       # two phases: head only, then everything (0: never)
    config.lr_mults = (("^(?!fc/)", 0.1),) # (regex, multiplier) pairs; the first match counts

Frozen parameters get no update and no weight decay (optax masking: their
gradients are zeroed before the optimizer and its updates after it), and
frozen batch-norm layers normalize with their running statistics instead of
the batch's, and leave them unchanged.
"""

from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from cnn_jax.visualize import probe

# The output layer of every family of the zoo (auxiliary heads included).
DEFAULT_HEAD = r"^(output|fc|classifier|head/fc8|aux_4[ad]/fc2)(/|$)"


def param_paths(params: Any) -> list[str]:
  """"layer/sub/leaf" paths of a params tree, in tree order."""
  return ["/".join(getattr(k, "key", str(k)) for k in path)
          for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def flat_variables(variables: dict[str, Any]) -> dict[tuple[str, str], Any]:
  """{(collection, "layer/sub/leaf"): leaf} of a variables tree."""
  return {(collection, path): leaf for collection, tree in variables.items()
          for path, leaf in zip(param_paths(tree), jax.tree.leaves(tree))}


def mismatch_report(missing: list[str], unused: list[str], wrong: list[str]) -> str:
  """One line listing (the first few of) each kind of mismatch between weights."""
  return "; ".join(f"{what}: {', '.join(items[:8])}{' ...' if len(items) > 8 else ''}"
                   for what, items in (("not in the weights", missing),
                                       ("not in the model", unused),
                                       ("shape mismatch", wrong)) if items)


def _tree_of(params: Any, value_of: Callable[[str], Any]) -> Any:
  paths = iter(param_paths(params))
  return jax.tree.map(lambda _: value_of(next(paths)), params)


def frozen_mask(model: nn.Module, variables: Any, sample_input: jax.Array, freeze: str,
                head: str = DEFAULT_HEAD) -> Any:
  """True for each parameter that `freeze` keeps fixed.

  Args:
    model: the flax model.
    variables: its variables (shapes suffice).
    sample_input: an input batch, to find the order of the layers.
    freeze: "" (nothing), "all_but_head", "up_to:<layer>" (that top-level
      layer and every one the forward pass calls before it), or a regex
      matched against parameter paths.
    head: regex of the head's parameters (for "all_but_head").

  Returns:
    A pytree of bools shaped like params.

  Raises:
    ValueError: for an unknown layer in "up_to:" or a freeze that matches nothing.
  """
  params = variables["params"]
  if not freeze:
    return _tree_of(params, lambda path: False)
  if freeze == "all_but_head":
    return _tree_of(params, lambda path: re.search(head, path) is None)
  if freeze.startswith("up_to:"):
    layer = freeze[len("up_to:"):]
    order = list(dict.fromkeys(name.split("/")[0] for name in
                               probe.layer_shapes(model, variables, sample_input)))
    if layer not in order:
      raise ValueError(f"config.freeze={freeze!r}: no top-level layer {layer!r}; layers in "
                       f"forward order: {', '.join(order)}")
    frozen_layers = set(order[:order.index(layer) + 1])
    return _tree_of(params, lambda path: path.split("/")[0] in frozen_layers)
  mask = _tree_of(params, lambda path: re.search(freeze, path) is not None)
  if not any(jax.tree.leaves(mask)):
    raise ValueError(f"config.freeze={freeze!r} matches no parameter; paths look like "
                     f"{', '.join(param_paths(params)[:4])}")
  return mask


def lr_multipliers(params: Any, pairs: Sequence[tuple[str, float]]) -> Any:
  """Each parameter's learning-rate multiplier: the first matching regex's, else 1."""
  compiled = [(re.compile(pattern), float(mult)) for pattern, mult in pairs]
  return _tree_of(params, lambda path: next(
      (mult for pattern, mult in compiled if pattern.search(path)), 1.0))


class _FrozenUntilState(NamedTuple):
  count: jax.Array
  inner: optax.OptState


def _frozen_until(inner: optax.GradientTransformation,
                  open_from: int) -> optax.GradientTransformation:
  """`inner`, but before step `open_from` updates are zero and its state stands still.

  Standing still matters for Adam: had it counted the frozen steps, its bias
  correction would be spent and its first real steps several times too large.
  """
  def init(params):
    return _FrozenUntilState(jnp.zeros((), jnp.int32), inner.init(params))

  def update(updates, state, params=None):
    new_updates, new_inner = inner.update(updates, state.inner, params)
    is_open = state.count >= open_from
    new_updates = jax.tree.map(lambda u: jnp.where(is_open, u, jnp.zeros_like(u)), new_updates)
    new_inner = jax.tree.map(lambda new, old: jnp.where(is_open, new, old), new_inner,
                             state.inner)
    return new_updates, _FrozenUntilState(state.count + 1, new_inner)

  return optax.GradientTransformation(init, update)


def _scale_by_tree(multipliers: Any) -> optax.GradientTransformation:
  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u, m: u * m, updates, multipliers), state
  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def fine_tuning_optimizer(tx: optax.GradientTransformation, frozen: Any, multipliers: Any,
                          unfreeze_step: int = 0) -> optax.GradientTransformation:
  """`tx` with frozen parameters masked out and per-parameter learning-rate multipliers.

  Args:
    tx: the optimizer of the config.
    frozen: pytree of bools (see `frozen_mask`).
    multipliers: pytree of floats (see `lr_multipliers`).
    unfreeze_step: frozen parameters train from this step on (0: never).

  Returns:
    An optax GradientTransformation.
  """
  labels = jax.tree.map(lambda f: "frozen" if f else "trained", frozen)
  if not any(not f for f in jax.tree.leaves(frozen)) and unfreeze_step <= 0:
    raise ValueError("config.freeze freezes every parameter and nothing unfreezes: "
                     "leave the head trainable or set config.unfreeze_after_epochs")
  # Frozen: no update and no weight decay (the update is zeroed after the
  # optimizer), and optimizer state untouched until the second phase.
  frozen_tx = _frozen_until(tx, unfreeze_step) if unfreeze_step > 0 else optax.set_to_zero()
  masked = optax.multi_transform({"trained": tx, "frozen": frozen_tx}, labels)
  if all(m == 1.0 for m in jax.tree.leaves(multipliers)):
    return masked
  return optax.chain(masked, _scale_by_tree(multipliers))


def frozen_batch_norm(frozen: Any) -> set[str]:
  """Paths of the batch-norm modules whose scale is frozen."""
  return {path.rsplit("/", 1)[0] for path, is_frozen in
          zip(param_paths(frozen), jax.tree.leaves(frozen))
          if is_frozen and path.endswith("/scale")}


def running_statistics_for(modules: set[str]):
  """A flax interceptor: these BatchNorm modules use their running statistics.

  Use as `with nn.intercept_methods(running_statistics_for(paths)): model.apply(...)`.
  The statistics are read, not updated, so a frozen layer stays as loaded.
  """
  def intercept(next_fun, args, kwargs, context):
    module = context.module
    if (not isinstance(module, nn.BatchNorm) or context.method_name != "__call__"
        or "/".join(module.path) not in modules):
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
