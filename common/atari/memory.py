"""Memory of the Atari stores: what the whole-data device store and the streamed ring need, what a device has,
and the choice between them.

Memory: `choose_store` compares the device store of a data fraction and the stream ring, each
plus the compiled update's own memory (XLA's memory analysis), with what a device has
(`memory_stats()['bytes_limit']`, or `--device-memory-gb`), and answers 'device', 'stream' or a
one-line UsageError naming the largest fraction that fits; 'auto' never stops there: where the ring of
`--stream-capacity-steps` does not fit either, it streams on a ring halved until it fits (`shrunk_ring`, at
least MIN_RING_STEPS, with a warning in its reason where even that exceeds the memory given).
`check_store` does this for a script:
it compiles the update once on a ring-shaped store, except where nothing needs it (no memory
limit reported: the requested store, 'auto' taking the device store; a device store that alone
exceeds the memory: the error at once). Host memory of the stream path is bounded by
`host_memory_bound`. Several devices of one process each hold a full copy of the ring
(replicated, as the device path's store); under --distributed each process writes its own part
of a [P, ...] ring from its own shards (`shard_locations(process=...)`).

The scripts reach this through common/data.py's `open_feed`; the ring itself is common/atari/stream.py.
This module holds no loss or network code.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from common.atari import games
from common.errors import UsageError
from common.replay import Store

FRAME_SHAPE = games.FRAME_SHAPE  # (84, 84)
FRAME_BYTES = FRAME_SHAPE[0] * FRAME_SHAPE[1]
# Per-step arrays of a Store besides the frame: action, reward, discount, episode_end, episode_start and
# starts (4 bytes each), is_terminal (1 byte).
STEP_ARRAY_BYTES = 6 * 4 + 1
STEPS_PER_SHARD = 1_000_000  # about 1M transitions per checkpoint shard (RL Unplugged)
MIN_CHUNK_ROWS = 1024

DEFAULT_CAPACITY_STEPS = 131_072
DEFAULT_REFILL_STEPS = 32_768
DEFAULT_POOL_STEPS = 65_536
DEFAULT_SHUFFLE_EPISODES = 1000
DEFAULT_WORKERS = 4


# ----------------------------------------------------------------------------------------------
# Memory: what each store needs, what a device has, and the choice
# ----------------------------------------------------------------------------------------------


def store_bytes(num_steps: int, frame_shape: tuple = FRAME_SHAPE) -> int:
    """Device bytes of a Store of `num_steps` steps: frames once ([N, 84, 84] uint8) plus the per-step arrays."""
    return int(num_steps) * (int(np.prod(frame_shape)) + STEP_ARRAY_BYTES)


def ring_settings(capacity_steps: int) -> dict:
    """The refill (a quarter of the ring) and the host pool (half of it) of a ring of `capacity_steps` steps,
    as the defaults are: 131,072 -> refill 32,768 (more than the longest episode at the 27k cap), pool 65,536."""
    return {"refill_steps": max(capacity_steps // 4, 1), "pool_steps": max(capacity_steps // 2, 1)}


def stream_device_bytes(capacity_steps: int, refill_steps: int) -> int:
    """Device bytes of the stream path's data: the ring, and up to two staged chunks of frames."""
    return store_bytes(capacity_steps) + 2 * refill_steps * FRAME_BYTES


def ring_device_bytes(capacity_steps: int) -> int:
    """`stream_device_bytes` of a ring refilled as `ring_settings` says (a quarter at a time)."""
    return stream_device_bytes(capacity_steps, ring_settings(capacity_steps)["refill_steps"])


def estimated_steps(game: str, data_fraction: float, num_shards: int | None = None) -> int:
    """Steps of `data_fraction` of one run, before reading it: about 1M per checkpoint shard."""
    return int(math.ceil(data_fraction * (num_shards or games.num_checkpoints(game)) * STEPS_PER_SHARD))


def tree_bytes(tree) -> int:
    """Bytes of every array (or ShapeDtypeStruct) leaf of `tree`."""
    return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


class UpdateMemory(NamedTuple):
    bytes: int  # device bytes the compiled update needs besides the store it reads
    source: str  # "XLA memory analysis" or what the estimate counts


def update_memory(compiled, state, store) -> UpdateMemory:
    """The device memory a compiled update needs besides the store: its arguments (state, store), outputs
    and temporaries as XLA's memory analysis counts them, less the store and the donated (aliased) bytes.

    `compiled`: `jax.jit(...).lower(state, store).compile()` of an update that reads every array of the store
    (as `sample_windows` does); the arguments may be ShapeDtypeStructs.
    Where the backend gives no analysis, an estimate: 4x the training state (state in and out, gradients,
    optimiser temporaries), activations not counted."""
    analysis = compiled.memory_analysis() if hasattr(compiled, "memory_analysis") else None
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    if analysis is None:
        return UpdateMemory(
            4 * tree_bytes(state),
            "an estimate (4x the training state, no activations): this backend gives no XLA memory analysis",
        )
    total = (
        analysis.argument_size_in_bytes
        + analysis.output_size_in_bytes
        + analysis.temp_size_in_bytes
        + analysis.generated_code_size_in_bytes
        - analysis.alias_size_in_bytes
    )
    return UpdateMemory(max(int(total) - tree_bytes(store), 0), "XLA memory analysis")


