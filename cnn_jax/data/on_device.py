"""Small datasets held whole on the device.

For digits, MNIST and CIFAR the whole training split fits in device memory,
so the host need not feed anything: the jitted step itself picks its batch
from the epoch's permutation, augments and normalizes it. A batch depends
only on (seed, step), which makes a resumed run see exactly the examples an
uninterrupted one would. The permutation is drawn once per epoch
(`epoch_order`), not per step: for MNIST's 60,000 examples drawing it costs
more than a LeNet-5 step (experiments/benchmarks/README.md).
"""

from __future__ import annotations

import jax

from cnn_jax.errors import ArgumentError


def epoch_order(key: jax.Array, epoch, num_examples: int) -> jax.Array:
  """The permutation of the examples that epoch `epoch` visits (jit-able).

  Args:
    key: the data PRNG key.
    epoch: the epoch number.
    num_examples: size of the split.

  Returns:
    int32 (num_examples,), a permutation drawn from fold_in(key, epoch).
  """
  return jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)


def take_batch(
    arrays: dict[str, jax.Array], order: jax.Array, step: jax.Array, batch_size: int
) -> dict[str, jax.Array]:
  """The batch of step `step`, gathered on the device.

  Args:
    arrays: the whole split on the device, each (N, ...): "image" uint8
      (N, H, W, C) and the targets ("label" int (N,), ...).
    order: `epoch_order` of the epoch that `step` is in.
    step: the global step number.
    batch_size: the global batch size.

  Returns:
    {key: array[idx]}, idx the step's slice of `order`; the last partial
    batch of an epoch is dropped, as in the streamed pipeline.
  """
  idx = _slice(order, step, batch_size)
  return {key: array[idx] for key, array in arrays.items()}


def _steps_per_epoch(batch_size: int, num_examples: int) -> int:
  if batch_size > num_examples:
    raise ArgumentError(
        f"batch_size {batch_size} exceeds the {num_examples} training "
        "examples held on the device; use a smaller batch"
    )
  return num_examples // batch_size


def _slice(order: jax.Array, step, batch_size: int) -> jax.Array:
  position = step % _steps_per_epoch(batch_size, order.shape[0])
  return jax.lax.dynamic_slice_in_dim(order, position * batch_size, batch_size)
