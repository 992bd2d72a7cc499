"""Small datasets held whole on the device.

For digits, MNIST and CIFAR the whole training split fits in device memory,
so the host need not feed anything: the jitted step itself picks its batch
(a fresh permutation per epoch, from the step number and the seed),
augments and normalizes it. A batch depends only on (seed, step), which
makes a resumed run see exactly the examples an uninterrupted one would.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cnn_jax.errors import ArgumentError


def batch_indices(key: jax.Array, step: jax.Array, batch_size: int,
                  num_examples: int) -> jax.Array:
  """Indices of the examples of training step `step` (jit-able).

  Each epoch is a permutation of all examples drawn from fold_in(key, epoch);
  the last partial batch of an epoch is dropped, as in the streamed pipeline.

  Args:
    key: the data PRNG key (from the config seed).
    step: the global step number (a traced int is fine).
    batch_size: the global batch size; must not exceed num_examples.
    num_examples: size of the split.

  Returns:
    int32 (batch_size,) indices into the split.
  """
  if batch_size > num_examples:
    raise ArgumentError(f"batch_size {batch_size} exceeds the {num_examples} training "
                     "examples held on the device; use a smaller batch")
  steps_per_epoch = num_examples // batch_size
  epoch, position = jnp.divmod(step, steps_per_epoch)
  order = jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)
  return jax.lax.dynamic_slice_in_dim(order, position * batch_size, batch_size)


def take_batch(images: jax.Array, labels: jax.Array, key: jax.Array, step: jax.Array,
               batch_size: int) -> tuple[jax.Array, jax.Array]:
  """The (uint8 images, labels) of step `step`, gathered on the device.

  Args:
    images: uint8 (N, H, W, C), the whole split on the device.
    labels: int (N,).
    key: the data PRNG key.
    step: the global step number.
    batch_size: the global batch size.

  Returns:
    (images[idx], labels[idx]) for this step's indices.
  """
  idx = batch_indices(key, step, batch_size, images.shape[0])
  return images[idx], labels[idx]