def device_memory_bytes(device_memory_gb: float | None = None, devices: Sequence | None = None) -> int | None:
    """Bytes one device may use: `device_memory_gb` (1 GB = 1e9 bytes) if given, else the smallest
    `memory_stats()['bytes_limit']` of `devices` (default: this process's), else None (not reported, e.g. CPU)."""
    if device_memory_gb is not None:
        if not (math.isfinite(device_memory_gb) and device_memory_gb > 0):
            raise UsageError(f"--device-memory-gb must be a positive number, got {device_memory_gb}")
        return int(device_memory_gb * 1e9)
    limits = []
    for device in devices if devices is not None else jax.local_devices():
        try:
            stats = device.memory_stats()
        except Exception:  # some backends raise instead of returning None
            stats = None
        if stats and stats.get("bytes_limit"):
            limits.append(int(stats["bytes_limit"]))
    return min(limits) if limits else None


def largest_fraction(available: int, update_bytes: int, steps_per_run: int) -> float:
    """The largest data fraction (two significant digits, rounded down) whose device store and update fit
    in `available` bytes; 0 when none does."""
    room = available - update_bytes
    if room <= 0:
        return 0.0
    fraction = min(room / store_bytes(steps_per_run), 1.0)
    if fraction >= 1.0:
        return 1.0
    digits = 1 - int(math.floor(math.log10(fraction)))
    return math.floor(fraction * 10**digits) / 10**digits


def _gb(num_bytes: int) -> str:
    return f"{num_bytes / 1e9:.3g} GB"


class StoreChoice(NamedTuple):
    store: str  # "device" or "stream"
    device_bytes: int  # what the device store and its update need
    stream_bytes: int  # what the stream ring (of capacity_steps), its staged chunks and the update need
    available: int | None  # bytes one device may use (None: not reported)
    reason: str  # one line for the log
    capacity_steps: int  # the stream's ring: the requested one, or fewer steps under 'auto' (shrunk_ring)


MIN_RING_STEPS = 1024  # the smallest ring 'auto' shrinks to: refills of 256 steps


def shrunk_ring(capacity_steps: int, update_bytes: int, available: int) -> tuple[int, bool]:
    """(ring steps, whether it fits): the ring of `capacity_steps` halved until its data (ring, a quarter-ring
    refill staged twice) and the update fit in `available` bytes, not below MIN_RING_STEPS. Episodes longer
    than a quarter of the ring cannot be streamed into it (the run stops with a one-line error)."""
    capacity = int(capacity_steps)
    fits = lambda c: ring_device_bytes(c) + update_bytes <= available  # noqa: E731
    while not fits(capacity) and capacity // 2 >= MIN_RING_STEPS:
        capacity //= 2
    return capacity, fits(capacity)


def choose_store(
    requested: str,
    *,
    data_steps: int,
    data_fraction: float,
    update_bytes: int,
    available: int | None,
    capacity_steps: int = DEFAULT_CAPACITY_STEPS,
    refill_steps: int = DEFAULT_REFILL_STEPS,
) -> StoreChoice:
    """'device', 'stream' or a one-line UsageError, for `--store {auto,device,stream}`.

    `data_steps`: steps of the data at `data_fraction` (read, or `estimated_steps`); `update_bytes`: the
    update's own memory (`update_memory`); `available`: `device_memory_bytes`. auto takes the device store
    when it fits (every transition resident: uniform sampling), else the stream path. An unknown device
    memory (None) fits everything."""
    if requested not in ("auto", "device", "stream"):
        raise UsageError(f"--store must be auto, device or stream, got {requested!r}")
    need_device = store_bytes(data_steps) + update_bytes
    need_stream = stream_device_bytes(capacity_steps, refill_steps) + update_bytes
    if available is None:
        store = "device" if requested == "auto" else requested
        reason = f"{store} store (the devices report no memory limit)"
        return StoreChoice(store, need_device, need_stream, None, reason, capacity_steps)
    device_fits, stream_fits = need_device <= available, need_stream <= available
    if requested in ("auto", "device") and device_fits:
        reason = f"device store: {_gb(need_device)} of {_gb(available)} per device"
        return StoreChoice("device", need_device, need_stream, available, reason, capacity_steps)
    if requested == "auto" and not stream_fits:  # auto always trains: on a smaller ring, or the smallest one
        ring, ring_fits = shrunk_ring(capacity_steps, update_bytes, available)
        need_ring = ring_device_bytes(ring) + update_bytes
        if ring_fits:
            how = f"{_gb(need_ring)} of {_gb(available)} per device"
        else:
            how = (
                f"about {_gb(need_ring)} per device, more than the {_gb(available)} a device has (update {_gb(update_bytes)})"
            )
        reason = (
            f"stream store on a ring of {ring} steps, not {capacity_steps} ({how}; the device store would need "
            f"{_gb(need_device)}); episodes longer than {ring_settings(ring)['refill_steps']} steps cannot be streamed into it"
        )
        return StoreChoice("stream", need_device, need_ring, available, reason, ring)
    if requested == "stream" or (requested == "auto" and stream_fits):
        if not stream_fits:
            raise UsageError(
                f"--store stream needs about {_gb(need_stream)} per device (ring of {capacity_steps} steps "
                f"{_gb(stream_device_bytes(capacity_steps, refill_steps))} + update {_gb(update_bytes)}) but a device has "
                f"{_gb(available)}; lower --stream-capacity-steps or the batch size, or use a device with more memory"
            )
        why = "" if requested == "stream" else f" (the device store would need {_gb(need_device)})"
        reason = f"stream store: {_gb(need_stream)} of {_gb(available)} per device{why}"
        return StoreChoice("stream", need_device, need_stream, available, reason, capacity_steps)
    fraction = largest_fraction(available, update_bytes, int(round(data_steps / data_fraction)))
    fits = f"use --data-fraction {fraction:g} or less" if fraction > 0 else "no data fraction fits beside the update"
    stream = "or --store stream" if stream_fits else "or --store auto (it streams on a smaller ring)"
    raise UsageError(
        f"--store device needs about {_gb(need_device)} per device for --data-fraction {data_fraction:g} "
        f"(store {_gb(store_bytes(data_steps))} + update {_gb(update_bytes)}) but a device has {_gb(available)}; "
        f"{fits}, {stream}"
    )


