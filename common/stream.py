"""Streaming Atari data: a bounded device store refilled from the shards while the learner trains,
and the memory check that chooses between it and the whole-data device store.

The device path (common/data.py) decodes the kept data once and holds it whole on every device:
frames once, [N, 84, 84] uint8, about 7 KB per step, so 3.5 GB at 1% of a run and 353 GB for a
whole run. The stream path holds a fixed number of steps on the device whatever the data
fraction, so the update and its memory do not change with `--data-fraction`:

  shards --(1 reader thread: this host's shards, a new shuffled order every pass)--> raw episodes
    --(`workers` decoding threads: PNG -> uint8, episodes drawn at random from the raw buffer)-->
    decoded episodes (host pool, at most `pool_steps` steps)
    --(stager thread: packs up to `refill_steps` steps, puts them on the devices)--> staged chunk
    --(`next_store()`: written in place into the ring)--> device Store of `capacity_steps` steps

The device Store is the same `Store` class as the device path's (common/replay.py), with the same
array shapes at every call (the ring's size), so `sample_windows` and every script's update
compile once and run unchanged. The ring keeps whole episodes in consecutive rows: a chunk is
written at the ring's head (back to row 0 when it would pass the end), every episode with a row
in the written range is dropped whole (the oldest ones: first in, first out), and `starts`
lists the live rows that begin a transition, padded to the ring's size; `num_starts` counts the
real ones, so padding and dead rows are never sampled, and a window never leaves its episode.
Only the new frames travel to the devices (a chunk of the next power of two of rows, at least
1024, so the in-place write compiles a handful of times at most); the per-step arrays (25 bytes
a step) are sent whole each time.

Defaults, after the official release's pipeline (shuffles 1000 episodes, then about 50k steps of
windows): the raw buffer draws from at least `shuffle_episodes` = 1000 episodes, or from every kept
episode when one pass holds fewer (with 1% of a run that is every kept episode of every shard; with
100% it spans the last two or three checkpoints), the pool holds `pool_steps` = 65,536 decoded
steps (about 460 MB), and the device ring holds `capacity_steps` = 131,072 steps (about 0.93 GB)
refilled by chunks of at most `refill_steps` = 32,768 steps (more than the longest episode,
27,001 steps at the 27k cap). At least `capacity_steps - refill_steps` steps are live once the
ring is warm. `ring_settings` derives the refill and the pool from a ring's size in the same
proportions (a quarter, a half), as `--stream-capacity-steps` does.

How the sampling differs from uniform sampling over all transitions. Within one dispatch,
windows start uniformly at the live transitions of the ring, as on the device path. Over a run,
a transition can only be drawn while its episode is resident, and an episode stays resident
until about `capacity_steps` newer steps have been written after it. With a steady refill rate
of r steps/s and a learner drawing w windows/s, each resident transition is drawn about
w / r times over its stay, the same for every transition; uniform sampling over N transitions
for T seconds draws each about w * T / N times. The two agree in expectation when the stream
passes over the data once per run (r = N / T); a faster refill spreads the same updates over
more passes with fewer draws per pass, a slower one sees part of the data only. Other
differences: the order is random but not exchangeable (episodes of the checkpoints read at
the same time are resident together), the episodes of a pass are read in a random order, and
with threads the exact content of each store depends on timing, so a stream run is not
bit-reproducible (the device path is). docs/atari.md gives a measurement on a recorded fixture.

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

The scripts reach all of this through common/data.py's `open_feed` (`--store`, `--device-memory-gb`,
`--stream-capacity-steps`, whose refill and pool follow `ring_settings`). This module holds no
loss or network code.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from common import atari_data
from common.episodes import Episodes
from common.errors import DataError, UsageError
from common.replay import Store
from common.sharding import PROCESS_AXIS, replicate

FRAME_SHAPE = atari_data.FRAME_SHAPE  # (84, 84)
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
    return int(math.ceil(data_fraction * (num_shards or atari_data.num_checkpoints(game)) * STEPS_PER_SHARD))


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


# ----------------------------------------------------------------------------------------------
# Shards and episodes
# ----------------------------------------------------------------------------------------------


def shard_locations(
    game: str, run: int, data_dir: str | os.PathLike | None, num_shards: int | None = None, process: tuple = (0, 1)
) -> list[str]:
    """This process's shards, as `atari_data.load_atari` selects them: shards p, p + P, ... of `process` =
    (p, P); the count is `num_shards`, else the one found in a local directory, else the public one. A missing
    local shard (or a --data-dir that is a file) is a one-line DataError."""
    atari_data.check_game(game)
    atari_data.check_run(run)
    location = atari_data.resolve_data_dir(data_dir)
    remote = atari_data.is_remote(location)
    if not remote:
        atari_data.check_data_dir(location)  # a file or a link loop: the device path's one-line error
    count, locations = atari_data.select_shards(game, run, location, num_shards, process)
    missing = [x for x in locations if not remote and not os.path.isfile(x)]
    if missing:
        raise DataError(
            f"{missing[0]} is missing ({len(locations) - len(missing)} of {len(locations)} shards of {game} "
            f"run {run} found); download the run with: {atari_data.fetch_command(game, run, location)}"
        )
    return locations


def decode_episode(location: str, raw: atari_data.RawEpisode) -> Episodes | None:
    """One stored episode -> Episodes of its T steps (frames [T, 84, 84] uint8), or None for a single step
    (no transition; the device path drops those too). DataError naming the shard for a bad PNG."""
    if len(raw.action) < 2:
        return None
    frames = np.empty((len(raw.pngs), *FRAME_SHAPE), np.uint8)  # [T, 84, 84]
    for t, png in enumerate(raw.pngs):
        frame = atari_data.decode_frame(png)
        if frame is None:
            raise DataError(
                f"{location} is corrupt (episode {raw.episode_idx}, step {t}: not an 84x84 grayscale PNG); "
                "download the shard again"
            )
        frames[t] = frame
    steps = atari_data.episode_steps(raw)
    return Episodes(observation=frames, **steps)


# ----------------------------------------------------------------------------------------------
# The ring: whole episodes in a fixed number of rows, written in place on the devices
# ----------------------------------------------------------------------------------------------


def chunk_rows(num_steps: int, refill_steps: int) -> int:
    """Rows of the chunk that carries `num_steps` new steps: the next power of two, at least 1024, at most
    refill_steps (so the in-place write compiles for a handful of shapes)."""
    rows = MIN_CHUNK_ROWS
    while rows < num_steps:
        rows *= 2
    return min(rows, refill_steps)


class RingMeta:
    """Host bookkeeping of the ring's rows: the per-step arrays of the Store and which rows are live."""

    def __init__(self, capacity: int):
        self.capacity, self.head = capacity, 0
        rows = np.arange(capacity, dtype=np.int32)
        self.action = np.zeros(capacity, np.int32)
        self.reward = np.zeros(capacity, np.float32)
        self.discount = np.ones(capacity, np.float32)
        self.is_terminal = np.zeros(capacity, bool)
        self.episode_start, self.episode_end = rows.copy(), rows.copy()  # a dead row is its own episode
        self.live = np.zeros(capacity, bool)

    def _kill(self, first: int, stop: int) -> None:
        """Drop every episode with a row in [first, stop), whole."""
        if stop <= first:
            return
        hit = self.live[first:stop]
        if hit.any():
            first, stop = (
                min(first, int(self.episode_start[first:stop][hit].min())),
                max(stop, int(self.episode_end[first:stop][hit].max()) + 1),
            )
        rows = np.arange(first, stop, dtype=np.int32)
        self.live[first:stop] = False
        self.episode_start[first:stop], self.episode_end[first:stop] = rows, rows

    def admit(self, lengths: Sequence[int]) -> int:
        """Make room for episodes of `lengths` steps written consecutively; returns their first row. They go
        at the head, or at row 0 when they would pass the ring's end (the tail is then left dead); the
        episodes they overwrite (the oldest) are dropped whole."""
        steps = int(sum(lengths))
        if steps > self.capacity:
            raise ValueError(f"{steps} steps do not fit a ring of {self.capacity}")
        if self.head + steps > self.capacity:
            self._kill(self.head, self.capacity)
            self.head = 0
        first = self.head
        self._kill(first, first + steps)
        self.head = first + steps
        return first

    def write(self, first: int, episodes: Sequence[Episodes]) -> None:
        """Record episodes written consecutively from row `first` (after `admit`)."""
        row = first
        for ep in episodes:
            n = ep.num_steps
            for name in ("action", "reward", "discount", "is_terminal"):
                getattr(self, name)[row : row + n] = getattr(ep, name)
            self.episode_start[row : row + n], self.episode_end[row : row + n] = row, row + n - 1
            self.live[row : row + n] = True
            row += n

    @property
    def live_steps(self) -> int:
        return int(self.live.sum())

    def step_arrays(self) -> dict:
        """The Store's per-step arrays and starts (live rows that begin a transition, padded to the ring's size)."""
        starts = np.flatnonzero(self.live & (np.arange(self.capacity) < self.episode_end)).astype(np.int32)
        padded = np.zeros(self.capacity, np.int32)
        padded[: len(starts)] = starts
        return {
            "action": self.action.copy(),
            "reward": self.reward.copy(),
            "discount": self.discount.copy(),
            "is_terminal": self.is_terminal.copy(),
            "episode_end": self.episode_end.copy(),
            "episode_start": self.episode_start.copy(),
            "starts": padded,
            "num_starts": np.asarray(len(starts), np.int32),
        }


