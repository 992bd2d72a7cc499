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
from typing import Any, Callable, Sequence

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


def _gate(open_from: int) -> optax.GradientTransformation:
  """Multiplies by 0 before step `open_from` and by 1 from then on."""
  return optax.scale_by_schedule(lambda count: (count >= open_from).astype(jnp.float32))


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
  if unfreeze_step > 0:
    # Zero the gradient before the optimizer (its moments stay untouched) and
    # the update after it (no weight decay) until the second phase starts.
    frozen_tx = optax.chain(_gate(unfreeze_step), tx, _gate(unfreeze_step))
  else:
    frozen_tx = optax.set_to_zero()
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
    y = (x - mean) * jax.lax.rsqrt(var + module.epsilon)
    if module.use_scale:
      y = y * module.get_variable("params", "scale")
    if module.use_bias:
      y = y + module.get_variable("params", "bias")
    return y.astype(module.dtype or x.dtype)
  return intercept
