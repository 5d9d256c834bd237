"""Data parallelism over every device, with the same code on one CPU, several GPUs or a TPU slice.

The scripts train with one jitted update. `data_mesh` lays the visible devices (of every process
after `jax.distributed.initialize()`) on one axis, "data". The training state and the data
store are replicated on it; inside the update, `shard_batch` constrains the sampled windows to
be split along their batch axis, so XLA runs each device on its part of the batch and all-reduces
the gradients (GSPMD). The update's arithmetic is that of one device: the same windows are
sampled, and the loss is the same mean, so 4 devices give the result of 1 up to float
reassociation. With one device every call here is a no-op.

This module holds no model or loss code.
"""

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh() -> Mesh:
    """All devices (global across processes) on one data-parallel axis."""
    return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf of `tree` whole on every device of `mesh`."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(tree: Any, mesh: Mesh) -> Any:
    """Inside jit: split the leading (batch) axis of every leaf over the devices of `mesh`."""
    if mesh.size == 1:
        return tree
    return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, PartitionSpec(DATA_AXIS)))


def check_batch_divisible(batch_size: int, mesh: Mesh) -> None:
    """The batch must split evenly over the devices."""
    if batch_size % mesh.size:
        from common.runs import UsageError

        raise UsageError(
            f"--batch-size {batch_size} does not split over {mesh.size} devices; use a multiple of {mesh.size}"
        )
