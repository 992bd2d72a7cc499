"""The data a run trains and evaluates on, in the form the steps take.

Two training paths, chosen by `config.input_pipeline`:

- "device": the whole training split is one replicated array on the
  devices; the jitted step gathers its batch from (seed, step). Nothing is
  fed per step and nothing needs saving beyond the step number.
- "grain": a Grain loader streams this process's shard of uint8 batches,
  a few steps ahead of the devices. Its iterator state after the last
  consumed batch is saved with each checkpoint.

Either way the host delivers uint8 images; augmentation and normalization
run inside the step.
"""

from __future__ import annotations

import collections
import functools
import json
from typing import Any, Iterable, Iterator, Protocol

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from cnn_jax.data import on_device, pipeline, preprocess, sources
from cnn_jax.train import parallel
from cnn_jax.errors import ConfigError, DataError
from cnn_jax.train.config import check_batch_divides
from cnn_jax.train.steps import given_batch

# Batches transferred to the devices ahead of the step.
_PREFETCH = 2


class TrainingInput(Protocol):
  """What the loop needs from its training data.

  `next(step, data_key)` returns what the step's `batch_fn(inputs, step,
  key)` takes the batch of step `step` from: the batch itself (Grain), or
  the whole split held on the devices with the epoch's order, from which
  the step gathers its batch (device).
  """

  batch_fn: Any
  steps_per_epoch: int
  num_examples: int
  image_shape: tuple[int, ...]

  def next(self, step: int, data_key: jax.Array) -> dict[str, jax.Array]:
    ...

  def examples(self, indices: jax.Array) -> tuple[jax.Array, jax.Array]:
    ...

  def state(self) -> bytes | None:
    ...

  def restore(self, state: bytes | None) -> None:
    ...


