"""Max pooling whose windows tile the image (window = stride, no padding) as reshape + max.

LeNet-5's, VGG's and the lecture's 2x2/2 pools are such tilings. XLA lowers
`reduce_window`'s gradient into `select_and_scatter`, which XLA:CPU runs as
slow scatter kernels (experiments/benchmarks/README.md has the profile). A
tiling needs no scatter: the windows are a reshape of the image, the forward pass
is a max over two axes, and the backward pass a mask.

The gradient is reduce_window's exactly, ties included: XLA's
select_and_scatter (with `>=`) gives a window's gradient to the first of
its maxima in row-major order, and so does the backward pass here, whereas
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
  return x[:, : rows * window, : cols * window].reshape(n, rows, window, cols, window, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tiled_max_pool(x, window):
  return jnp.max(_tiles(x, window), axis=(2, 4))


def _forward(x, window):
  y = _tiled_max_pool(x, window)
  return y, (x, y)


def _backward(window, residuals, g):
  x, y = residuals
  n, h, w, c = x.shape
  rows, cols = y.shape[1:3]
  # Visit each window's k*k positions in row-major order (strided slices, no
  # scatter and no cumulative sum, which XLA:CPU also runs as a slow
  # reduce_window): a position gets the gradient if it holds the maximum
  # and no earlier position did.
  taken = jnp.zeros(y.shape, bool)
  grad_rows = []
  for i in range(window):
    grad_cols = []
    for j in range(window):
      is_max = x[:, i : rows * window : window, j : cols * window : window] == y
      grad_cols.append(jnp.where(is_max & ~taken, g, jnp.zeros((), g.dtype)))
      taken = taken | is_max
    grad_rows.append(jnp.stack(grad_cols, axis=3))  # (N, rows, cols, k, C)
  dx = jnp.stack(grad_rows, axis=2)  # (N, rows, k, cols, k, C)
  dx = dx.reshape(n, rows * window, cols * window, c).astype(x.dtype)
  return (jnp.pad(dx, ((0, 0), (0, h - dx.shape[1]), (0, w - dx.shape[2]), (0, 0))),)


_tiled_max_pool.defvjp(_forward, _backward)
