"""Augmentation specs: "op|op(args)|..." -> [(name, kwargs)] -> augment(key, images).

`parse` reads a config string into (op name, keyword arguments) pairs, each
checked against the op's signature and ranges; `from_spec` composes the ops of
`cnn_jax.data.augment.ops.OPS` into one function of (key, NHWC batch).
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from cnn_jax.data.augment.ops import OPS, Array
from cnn_jax.errors import ArgumentError

OpSpec = tuple[str, dict[str, Any]]

_OP_PATTERN = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?:\((.*)\))?\s*$", re.DOTALL)


def parse(spec: str) -> list[OpSpec]:
  """Parses an augmentation spec such as "flip_lr|crop(pad=4)|rotate(15)".

  Ops are separated by "|"; each may take arguments in parentheses,
  positional or keyword, written as numbers or tuples of numbers. Positional
  arguments are returned under their parameter names, and only the given
  arguments appear (the op's defaults fill in the rest).

  Args:
    spec: the spec; "" or "none" means no augmentation.

  Returns:
    A list of (op name, keyword arguments), in order.

  Raises:
    ValueError: on an unknown op, malformed text or bad arguments; the
      one-line message names the op.
  """
  text = spec.strip()
  if text.lower() in ("", "none"):
    return []
  return [_parse_op(part) for part in text.split("|")]


def _parse_op(text: str) -> OpSpec:
  match = _OP_PATTERN.match(text)
  if match is None:
    raise ArgumentError(
        f"augment op {text.strip()!r}: cannot parse, expected name or "
        f"name(args) with numbers; known ops: {', '.join(OPS)}"
    )
  name, arg_text = match.groups()
  _known_op(name)
  try:
    call = ast.parse(f"_({arg_text or ''})", mode="eval").body
    args = [ast.literal_eval(node) for node in call.args]
    kwargs = {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}
  except (SyntaxError, ValueError):
    raise ArgumentError(
        f"augment op {name!r}: arguments ({arg_text}) must be numbers or "
        f"tuples of numbers; it takes {_signature(name)}"
    ) from None
  return name, _check_args(name, args, kwargs)


def _known_op(name: str) -> None:
  if name not in OPS:
    raise ArgumentError(f"unknown augment op {name!r}; known ops: {', '.join(OPS)}")


def _signature(name: str) -> str:
  params = list(inspect.signature(OPS[name]).parameters.values())[2:]
  return "(" + ", ".join(f"{param.name}={param.default!r}" for param in params) + ")"


def _check_args(name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
  """Binds arguments to op `name` and checks their types and values.

  Args:
    name: a known op.
    args: positional arguments after (key, image).
    kwargs: keyword arguments.

  Returns:
    All given arguments by parameter name.

  Raises:
    ValueError: if the arguments do not fit the op's signature, are not
      numbers (or tuples where the default is a tuple), or are out of range.
  """
  signature = inspect.signature(OPS[name])
  try:
    bound = signature.bind(None, None, *args, **kwargs)
  except TypeError as err:
    raise ArgumentError(f"augment op {name!r}: {err}; it takes {_signature(name)}") from None
  given = {
      param: value for param, value in bound.arguments.items() if param not in ("key", "image")
  }
  for param, value in given.items():
    given[param] = _check_type(name, param, value, signature.parameters[param].default)
  # The ops check their own ranges while tracing; tracing shapes only (no
  # compile) on a small RGB probe reports bad values here, at config time.
  probe = jax.ShapeDtypeStruct((8, 8, 3), jnp.float32)
  jax.eval_shape(
      lambda key, image: OPS[name](key, image, **given), jax.eval_shape(jax.random.key, 0), probe
  )
  return given


def _check_type(name: str, param: str, value: Any, default: Any) -> Any:
  """The value as a number, or as a tuple of numbers where the default is one."""
  if isinstance(default, tuple):
    if (
        isinstance(value, (tuple, list))
        and len(value) == len(default)
        and all(_is_number(x) for x in value)
    ):
      return tuple(value)
    raise ArgumentError(
        f"augment op {name!r}: {param} must be a tuple of " f"{len(default)} numbers, got {value!r}"
    )
  if not _is_number(value):
    raise ArgumentError(f"augment op {name!r}: {param} must be a number, got {value!r}")
  return value


def _is_number(value: Any) -> bool:
  # bool is an int, which lets flags such as translate's `integer` be 0/1/True.
  return isinstance(value, (int, float))


def from_spec(spec: str | Sequence[OpSpec]) -> Callable[[Array, Array], Array]:
  """Composes augmentation ops into one function of (key, NHWC batch).

  Each example gets its own key, `jax.random.split(key, batch)`, and each op
  its own from that, `jax.random.fold_in(example_key, op_index)`; so one key
  gives one output, and examples of a batch are transformed independently.
  The result is a pure function that works under `jax.jit` (the spec is baked
  in, nothing of it is traced).

  Args:
    spec: a spec string for `parse`, or a sequence of (op name, kwargs).

  Returns:
    augment(key, images) -> images, for float (N, H, W, C) images; it keeps
    shape and dtype and raises ArgumentError (a ValueError) for other ranks.

  Raises:
    ValueError: on an unknown op or bad arguments.
  """
  if isinstance(spec, str):
    ops = parse(spec)
  else:
    ops = []
    for name, kwargs in spec:
      _known_op(name)
      ops.append((name, _check_args(name, (), dict(kwargs))))
  steps = [functools.partial(OPS[name], **kwargs) for name, kwargs in ops]

  def augment_one(key: Array, image: Array) -> Array:
    for index, step in enumerate(steps):
      image = step(jax.random.fold_in(key, index), image)
    return image

  def augment(key: Array, images: Array) -> Array:
    if images.ndim != 4:
      raise ArgumentError(
          f"augment: expects an (N, H, W, C) batch, got shape {tuple(images.shape)}; "
          "pass a batch (one image x as x[None]), or call an op of OPS on one image"
      )
    if not steps:
      return images
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(augment_one)(keys, images)

  return augment