class DeviceInput:
  """The training split held whole on the devices: the image and the task's targets."""

  def __init__(self, split: dict[str, np.ndarray], batch_size: int, mesh: Mesh):
    self.num_examples = len(split["image"])
    if batch_size > self.num_examples:
      raise ConfigError(
          f"config.batch_size={batch_size} exceeds the {self.num_examples} "
          "training examples; use a smaller batch"
      )
    self.steps_per_epoch = self.num_examples // batch_size
    self.image_shape = split["image"].shape[1:]
    # Labels as int32, masks as they are (uint8).
    self._arrays = parallel.put_replicated(
        {k: v.astype(np.int32) if v.dtype == np.int64 else v for k, v in split.items()}, mesh
    )
    self.batch_fn = functools.partial(_take, batch_size=batch_size)
    self._epoch_order = jax.jit(
        functools.partial(on_device.epoch_order, num_examples=self.num_examples),
        out_shardings=parallel.replicated(mesh),
    )
    self._epoch, self._order = None, None
    self._gather = jax.jit(
        lambda arrays, indices: (arrays["image"][indices], arrays["label"][indices]),
        out_shardings=parallel.replicated(mesh),
    )

  def next(self, step: int, data_key: jax.Array) -> dict[str, jax.Array]:
    epoch = step // self.steps_per_epoch
    if epoch != self._epoch:  # drawn once per epoch: the step only slices it
      self._epoch, self._order = epoch, self._epoch_order(data_key, epoch)
    return {**self._arrays, "order": self._order}

  def examples(self, indices: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(uint8 images, int32 labels) of the training examples at `indices`, replicated."""
    return self._gather(self._arrays, indices)

  def state(self) -> bytes | None:
    return None  # the step number says everything

  def restore(self, state: bytes | None) -> None:
    del state


def _take(inputs, step, key, *, batch_size):
  del key  # the order was drawn from it (DeviceInput.next)
  arrays = {k: v for k, v in inputs.items() if k != "order"}
  return on_device.take_batch(arrays, inputs["order"], step, batch_size)


class GrainInput:
  """This process's shard of the training split, streamed by Grain."""

  def __init__(
      self, source, config: ml_collections.ConfigDict, mesh: Mesh, targets: tuple[str, ...]
  ):
    local_batch = config.batch_size // jax.process_count()
    self.num_examples = len(source)
    self.steps_per_epoch = self.num_examples // config.batch_size
    if self.steps_per_epoch == 0:
      raise ConfigError(
          f"config.batch_size={config.batch_size} exceeds the "
          f"{self.num_examples} training examples; use a smaller batch"
      )
    self._loader = pipeline.train_loader(
        source,
        batch_size=local_batch,
        seed=config.seed,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        image_size=config.image_size,
        resize=config.resize,
        worker_count=config.grain_workers,
        targets=targets,
    )
    self._sharding = parallel.batch_sharding(mesh)
    self._mesh = mesh
    self._read = pipeline.ReadBatch(source, config.image_size, config.resize)
    self._iterator = iter(self._loader)
    self._pending_states: collections.deque = collections.deque()
    self._consumed_state = self._iterator.get_state()
    self._device_batches: Iterator | None = None
    self.image_shape = (
        pipeline.ToArrays(config.image_size, config.resize, ()).map(source[0])["image"].shape
    )
    self.batch_fn = given_batch

  def _host_batches(self):
    for batch in self._iterator:
      # The loader runs ahead of the step; remember where it stood after each
      # batch so that a checkpoint records the batches really trained on.
      self._pending_states.append(self._iterator.get_state())
      yield batch

  def next(self, step: int, data_key: jax.Array) -> dict[str, jax.Array]:
    del step, data_key  # the loader knows where it stands
    if self._device_batches is None:
      self._device_batches = pipeline.prefetch_to_device(
          self._host_batches(), _PREFETCH, self._sharding
      )
    batch = next(self._device_batches)
    self._consumed_state = self._pending_states.popleft()
    return batch

  def examples(self, indices: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(uint8 images, int32 labels) of the training examples at `indices`, replicated.

    Read on the host apart from the stream (whose position stays), every
    process reading all of them, so that each holds the same copy.
    """
    batch = self._read.map(np.asarray(jax.device_get(indices)))
    return tuple(parallel.put_replicated((batch["image"], batch["label"]), self._mesh))

  def state(self) -> bytes:
    return json.dumps(self._consumed_state).encode()

  def restore(self, state: bytes | None) -> None:
    if state is None:
      return
    saved = json.loads(state)
    if not isinstance(saved, dict) or set(saved) != set(self._consumed_state):
      # Older versions of this pipeline saved grain.DataLoader positions.
      raise DataError(
          "the checkpoint's data position was saved by an older input pipeline; "
          "finish that run with the cnn_jax version that started it, or use a "
          "new --workdir"
      )
    self._iterator.set_state(saved)
    self._consumed_state = saved


def training_input(
    config: ml_collections.ConfigDict, mesh: Mesh, targets: tuple[str, ...] = ("label",)
) -> TrainingInput:
  """The training data of a config (see the module docstring).

  Args:
    config: the training config.
    mesh: the data-parallel mesh.
    targets: what the task reads besides the image (`cnn_jax.tasks.Task.targets`).

  Returns:
    A DeviceInput or GrainInput with `next()`, `batch_fn`, `steps_per_epoch`,
    `image_shape`, and `state()`/`restore()` for checkpoints.

  Raises:
    ConfigError: if the batch does not divide over the devices or exceeds the split.
    DataError: if the dataset is missing, with the command that prepares it.
  """
  check_batch_divides(config.batch_size, mesh.size)
  source = sources.load(
      config.dataset, config.train_split, config.data_dir or None, image_size=config.image_size
  )
  if config.input_pipeline == "device":
    split = sources.read_all(source, targets=targets)
    for key in targets:  # a mask at another size than the images is an error
      sources.target_array(source[0], key, config.image_size)
    split["image"] = preprocess.resize_uint8(split["image"], config.image_size, config.resize)
    return DeviceInput(split, config.batch_size, mesh)
  return GrainInput(source, config, mesh, targets)


class EvalInput:
  """The eval split: checked and opened once, read in masked global batches.

  A split trained from the device (`input_pipeline="device"`) is small: its
  batches are put on the devices at the first evaluation and kept for the
  others.
  """

  def __init__(
      self, config: ml_collections.ConfigDict, mesh: Mesh, targets: tuple[str, ...] = ("label",)
  ):
    """Checks the eval batch and opens the split.

    Args:
      config: the training config.
      mesh: the data-parallel mesh.
      targets: what the task reads besides the image.

    Raises:
      ConfigError: if the eval batch does not divide over the devices.
      DataError: if the split is missing, with the command that prepares it.
    """
    self._batch_size = config.eval_batch_size or config.batch_size
    check_batch_divides(self._batch_size, mesh.size, "eval_batch_size")
    self._source = sources.load(
        config.dataset, config.eval_split, config.data_dir or None, image_size=config.image_size
    )
    self._image_size, self._resize = config.image_size, config.resize
    self._targets = targets
    self._mesh = mesh
    self._keep = config.input_pipeline == "device"
    self._kept: list[dict[str, Any]] | None = None

  @property
  def num_examples(self) -> int:
    """The split's size (every process reads the same split)."""
    return len(self._source)

  def batches(self) -> Iterable[dict[str, Any]]:
    """{"image", the targets, "mask", "index"} global arrays split over the data axis."""
    if self._kept is not None:
      return self._kept
    host = pipeline.eval_batches(
        self._source,
        batch_size=self._batch_size // jax.process_count(),
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        image_size=self._image_size,
        resize=self._resize,
        targets=self._targets,
    )
    device = pipeline.prefetch_to_device(host, _PREFETCH, parallel.batch_sharding(self._mesh))
    if not self._keep:
      return device
    self._kept = list(device)
    return self._kept
