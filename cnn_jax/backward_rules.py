"""How gradients pass backwards through ReLU and max-pool layers, chosen for a trace.

"gradient" is the true derivative; the others are the visualization rules
(Springenberg et al. 2015; Zeiler & Fergus 2014). The visualization code
chooses a rule with `backward_rule(...)`; `cnn_jax.layers.Activation` and
`MaxPool` read it while a model is traced, so the model itself never changes.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.errors import ArgumentError

BACKWARD_RULES = ("gradient", "guided", "deconvnet", "linear")
# (rule, the names of the ReLU layers traced with it).
_ACTIVE = contextvars.ContextVar("backward_rule", default=("gradient", []))


@contextlib.contextmanager
def backward_rule(rule: str) -> Iterator[list[str]]:
  """Within this context, models traced use another backward rule for ReLUs.

  The rule is read while a model is traced: enter the context inside the
  function that is differentiated (and jitted), so that each rule gets its
  own trace.

  Args:
    rule: "gradient" (the derivative: pass where the input was positive),
      "guided" (guided backprop: pass where the input and the incoming
      gradient are both positive), "deconvnet" (pass where the incoming
      gradient is positive, whatever the input), or "linear" (pass
      everything, as if the ReLU were the identity; max pools then also
      pass gradient to every input of their window, so that the support of
      a gradient is a receptive field). Max pools otherwise route gradient
      to the input that won the forward max: the deconvnet's "switches".

  Yields:
    A list that receives the name of every ReLU layer traced with the rule
    (empty: the model has no ReLU for the rule to act on).
  """
  if rule not in BACKWARD_RULES:
    raise ArgumentError(f"unknown backward rule {rule!r}; use one of {BACKWARD_RULES}")
  relus: list[str] = []
  token = _ACTIVE.set((rule, relus))
  try:
    yield relus
  finally:
    _ACTIVE.reset(token)


def active_rule() -> str:
  """The rule of the innermost `backward_rule` context ("gradient" outside any)."""
  return _ACTIVE.get()[0]


def visualization_relu(x: jax.Array, cap: float, layer_name: str) -> jax.Array:
  """ReLU (clipped at `cap`: ReLU6 with 6) forward, backward by the active visualization rule.

  Call it only where `active_rule()` is not "gradient"; there the layer's
  own activation function keeps its true derivative.

  Args:
    x: the ReLU's input.
    cap: the upper clip (math.inf for a plain ReLU).
    layer_name: the ReLU layer's name, added to the list `backward_rule` yields.

  Returns:
    The ReLU's output.
  """
  rule, relus = _ACTIVE.get()
  relus.append(layer_name)
  return _relu_with_backward(rule, cap)(x)


def _relu_with_backward(rule: str, cap: float = math.inf) -> Callable[[jax.Array], jax.Array]:
  """ReLU (clipped at `cap`) forward, with the backward rule `rule`."""

  @jax.custom_vjp
  def clipped_relu(x):
    return jnp.clip(x, 0, cap)

  def forward(x):
    return clipped_relu(x), x

  def backward(x, g):
    if rule == "guided":  # where the derivative is 1 and the incoming gradient positive
      return (g * ((x > 0) & (x < cap) & (g > 0)).astype(g.dtype),)
    if rule == "deconvnet":
      return (nn.relu(g),)
    return (g,)  # linear

  clipped_relu.defvjp(forward, backward)
  return clipped_relu
