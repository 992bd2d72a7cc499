"""Grain input pipelines over random-access sources.

The host delivers uint8 batches only; augmentation and normalization run on
the device inside the jitted step (see `cnn_jax.data.augment`), so the host
does the least work it can. Each process reads only its shard of the data.
Training batches are read with one call per batch (`ReadBatch`): read one
record at a time, TFDS's array_record source costs more per MNIST image than
the LeNet-5 step (experiments/benchmarks/README.md, "Input pipeline").
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import os
import signal
from typing import Any, Iterator

import grain
import jax
import numpy as np

from cnn_jax import interrupts
from cnn_jax.data import sources
from cnn_jax.data.preprocess import resize_uint8


@dataclasses.dataclass(frozen=True)
class ToArrays(grain.transforms.Map):
  """TFDS example -> {"image": uint8 HWC at image_size, "label": int32} (or other targets)."""

  image_size: int | None = None
  resize: str = "bilinear"  # see `resize_uint8`
  targets: tuple[str, ...] = ("label",)  # see `sources.target_array`

  def map(self, element: dict[str, Any]) -> dict[str, np.ndarray]:
    image = sources.with_channel_axis(np.asarray(element["image"], np.uint8))
    arrays = {"image": resize_uint8(image, self.image_size, self.resize)}
    for key in self.targets:
      arrays[key] = sources.target_array(element, key, self.image_size)
    return arrays


@dataclasses.dataclass(frozen=True)
class ReadBatch(grain.transforms.Map):
  """A batch of indices -> {"image": uint8 (B, H, W, C), "label": int32 (B,)}.

  One `__getitems__` call reads the batch (array_record reads it in one go),
  and equal-sized images are resized together (padding is one NumPy copy).
  """

  source: Any
  image_size: int | None = None
  resize: str = "bilinear"
  targets: tuple[str, ...] = ("label",)  # see `sources.target_array`

  def map(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    indices = [int(i) for i in indices]
    getitems = getattr(self.source, "__getitems__", None)
    examples = getitems(indices) if getitems else [self.source[i] for i in indices]
    images = [sources.with_channel_axis(np.asarray(e["image"], np.uint8)) for e in examples]
    if len({image.shape for image in images}) == 1:
      batch = resize_uint8(np.stack(images), self.image_size, self.resize)
    else:  # an image folder's files: each its own size
      batch = np.stack([resize_uint8(image, self.image_size, self.resize) for image in images])
    arrays = {"image": batch}
    for key in self.targets:
      arrays[key] = np.stack([sources.target_array(e, key, self.image_size) for e in examples])
    return arrays


class ShardView:
  """Examples shard_index, shard_index + shard_count, ... of a source.

  The processes' views are disjoint and together hold every example. (Grain's
  own ShardOptions on a sampler lost an example of uneven shards in our tests
  with grain 0.2.18, so the sharding is done here, where it is plain to see.)
  """

  def __init__(self, source, shard_index: int, shard_count: int):
    if not 0 <= shard_index < shard_count:
      raise ValueError(f"shard_index {shard_index} is not in [0, {shard_count})")
    self.source, self.shard_index, self.shard_count = source, shard_index, shard_count

  def __len__(self) -> int:
    return len(range(self.shard_index, len(self.source), self.shard_count))

  def __getitem__(self, index: int):
    return self.source[self.shard_index + index * self.shard_count]

  def __getitems__(self, indices: list[int]) -> list:
    indices = [self.shard_index + i * self.shard_count for i in indices]
    getitems = getattr(self.source, "__getitems__", None)
    return getitems(indices) if getitems else [self.source[i] for i in indices]

  def __repr__(self) -> str:
    # Grain compares reprs when restoring an iterator state.
    return f"ShardView({self.source!r}, {self.shard_index}, {self.shard_count})"


def _stop_with_parent(parent_pid: int, worker_index: int, worker_count: int) -> None:
  """Runs in each Grain worker process: it ends when its parent does.

  Grain's workers are daemonic children, ended by the parent's exit code,
  which a killed parent (kill -9, the OOM killer) never runs: they stayed
  alive, holding memory and CPU. Ctrl-C reaches every process of a terminal's foreground group:
  the trainer stops on it and ends its workers, so they ignore it rather
  than print a KeyboardInterrupt traceback each.
  """
  del worker_index, worker_count
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  interrupts.watch_parent(parent_pid, lambda: os._exit(1))


def train_loader(
    source,
    *,
    batch_size: int,
    seed: int,
    shard_index: int = 0,
    shard_count: int = 1,
    image_size: int | None = None,
    resize: str = "bilinear",
    worker_count: int = 0,
    num_epochs: int | None = None,
    targets: tuple[str, ...] = ("label",),
) -> grain.IterDataset:
  """A shuffled, sharded, repeating loader of this process's training batches.

  Process `shard_index` of `shard_count` reads only its part (`ShardView`),
  and the parts of all processes together hold every example once per
  epoch; every epoch is a new permutation of the part (from `seed` and the
  epoch). Its iterator has `get_state()`/`set_state()` (a small JSON-able
  dict), saved with checkpoints for an exact resume.

  Args:
    source: a random-access source (see `cnn_jax.data.sources.load`).
    batch_size: examples per batch on this process.
    seed: shuffle seed (the config's seed).
    shard_index: this process's index (jax.process_index()).
    shard_count: number of processes (jax.process_count()).
    image_size: resize images to this size (None: keep).
    resize: how (see `resize_uint8`).
    worker_count: Grain worker processes (0: threads of this process read
      and decode, which is enough for MNIST-sized images).
    num_epochs: stop after this many epochs (None: repeat forever).
    targets: the features read besides the image (see `sources.target_array`).

  Returns:
    A `grain.IterDataset`; iterate it for {"image", "label"} (or the
    targets') NumPy batches.
  """
  shard = ShardView(source, shard_index, shard_count)
  # Shuffle, then repeat: Grain reshuffles every epoch (seed + epoch), and a
  # batch may span two epochs, as one long stream of examples.
  batches = (
      grain.MapDataset.range(len(shard))
      .shuffle(seed=seed)
      .repeat(num_epochs)
      .batch(batch_size, drop_remainder=True)
      .map(ReadBatch(shard, image_size, resize, targets))
  )
  stream = batches.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
  if worker_count:
    stream = stream.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=worker_count),
        worker_init_fn=functools.partial(_stop_with_parent, os.getpid()),
    )
  return stream


def eval_batches(
    source,
    *,
    batch_size: int,
    shard_index: int = 0,
    shard_count: int = 1,
    image_size: int | None = None,
    resize: str = "bilinear",
    targets: tuple[str, ...] = ("label",),
) -> Iterator[dict[str, np.ndarray]]:
  """Every example exactly once, in fixed-size batches with a validity mask.

  Process p reads examples p, p + shard_count, ...; the last batch is padded
  (mask 0), and every process yields the same number of batches so that
  collective ops in the eval step line up across hosts.

  Args:
    source: a random-access source.
    batch_size: examples per batch on this process.
    shard_index: this process's index.
    shard_count: number of processes.
    image_size: resize images to this size (None: keep).
    resize: how (see `resize_uint8`).
    targets: the features read besides the image (see `sources.target_array`).

  Yields:
    {"image": uint8 (B, H, W, C), "label": int32 (B,), "mask": bool (B,),
    "index": int32 (B,)} (or the targets' arrays instead of "label"); "mask"
    marks the real examples, "index" their place in the split (the split's
    size for padding: out of range, so a scatter by it drops them).
  """
  n = len(source)
  num_batches = math.ceil(n / (batch_size * shard_count))
  dataset = (
      grain.MapDataset.source(source)
      .slice(slice(shard_index, None, shard_count))
      .map(ToArrays(image_size, resize, targets))
      .batch(batch_size, drop_remainder=False)
  )

  def indexed(batch: dict[str, np.ndarray], number: int) -> dict[str, np.ndarray]:
    position = number * batch_size + np.arange(batch_size)
    index = shard_index + position * shard_count
    return {**batch, "index": np.where(batch["mask"], index, n).astype(np.int32)}

  yielded = 0
  for batch in dataset.to_iter_dataset(grain.ReadOptions(num_threads=4)):
    yield indexed(_pad(batch, batch_size), yielded)
    yielded += 1
  # This process ran out before the others (or had no example at all): send
  # fully masked batches shaped like a real one.
  template = {k: v[None] for k, v in ToArrays(image_size, resize, targets).map(source[0]).items()}
  for number in range(yielded, num_batches):
    yield indexed(_pad({k: v[:0] for k, v in template.items()}, batch_size, like=template), number)


def _pad(
    batch: dict[str, np.ndarray], size: int, like: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
  like = like or batch
  valid = len(batch["image"])
  out = {}
  for key, value in batch.items():
    padding = np.zeros((size - valid, *like[key].shape[1:]), like[key].dtype)
    out[key] = np.concatenate([value, padding]) if valid < size else value
  out["mask"] = np.arange(size) < valid
  return out


def prefetch_to_device(
    batches: Iterator[dict[str, np.ndarray]], size: int, sharding: jax.sharding.Sharding
) -> Iterator[dict[str, jax.Array]]:
  """Keeps `size` batches in flight to the devices while the step runs.

  Each process passes its own (local) batches; with a sharding over several
  processes, the global array is assembled from every process's part.

  Args:
    batches: an iterator of NumPy batches (this process's part).
    size: how many batches to transfer ahead (2 hides one step's transfer).
    sharding: where the batch axis goes, e.g. NamedSharding(mesh, P("data")).

  Yields:
    The same batches as global `jax.Array`s, in order.
  """

  def put(batch):
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}

  queue = collections.deque()
  for batch in batches:
    queue.append(put(batch))  # transfers are asynchronous: this returns at once
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()
