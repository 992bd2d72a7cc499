"""Max pooling whose windows tile the image (window = stride, no padding) as reshape + max.

LeNet-5's, VGG's and the lecture's 2x2/2 pools are such tilings. XLA lowers
`reduce_window`'s gradient into `select_and_scatter`, which XLA:CPU runs as
scatter kernels (4.5 ms of a LeNet-5 training step at batch 128 on this
machine, where PyTorch's pool backward takes 0.2 ms; issue 18). A tiling
needs no scatter: the windows are a reshape of the image, the forward pass
is a max over two axes, and the backward pass a mask.

The gradient is reduce_window's exactly, ties included: XLA's
select_and_scatter (with `>=`) gives a window's gradient to the first of
its maxima in row-major order, and so does the mask here, whereas
`jnp.max`'s own gradient would share it among tied maxima.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def tiled_max_pool(x: jax.Array, window: int) -> jax.Array:
  """Max over non-overlapping window x window tiles of NHWC images.

  Rows and columns past the last whole tile are ignored, as `reduce_window`
  with "VALID" padding and stride = window ignores them.

  Args:
    x: (N, H, W, C).
    window: the tile's side (= the stride).

  Returns:
    (N, H // window, W // window, C); gradients equal `lax.reduce_window`'s.
  """
  return _tiled_max_pool(x, window)


def _tiles(x: jax.Array, window: int) -> jax.Array:
  """(N, H, W, C) -> (N, H//k, k, W//k, k, C), a view of the whole tiles."""
  n, h, w, c = x.shape
  rows, cols = h // window, w // window
  return x[:, :rows * window, :cols * window].reshape(n, rows, window, cols, window, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tiled_max_pool(x, window):
  return jnp.max(_tiles(x, window), axis=(2, 4))


def _forward(x, window):
  y = _tiled_max_pool(x, window)
  return y, (x, y)


def _backward(window, residuals, g):
  x, y = residuals
  tiles = _tiles(x, window)
  is_max = tiles == y[:, :, None, :, None, :]
  # The first maximum of each window in row-major order: no maximum before
  # it in its row of the window, and none in the window's rows above.
  earlier_in_row = (jnp.cumsum(is_max, axis=4) - is_max) > 0
  row_has_max = jnp.any(is_max, axis=4, keepdims=True)
  earlier_row = (jnp.cumsum(row_has_max, axis=2) - row_has_max) > 0
  first = is_max & ~earlier_in_row & ~earlier_row
  dx = jnp.where(first, g[:, :, None, :, None, :], jnp.zeros((), g.dtype))
  n, h, w, c = x.shape
  dx = dx.reshape(n, y.shape[1] * window, y.shape[2] * window, c).astype(x.dtype)
  return (jnp.pad(dx, ((0, 0), (0, h - dx.shape[1]), (0, w - dx.shape[2]), (0, 0))),)


_tiled_max_pool.defvjp(_forward, _backward)