def _write_rows(observation: jax.Array, rows: jax.Array, first: jax.Array, count: jax.Array) -> jax.Array:
    """observation [C, 84, 84] with rows[:count] ([R, 84, 84]) written from row `first` (in place when donated)."""
    index = jnp.arange(rows.shape[0])  # [R]
    target = jnp.where(index < count, first + index, observation.shape[0])  # rows past `count`: dropped
    return observation.at[target].set(rows, mode="drop")


class _Placement:
    """Puts ring arrays on the devices: replicated with one process; with P processes this process's part of
    a global [P, ...] array (as common/sharding.py place_store does), written by a vmapped update."""

    def __init__(self, mesh):
        self.mesh = mesh
        self.parts = 1 if mesh is None else mesh.shape[PROCESS_AXIS]
        write = _write_rows if self.parts == 1 else jax.vmap(_write_rows)
        self.write = jax.jit(write, donate_argnums=0)

    def put(self, x: np.ndarray):
        """This process's array on the devices (with P processes: part p of a global [P, ...] array)."""
        if self.mesh is None:
            return jax.device_put(x)
        if self.parts == 1:
            return replicate(x, self.mesh)
        sharding = NamedSharding(self.mesh, PartitionSpec(PROCESS_AXIS))
        return jax.make_array_from_process_local_data(sharding, np.asarray(x)[None], (self.parts, *np.shape(x)))

    def zeros(self, shape: tuple, dtype) -> jax.Array:
        """Zeros made on the devices (no host copy), laid out as `put` lays out this process's array."""
        if self.mesh is None:
            return jnp.zeros(shape, dtype)
        if self.parts == 1:
            sharding, shape = NamedSharding(self.mesh, PartitionSpec()), shape
        else:
            sharding, shape = NamedSharding(self.mesh, PartitionSpec(PROCESS_AXIS)), (self.parts, *shape)
        return jax.jit(lambda: jnp.zeros(shape, dtype), out_shardings=sharding)()

    def all_processes(self, value: bool) -> bool:
        """Whether `value` holds in every process (a collective with several processes)."""
        if self.parts == 1:
            return value
        from jax.experimental import multihost_utils

        return bool(np.all(multihost_utils.process_allgather(np.asarray(value))))


