"""A per-layer table in the style of the lecture's slides.

    python -m cnn_jax.summary --model resnet50 --image_size 224   (see __main__.py)

Every leaf layer the model calls gets a row: its name, type, output volume
(W x H x D), parameters and multiply-accumulates (MACs) per image. MACs count
the weight layers (convolutions, fully-connected layers and the few custom
weight layers that define `count_macs`), as the published figures do.
Connections, LeNet-5's measure, are the MACs plus one bias connection per
output unit of a layer with a bias.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax import introspection, layers, models


@dataclasses.dataclass(frozen=True)
class Row:
  """One leaf layer of the table."""

  name: str
  kind: str
  output_shape: tuple[int, ...]  # without the batch axis
  params: int
  macs: int
  connections: int


@dataclasses.dataclass(frozen=True)
class Summary:
  """The summary of a model on one input shape (all counts per image)."""

  rows: list[Row]
  total_params: int
  total_macs: int
  total_connections: int
  input_shape: tuple[int, ...]

  def table(self) -> str:
    """The rows and totals as an aligned text table."""
    header = ("layer", "type", "output", "params", "MACs")
    body = [
        (r.name, r.kind, _volume(r.output_shape), f"{r.params:,}", f"{r.macs:,}") for r in self.rows
    ]
    body.insert(0, ("input", "", _volume(self.input_shape), "", ""))
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(5)]
    align = ["<", "<", ">", ">", ">"]

    def fmt(line):
      return "  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(line, align, widths)).rstrip()

    rule = "-" * len(fmt(header))
    totals = [
        f"total parameters: {self.total_params:,}",
        f"total MACs: {self.total_macs:,} ({self.total_macs / 1e9:.3f} G)",
        f"total connections: {self.total_connections:,}",
    ]
    return "\n".join([fmt(header), rule, *map(fmt, body), rule, *totals])


def _volume(shape: Sequence[int]) -> str:
  # The lecture writes volumes as W x H x D; our arrays are (H, W, D).
  if len(shape) == 3:
    h, w, d = shape
    return f"{w}x{h}x{d}"
  return "x".join(map(str, shape))


def _subtree(tree: Any, path: Sequence[str]) -> Any:
  for key in path:
    if not isinstance(tree, dict) or key not in tree:
      return {}
    tree = tree[key]
  return tree


def summarize(model: nn.Module, input_shape: Sequence[int]) -> Summary:
  """Traces a model on one image and tabulates its leaf layers.

  Nothing is computed: shapes and counts come from an abstract trace
  (`jax.eval_shape`), so even VGG-E is summarized in a fraction of a second.

  Args:
    model: an unbound module, e.g. `cnn_jax.models.create("vgg_d")`.
    input_shape: (H, W, C) of one image.

  Returns:
    A `Summary` with a row per leaf layer call and the totals.
  """
  x = jnp.zeros((1, *input_shape), jnp.float32)
  with introspection.recording_calls() as calls:
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  return tabulate(calls, variables.get("params", {}), input_shape)


def tabulate(
    calls: Sequence[introspection.LayerCall], params: Any, input_shape: Sequence[int]
) -> Summary:
  """The summary of layer calls recorded while a model was initialized on one image.

  Args:
    calls: what `introspection.recording_calls` recorded during
      `model.init(key, x, train=False)` with x of shape (1, *input_shape)
      (traced or not), e.g. inside the trace that creates a training state.
    params: the "params" collection that init made (shapes suffice).
    input_shape: (H, W, C) of the image.

  Returns:
    A `Summary` with a row per leaf layer call and the totals.
  """
  # A module that called other modules is a container, not a layer of the table.
  parents = {call.path[:i] for call in calls for i in range(1, len(call.path))}
  rows, seen = [], set()
  for call in calls:
    path, module, out = call.path, call.module, call.output
    if path in parents or path in seen:
      continue
    seen.add(path)
    own = _subtree(params, path)
    out_shape = tuple(out.shape[1:]) if hasattr(out, "shape") else ()
    macs = _macs(module, own, out_shape)
    bias_units = math.prod(out_shape) if "bias" in own else 0
    rows.append(
        Row(
            "/".join(path),
            type(module).__name__,
            out_shape,
            layers.num_params(own),
            macs,
            macs + bias_units,
        )
    )
  return Summary(
      rows,
      layers.num_params(params),
      sum(r.macs for r in rows),
      sum(r.connections for r in rows),
      tuple(input_shape),
  )


def _macs(module: nn.Module, own_params: Any, out_shape: tuple[int, ...]) -> int:
  if hasattr(module, "count_macs"):
    return int(module.count_macs((1, *out_shape)))
  if isinstance(module, nn.ConvLocal):
    # One filter per output position, each used once: the kernel holds them all.
    return math.prod(own_params["kernel"].shape)
  if "kernel" in own_params:
    # Each kernel weight is used once per output position (conv) or once (dense).
    return math.prod(own_params["kernel"].shape) * math.prod(out_shape[:-1])
  return 0


def paper_table(
    name: str,
    image_size: int | None = None,
    channels: int | None = None,
    num_classes: int | None = None,
) -> str:
  """A zoo model's table, headed by the paper it follows.

  Args:
    name: a model name (cnn_jax.models.names()).
    image_size: input height = width (None: the paper's).
    channels: input channels (None: the paper's).
    num_classes: output classes (None: the paper's).

  Returns:
    "NAME: PAPER" and the table, as the command prints them.
  """
  entry = models.spec(name)
  size = image_size or entry.image_size
  model = models.create(name, num_classes=num_classes)
  table = summarize(model, (size, size, channels or entry.channels)).table()
  return f"{name}: {entry.paper}\n{table}"