def store_shapes(num_steps: int, frame_stack: int = 4) -> Store:
    """A Store of ShapeDtypeStructs (nothing allocated): what `update.lower(state, store)` needs."""
    step = lambda dtype: jax.ShapeDtypeStruct((num_steps,), dtype)  # noqa: E731
    return Store(
        observation=jax.ShapeDtypeStruct((num_steps, *FRAME_SHAPE), jnp.uint8),
        action=step(jnp.int32),
        reward=step(jnp.float32),
        discount=step(jnp.float32),
        is_terminal=step(jnp.bool_),
        episode_end=step(jnp.int32),
        starts=step(jnp.int32),
        episode_start=step(jnp.int32),
        frame_offsets=jax.ShapeDtypeStruct((frame_stack,), jnp.int32),
        num_starts=jax.ShapeDtypeStruct((), jnp.int32),
    )


def check_store(
    requested: str,
    train_chunk,
    state,
    game: str,
    data_fraction: float,
    *,
    device_memory_gb: float | None = None,
    data_steps: int | None = None,
    capacity_steps: int = DEFAULT_CAPACITY_STEPS,
    refill_steps: int = DEFAULT_REFILL_STEPS,
) -> StoreChoice:
    """`choose_store` for a script before it reads data: the update's memory from XLA's analysis of
    `train_chunk` (the jitted update) lowered on a ring-shaped store, the data's steps from `data_steps` or
    `estimated_steps`, the device memory from `device_memory_gb` or the devices. Costs one compile of the update,
    none where the devices report no memory limit and `device_memory_gb` is None (the requested store, 'auto'
    taking the device store)."""
    available = device_memory_bytes(device_memory_gb)
    steps = data_steps if data_steps is not None else estimated_steps(game, data_fraction)
    plan = dict(data_steps=steps, data_fraction=data_fraction, capacity_steps=capacity_steps, refill_steps=refill_steps)
    if available is None:  # nothing to compare with: no compile
        return choose_store(requested, update_bytes=0, available=None, **plan)
    if requested == "device" and store_bytes(steps) > available:  # the store alone does not fit: no compile either
        fraction = largest_fraction(available, 0, int(round(steps / data_fraction)))
        raise UsageError(
            f"--store device needs more than {_gb(store_bytes(steps))} per device for --data-fraction {data_fraction:g} "
            f"(the store alone, about {steps:,} steps) but a device has {_gb(available)}; use --data-fraction {fraction:g} "
            "or less (less still beside the update's own memory), or --store auto (it streams when the data do not fit)"
        )
    ring = store_shapes(capacity_steps)
    memory = update_memory(train_chunk.lower(state, ring).compile(), state, ring)
    choice = choose_store(requested, update_bytes=memory.bytes, available=available, **plan)
    return choice._replace(reason=f"{choice.reason}; update memory from {memory.source}")


def host_memory_bound(pool_steps: int, refill_steps: int, workers: int, raw_buffer_bytes: int) -> int:
    """Host bytes the stream path holds at most: the decoded pool, one episode (at most `refill_steps` steps)
    being decoded by each worker, two chunks of frames (staged and being made) and the raw (PNG) buffer."""
    decoded = store_bytes(pool_steps + workers * refill_steps)
    return decoded + 2 * refill_steps * FRAME_BYTES + int(raw_buffer_bytes)