class Chunk(NamedTuple):
    """New episodes whose frames are already on the devices, in consecutive rows from row 0 of `rows`."""

    episodes: list  # [Episodes] whole episodes in row order (their observation fields may be emptied)
    rows: jax.Array  # [R, 84, 84] uint8 (or [P, R, 84, 84]): the frames, then anything
    steps: int  # rows that hold frames


class Ring:
    """The device Store of a fixed number of steps, written in place by chunks of whole episodes.

    ring = Ring(capacity, frame_stack=4, mesh=mesh); ring.write(ring.chunk(episodes)); store = ring.store()
    """

    def __init__(self, capacity: int, frame_stack: int = 4, mesh=None, refill: int | None = None):
        self.capacity, self.frame_stack = capacity, frame_stack
        self.refill = refill or capacity
        self.meta = RingMeta(capacity)
        self.placement = _Placement(mesh)
        self.observation = self.placement.zeros((capacity, *FRAME_SHAPE), np.uint8)  # [C, 84, 84]
        self.steps_written = 0

    def chunk(self, episodes: Sequence[Episodes]) -> Chunk:
        """Pack the episodes' frames into a new host buffer and put them on the devices. The buffer is never
        reused: on a CPU, device_put may keep the host memory as the device array."""
        steps = sum(e.num_steps for e in episodes)
        if steps > self.refill:
            raise ValueError(f"{steps} steps exceed the refill of {self.refill}")
        rows = self.refill if self.placement.parts > 1 else chunk_rows(steps, self.refill)  # one shape for all processes
        buffer = np.zeros((rows, *FRAME_SHAPE), np.uint8)  # [R, 84, 84]
        row = 0
        for episode in episodes:
            buffer[row : row + episode.num_steps] = episode.observation
            row += episode.num_steps
        on_devices = jax.block_until_ready(self.placement.put(buffer))
        return Chunk([e._replace(observation=e.observation[:0]) for e in episodes], on_devices, steps)

    def write(self, chunk: Chunk | None) -> None:
        """Write a chunk at the head (the oldest episodes make room). None writes nothing; with several
        processes every process must call this once per step (a collective), with or without a chunk."""
        if chunk is None:
            if self.placement.parts == 1:
                return
            rows, first, steps = self.placement.zeros((self.refill, *FRAME_SHAPE), np.uint8), 0, 0
        else:
            first = self.meta.admit([e.num_steps for e in chunk.episodes])
            self.meta.write(first, chunk.episodes)
            rows, steps = chunk.rows, chunk.steps
        first, count = (self.placement.put(np.asarray(v, np.int32)) for v in (first, steps))
        self.observation = self.placement.write(self.observation, rows, first, count)
        self.steps_written += steps

    def store(self) -> Store:
        """The ring as a Store (same shapes every time; its frames are donated by the next `write`)."""
        arrays = {name: self.placement.put(x) for name, x in self.meta.step_arrays().items()}
        offsets = self.placement.put(np.arange(1 - self.frame_stack, 1, dtype=np.int32))
        return Store(observation=self.observation, frame_offsets=offsets, **arrays)

    def live_episodes(self) -> int:
        """Episodes resident now."""
        return int(np.sum(self.meta.live & (np.arange(self.capacity) == self.meta.episode_start)))


