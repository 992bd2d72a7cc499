"""Augmentation specs: "op|op(args)|..." -> [(name, kwargs)] -> augment(key, images).

`parse` reads a config string into (op name, keyword arguments) pairs, each
checked against the op's signature and ranges; `from_spec` composes the ops of
`cnn_jax.data.augment.ops.OPS` into one function of (key, NHWC batch), and
`from_spec_with_targets` into one of (key, batch dict) that moves the
segmentation mask and the boxes with the image.
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

from cnn_jax.data.augment.ops import OPS, PHOTOMETRIC, TRANSFORMS, Array
from cnn_jax.errors import ArgumentError

OpSpec = tuple[str, dict[str, Any]]

# The batch entries that from_spec_with_targets moves; TFDS's names where TFDS has one.
IMAGE = "image"
MASK = "segmentation_mask"
BOXES = "boxes"
BOX_VALID = "box_valid"

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
  ops = _checked_ops(spec)
  augment_images = _image_augmenter(ops)

  def augment(key: Array, images: Array) -> Array:
    _check_images(images)
    if not ops:
      return images
    return augment_images(key, images)

  return augment


def from_spec_with_targets(
    spec: str | Sequence[OpSpec], min_visibility: float = 0.25
) -> Callable[[Array, dict[str, Array]], dict[str, Array]]:
  """Like `from_spec`, for a batch dict whose mask and boxes move with the image.

  The images are `from_spec`'s for the same key: the same function computes
  them (bit for bit eagerly, and under jit with XLA's default flags). Every
  geometric op's transform, drawn from the key `from_spec` gives that op,
  also moves the mask (nearest neighbour; 0, background, where it comes
  from outside the image, the edge where the op repeats the image's edge)
  and the boxes; photometric ops change the image only. A moved box is the
  axis-aligned box around its moved corners, clipped to [0, 1].

  Box rule: each geometric op keeps a fraction of a box's moved area inside
  the image; a box stays valid while the product of these fractions over the
  ops is at least `min_visibility` and above 0 (as albumentations'
  `min_visibility`, but compounded over the ops: two crops that each keep
  half of a box keep a quarter). A box that left the image, or fell below
  the fraction, gets box_valid False and coordinates 0, as TFDS pads.

  Args:
    spec: a spec string for `parse`, or a sequence of (op name, kwargs).
    min_visibility: in [0, 1]; 0 drops only the boxes that left the image.

  Returns:
    augment(key, batch) -> batch, where batch holds "image" (float
    (N, H, W, C)) and optionally "segmentation_mask" (integer (N, H, W)) and
    "boxes" (float (N, K, 4), normalized (ymin, xmin, ymax, xmax)) with
    "box_valid" (bool (N, K)). Those come back moved (same shapes and
    dtypes); other entries come back unchanged. Works under `jax.jit`.

  Raises:
    ValueError: on an unknown op, bad arguments or min_visibility outside
      [0, 1]; augment raises it for a batch of other keys or shapes.
  """
  if not 0 <= min_visibility <= 1:
    raise ArgumentError(f"augment: min_visibility must lie in [0, 1], got {min_visibility}")
  ops = _checked_ops(spec)
  augment_images = _image_augmenter(ops)
  move_targets = _target_mover(ops, min_visibility)
  # With no geometric op the targets stay as they are (nor are boxes sanitized).
  moves_targets = any(name in TRANSFORMS for name, _ in ops)

  def augment(key: Array, batch: dict[str, Array]) -> dict[str, Array]:
    _check_batch(batch)
    if not ops:
      return batch
    images = batch[IMAGE]
    out = {**batch, IMAGE: augment_images(key, images)}
    targets = {name: batch[name] for name in (MASK, BOXES, BOX_VALID) if name in batch}
    if targets and moves_targets:
      out.update(move_targets(key, images.shape, targets))
    return out

  return augment


def _checked_ops(spec: str | Sequence[OpSpec]) -> list[OpSpec]:
  """The spec's ops, checked, each with every parameter (defaults filled in)."""
  if isinstance(spec, str):
    ops = parse(spec)
  else:
    ops = []
    for name, kwargs in spec:
      _known_op(name)
      ops.append((name, _check_args(name, (), dict(kwargs))))
  for name, _ in ops:
    # A new op must say whether it moves pixels; guessing could misalign targets.
    if name not in TRANSFORMS and name not in PHOTOMETRIC:
      raise ArgumentError(f"augment op {name!r} is neither in TRANSFORMS nor in PHOTOMETRIC")
  return [(name, _with_defaults(name, kwargs)) for name, kwargs in ops]


def _with_defaults(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
  bound = inspect.signature(OPS[name]).bind(None, None, **kwargs)
  bound.apply_defaults()
  return {param: value for param, value in bound.arguments.items() if param not in ("key", "image")}


def _image_augmenter(ops: Sequence[OpSpec]) -> Callable[[Array, Array], Array]:
  """(key, NHWC images) -> the images augmented, one key per example."""

  def augment_one(key: Array, image: Array) -> Array:
    for index, (name, kwargs) in enumerate(ops):
      image = OPS[name](jax.random.fold_in(key, index), image, **kwargs)
    return image

  def augment(key: Array, images: Array) -> Array:
    return jax.vmap(augment_one)(jax.random.split(key, images.shape[0]), images)

  return augment


def _target_mover(ops: Sequence[OpSpec], min_visibility: float) -> Callable[..., dict[str, Array]]:
  """(key, NHWC shape, targets) -> the targets moved as `_image_augmenter` moves the images.

  The targets get a pass of their own that draws each transform again from
  the same keys (draws are cheap next to resampling), so that no step of the
  image pass has another user: XLA then compiles the images as it compiles
  from_spec, where shared steps could fuse differently and change last bits.
  """
  geometric = [(index, op) for index, op in enumerate(ops) if op[0] in TRANSFORMS]

  def move_one(key: Array, targets: dict[str, Array], shape: tuple[int, ...]) -> dict[str, Array]:
    targets = dict(targets)
    visible = jnp.ones(targets[BOX_VALID].shape, jnp.float32) if BOXES in targets else None
    for index, (name, kwargs) in geometric:
      transform = TRANSFORMS[name](jax.random.fold_in(key, index), shape, **kwargs)
      if MASK in targets:
        targets[MASK] = transform.mask(targets[MASK])
      if BOXES in targets:
        targets[BOXES], kept = transform.boxes(targets[BOXES])
        visible = visible * kept
    if BOXES in targets:
      valid = targets[BOX_VALID] & (visible > 0) & (visible >= min_visibility)
      targets[BOX_VALID] = valid
      targets[BOXES] = jnp.where(valid[:, None], targets[BOXES], 0).astype(targets[BOXES].dtype)
    return targets

  def move(key: Array, shape: tuple[int, ...], targets: dict[str, Array]) -> dict[str, Array]:
    # Opaque to XLA, so that it cannot merge these draws with the image pass's.
    keys = jax.lax.optimization_barrier(jax.random.split(key, shape[0]))
    return jax.vmap(functools.partial(move_one, shape=tuple(shape[1:])))(keys, targets)

  return move


def _check_images(images: Array) -> None:
  if images.ndim != 4:
    raise ArgumentError(
        f"augment: expects an (N, H, W, C) batch, got shape {tuple(images.shape)}; "
        "pass a batch (one image x as x[None]), or call an op of OPS on one image"
    )


def _check_batch(batch: dict[str, Array]) -> None:
  """Raises ArgumentError unless the batch's image and targets fit together."""
  if IMAGE not in batch:
    raise ArgumentError(f"augment: the batch has no {IMAGE!r}; it has {sorted(batch)}")
  images = batch[IMAGE]
  _check_images(images)
  count, height, width = images.shape[:3]
  if MASK in batch:
    mask = batch[MASK]
    if mask.shape != (count, height, width) or not jnp.issubdtype(mask.dtype, jnp.integer):
      raise ArgumentError(
          f"augment: {MASK!r} must be integer classes of shape {(count, height, width)} "
          f"to match the images, got {mask.dtype} {tuple(mask.shape)}"
      )
  if (BOXES in batch) != (BOX_VALID in batch):
    raise ArgumentError(f"augment: {BOXES!r} and {BOX_VALID!r} come together; got one of them")
  if BOXES in batch:
    boxes, valid = batch[BOXES], batch[BOX_VALID]
    if boxes.ndim != 3 or boxes.shape[::2] != (count, 4) or valid.shape != boxes.shape[:2]:
      raise ArgumentError(
          f"augment: {BOXES!r} must be (N, K, 4) and {BOX_VALID!r} (N, K) with N = {count}, "
          f"got {tuple(boxes.shape)} and {tuple(valid.shape)}"
      )
    if valid.dtype != jnp.bool_ or not jnp.issubdtype(boxes.dtype, jnp.floating):
      raise ArgumentError(
          f"augment: {BOXES!r} must be float and {BOX_VALID!r} bool, "
          f"got {boxes.dtype} and {valid.dtype}"
      )
