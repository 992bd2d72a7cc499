"""Processes, devices and the data-parallel mesh.

One `jax.jit` runs the step over a `Mesh` of every device of every process:
the batch is split over the "data" axis, params are replicated. Because the
compiler sees the global batch, batch norm's mean and variance are over the
global batch too (no per-device statistics, unlike pmap without a psum).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"

# Environment variables that say a TPU pod or Open MPI launched us, so that
# jax.distributed.initialize() can find its peers without arguments (Slurm
# is recognised by SLURM_JOB_ID with more than one task).
_CLUSTER_HINTS = ("TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS", "OMPI_COMM_WORLD_SIZE")


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
  """Joins a multi-process run; a no-op for a single process.

  With a coordinator address, the processes meet there (local multi-process
  runs, any cluster). Without one, JAX's auto-detection is used when a TPU
  pod, Slurm or Open MPI launched us; otherwise this is one process alone.

  Args:
    coordinator_address: "host:port" of process 0, or None.
    num_processes: total processes (with a coordinator address).
    process_id: this process's index (with a coordinator address).
  """
  if coordinator_address:
    # CPU processes need a collectives library to talk to each other.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  elif _launched_by_cluster():
    jax.distributed.initialize()
  else:
    return
  logging.info(
      "process %d of %d, %d local / %d global devices",
      jax.process_index(),
      jax.process_count(),
      jax.local_device_count(),
      jax.device_count(),
  )


def _launched_by_cluster() -> bool:
  if "SLURM_JOB_ID" in os.environ:
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1
  return any(name in os.environ for name in _CLUSTER_HINTS)


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
  """A one-axis ("data") mesh over the given devices (default: all of them)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the mesh's data axis."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device (params, optimizer state)."""
  return NamedSharding(mesh, PartitionSpec())


def put_replicated(tree, mesh: Mesh):
  """Host arrays (the same on every process) -> replicated global arrays."""
  sharding = replicated(mesh)

  def put(value):
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

  return jax.tree.map(put, tree)
