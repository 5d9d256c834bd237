"""Data parallelism over every device and every host, with the same code on one CPU, several GPUs,
a TPU slice or a cluster of hosts.

The scripts train with one jitted update. `data_mesh` lays the devices out as [processes, local
devices] on the axes ("process", "data"). The training state is replicated on every device;
inside the update, `shard_batch` constrains the sampled windows to be split along their batch
axis over all devices, so XLA runs each device on its part of the batch and all-reduces the
gradients (GSPMD). With one process the data store is replicated too, the same windows are
sampled whatever the device count, and the loss is the same mean: 4 devices give the result of
1 up to float reassociation. With one device every call here is a no-op.

Several hosts (`--distributed`): `init_distributed` starts JAX's multi-process runtime
(`jax.distributed.initialize`); every process loads only its own disjoint part of the data
(common/data.py) and common/replay.py's `place_store` makes the parts one global store [P, ...] whose
part p lives on process p's devices, where its windows are sampled. Only process 0 writes
outputs and evaluates (`local_copy` gives it the replicated parameters as local arrays).

This module holds no store, model or loss code.
"""

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from common.errors import UsageError

PROCESS_AXIS = "process"
DATA_AXIS = "data"


def init_distributed() -> None:
    """Start JAX's multi-process runtime (call before anything touches a device).

    On TPU pods, SLURM and Open MPI clusters JAX finds the coordinator and the process ids itself;
    elsewhere set JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES and
    JAX_PROCESS_ID in every process's environment. CPU processes talk through gloo.
    """
    kwargs = {}
    for name, key in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
        if os.environ.get(key):
            try:
                kwargs[name] = int(os.environ[key])
            except ValueError:
                raise UsageError(
                    f"{key}={os.environ[key]!r} is not an integer; set it to this process's {name.replace('_', ' ')}"
                ) from None
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**kwargs)
    except (ValueError, RuntimeError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(
            f"--distributed could not start JAX's multi-process runtime ({first_line}); outside a TPU pod, SLURM or "
            "Open MPI job set JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES and JAX_PROCESS_ID in every process"
        ) from None


def is_main_process() -> bool:
    return jax.process_index() == 0


def data_mesh() -> Mesh:
    """All devices (of every process) as [processes, local devices] on the axes ("process", "data")."""
    rows = [[d for d in jax.devices() if d.process_index == p] for p in range(jax.process_count())]
    if len({len(r) for r in rows}) != 1:
        raise UsageError(f"the processes have different device counts ({[len(r) for r in rows]}); give every process the same")
    return Mesh(np.asarray(rows), (PROCESS_AXIS, DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf of `tree` whole on every device of `mesh`."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(tree: Any, mesh: Mesh) -> Any:
    """Inside jit: split the leading (batch) axis of every leaf over all the devices of `mesh`."""
    if mesh.size == 1:
        return tree
    return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, PartitionSpec((PROCESS_AXIS, DATA_AXIS))))


def over_seeds(chunk, atari: bool):
    """`chunk(state, store)` for every seed of a state stacked on a leading seed axis (the store is shared).

    Vmapped: one batched program, the fastest on GPUs and TPUs and for BSuite's small MLPs. With Atari's
    convolutions on a CPU the seeds run one after another instead (lax.map, the same program per seed): the
    batched convolutions of vmapped seeds cost more there than the seeds one by one (ROSMO, small networks,
    batch 32, 2 seeds: 0.78 s against 0.55 s per update of both, one seed 0.27 s, on 2 cores with another job).
    """
    if atari and jax.default_backend() == "cpu":
        return lambda state, store: jax.lax.map(lambda one: chunk(one, store), state)
    return jax.vmap(chunk, in_axes=(0, None))


def local_copy(tree: Any) -> Any:
    """Arrays replicated over several processes -> this process's copy (other leaves unchanged)."""

    def local(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return x.addressable_data(0)
        return x

    return jax.tree.map(local, tree)


def check_batch_divisible(batch_size: int, mesh: Mesh) -> None:
    """The batch must split evenly over the devices."""
    if batch_size % mesh.size:
        raise UsageError(f"--batch-size {batch_size} does not split over {mesh.size} devices; use a multiple of {mesh.size}")