# ----------------------------------------------------------------------------------------------
# The stream
# ----------------------------------------------------------------------------------------------


class StreamingStore:
    """Episodes of this process's shards streamed into a device Store of `capacity_steps` steps.

    stream = StreamingStore(shard_locations(game, run, data_dir, process=(p, P)), game, data_fraction)
    store = stream.next_store()   # before each dispatch (blocks only until the ring is warm)
    stream.close()

    `read_episodes(location) -> list[(location, RawEpisode)]` reads one shard (default: atari_data.read_shard
    with the data-fraction rule of the device path). Errors of the background threads (a corrupt shard)
    are raised by the next `next_store()` call. Each call returns a new Store of the same shapes and
    donates the previous one's frames: use only the latest Store.
    """

    def __init__(
        self,
        locations: Sequence[str],
        game: str,
        data_fraction: float = 1.0,
        *,
        capacity_steps: int = DEFAULT_CAPACITY_STEPS,
        refill_steps: int = DEFAULT_REFILL_STEPS,
        pool_steps: int = DEFAULT_POOL_STEPS,
        shuffle_episodes: int = DEFAULT_SHUFFLE_EPISODES,
        workers: int = DEFAULT_WORKERS,
        frame_stack: int = 4,
        seed: int = 0,
        mesh=None,
        warm_steps: int | None = None,
        read_episodes: Callable | None = None,
    ):
        if not locations:
            raise DataError("no shards to stream")
        if not (1 <= refill_steps <= capacity_steps // 2):
            raise UsageError(
                f"the refill ({refill_steps} steps) must lie in [1, capacity / 2 = {capacity_steps // 2}]; "
                "raise the ring's capacity or lower the refill"
            )
        if pool_steps < 1 or shuffle_episodes < 1 or workers < 1:
            raise UsageError("the pool, the shuffle buffer and the workers must each be at least 1")
        self.locations, self.game, self.data_fraction = list(locations), game, data_fraction
        self.capacity, self.refill, self.pool_steps = capacity_steps, refill_steps, pool_steps
        self.shuffle_episodes, self.workers, self.frame_stack = shuffle_episodes, workers, frame_stack
        self.warm_steps = capacity_steps - refill_steps if warm_steps is None else min(warm_steps, capacity_steps)
        self._seeds = iter(np.random.SeedSequence(seed).spawn(workers + 1))  # one per thread (next() holds the GIL)
        self.read_episodes = read_episodes or self._read_shard
        self.ring = Ring(capacity_steps, frame_stack, mesh, refill_steps)
        self._warm = False
        self.stats = {"episodes_read": 0, "steps_decoded": 0, "passes": 0, "raw_bytes_max": 0}

        self._stop = threading.Event()
        self._errors: queue.Queue = queue.Queue()
        self._lock = threading.Condition()
        self._raw: list = []  # [(location, RawEpisode)] waiting to be decoded (the episode shuffle buffer)
        self._raw_bytes = 0
        self._pool: list = []  # [Episodes] decoded, oldest first
        self._pool_steps = 0
        self._staged: queue.Queue = queue.Queue(maxsize=1)  # one chunk on the devices, ready to write
        self._threads = [
            threading.Thread(target=self._guard(self._reader), name="stream-reader", daemon=True),
            threading.Thread(target=self._guard(self._stager), name="stream-stager", daemon=True),
        ]
        self._threads += [
            threading.Thread(target=self._guard(self._decoder), name=f"stream-decoder-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # -- background threads -------------------------------------------------------------------

    def _guard(self, body: Callable) -> Callable:
        def run():
            try:
                body()
            except BaseException as error:  # raised again by next_store in the main thread
                self._errors.put(error)
                self._stop.set()
                with self._lock:
                    self._lock.notify_all()

        return run

    def _read_shard(self, location: str) -> list:
        shard = atari_data.read_shard(location, self.data_fraction, self.game, should_stop=self._stop.is_set)
        return [(location, raw) for raw in shard.episodes]

    def _reader(self) -> None:
        """Every pass reads this process's shards in a new random order; the raw buffer is topped up to
        `shuffle_episodes` episodes (after the first pass: to at most one pass's episodes, so small data are
        not read again and again only to fill it), a whole shard at a time."""
        rng = np.random.default_rng(next(self._seeds))
        self._raw_limit, per_pass = self.shuffle_episodes, None
        while not self._stop.is_set():
            usable = 0
            for index in rng.permutation(len(self.locations)):
                with self._lock:
                    self._lock.wait_for(lambda: self._stop.is_set() or len(self._raw) < self._raw_limit)
                if self._stop.is_set():
                    return
                episodes = self.read_episodes(self.locations[index])
                usable += sum(len(raw.action) >= 2 for _, raw in episodes)
                size = sum(sum(len(p) for p in raw.pngs) for _, raw in episodes)
                with self._lock:
                    self._raw.extend((loc, raw, sum(len(p) for p in raw.pngs)) for loc, raw in episodes)
                    self._raw_bytes += size
                    self.stats["episodes_read"] += len(episodes)
                    self.stats["raw_bytes_max"] = max(self.stats["raw_bytes_max"], self._raw_bytes)
                    self._lock.notify_all()
            self.stats["passes"] += 1
            if per_pass is None:
                if usable == 0:
                    raise DataError(
                        f"{self.game}: the kept {self.data_fraction:g} of the {len(self.locations)} shards streamed here "
                        "holds no episode with a transition; use a larger --data-fraction"
                    )
                per_pass = usable
                self._raw_limit = min(self.shuffle_episodes, per_pass)

    def _decoder(self) -> None:
        """Takes a random raw episode, decodes it, and appends it to the pool (waiting while the pool is full)."""
        rng = np.random.default_rng(next(self._seeds))
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._stop.is_set() or self._raw)
                if self._stop.is_set():
                    return
                location, raw, size = self._raw.pop(int(rng.integers(len(self._raw))))
                self._raw_bytes -= size
                self._lock.notify_all()
            episode = decode_episode(location, raw)
            if episode is None:
                continue
            if episode.num_steps > self.refill:
                raise DataError(
                    f"{location}: episode {raw.episode_idx} has {episode.num_steps} steps, more than the "
                    f"refill of {self.refill}; raise the ring's capacity (--stream-capacity-steps: the refill is a quarter)"
                )
            with self._lock:
                self._lock.wait_for(lambda: self._stop.is_set() or self._pool_steps < self.pool_steps)
                if self._stop.is_set():
                    return
                self._pool.append(episode)
                self._pool_steps += episode.num_steps
                self.stats["steps_decoded"] += episode.num_steps
                self._lock.notify_all()

    def _stager(self) -> None:
        """Packs the oldest pooled episodes (up to the refill) into one chunk of frames and puts it on the
        devices (one chunk waits in the queue while the next is made: double buffering)."""
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._stop.is_set() or self._pool)
                if self._stop.is_set():
                    return
                taken, steps = [], 0
                while self._pool and steps + self._pool[0].num_steps <= self.refill:
                    episode = self._pool.pop(0)
                    taken.append(episode)
                    steps += episode.num_steps
                self._pool_steps -= steps
                self._lock.notify_all()
            chunk = self.ring.chunk(taken)
            while not self._stop.is_set():
                try:
                    self._staged.put(chunk, timeout=0.1)
                    break
                except queue.Full:
                    continue

    # -- the main thread's interface ---------------------------------------------------------------

    def _raise_errors(self) -> None:
        if not self._errors.empty():
            error = self._errors.get()
            self.close()
            raise error

    def _take(self, block: bool) -> Chunk | None:
        while True:
            self._raise_errors()
            try:
                return self._staged.get(timeout=0.1) if block else self._staged.get_nowait()
            except queue.Empty:
                if not block:
                    return None

    def next_store(self) -> Store:
        """The Store for the next dispatch: the current ring with at most one staged chunk written in. The
        first call blocks until `warm_steps` steps are live (in every process); later ones never wait."""
        ring = self.ring
        if not self._warm:
            while not ring.placement.all_processes(ring.meta.live_steps >= self.warm_steps):
                ring.write(self._take(block=ring.meta.live_steps < self.warm_steps))
            self._warm = True
        else:
            ring.write(self._take(block=False))
        return ring.store()

    def live_episodes(self) -> int:
        """Episodes resident in the device store now."""
        return self.ring.live_episodes()

    def host_bytes(self) -> dict:
        """Host memory now: raw (PNG) buffer, decoded pool, and the bound for these settings."""
        with self._lock:
            raw, pool = self._raw_bytes, store_bytes(self._pool_steps)
        return {
            "raw_buffer": raw,
            "pool": pool,
            "chunks": 2 * self.refill * FRAME_BYTES,
            "bound": host_memory_bound(self.pool_steps, self.refill, self.workers, self.stats["raw_bytes_max"]),
        }

    def close(self) -> None:
        """Stop and join the background threads (the reader stops at its shard's next block)."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=30)

    def __enter__(self) -> "StreamingStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def wait_for(condition: Callable[[], bool], timeout_s: float, poll_s: float = 0.01) -> bool:
    """Poll `condition` until it holds or `timeout_s` passes; whether it held."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True
