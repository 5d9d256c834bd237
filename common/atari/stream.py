"""Streaming Atari data: a bounded device store refilled from the shards while the learner trains,
written in place on the devices.

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

Which store a run uses, and the memory each needs: common/atari/memory.py.

The scripts reach all of this through common/data.py's `open_feed` (`--store`, `--device-memory-gb`,
`--stream-capacity-steps`, whose refill and pool follow `ring_settings`). This module holds no
loss or network code.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from common.atari import games, loader, shards
from common.atari.memory import (
    DEFAULT_CAPACITY_STEPS,
    DEFAULT_POOL_STEPS,
    DEFAULT_REFILL_STEPS,
    DEFAULT_SHUFFLE_EPISODES,
    DEFAULT_WORKERS,
    FRAME_BYTES,
    FRAME_SHAPE,
    MIN_CHUNK_ROWS,
    host_memory_bound,
    store_bytes,
)
from common.episodes import Episodes
from common.errors import DataError, UsageError
from common.replay import Store
from common.sharding import PROCESS_AXIS, replicate

# ----------------------------------------------------------------------------------------------
# Shards and episodes
# ----------------------------------------------------------------------------------------------


def shard_locations(
    game: str, run: int, data_dir: str | os.PathLike | None, num_shards: int | None = None, process: tuple = (0, 1)
) -> list[str]:
    """This process's shards, as `loader.load_atari` selects them: shards p, p + P, ... of `process` =
    (p, P); the count is `num_shards`, else the one found in a local directory, else the public one. A missing
    local shard (or a --data-dir that is a file) is a one-line DataError."""
    games.check_game(game)
    games.check_run(run)
    location = games.resolve_data_dir(data_dir)
    remote = games.is_remote(location)
    if not remote:
        loader.check_data_dir(location)  # a file or a link loop: the device path's one-line error
    count, locations = loader.select_shards(game, run, location, num_shards, process)
    missing = [x for x in locations if not remote and not os.path.isfile(x)]
    if missing:
        raise DataError(
            f"{missing[0]} is missing ({len(locations) - len(missing)} of {len(locations)} shards of {game} "
            f"run {run} found); download the run with: {games.fetch_command(game, run, location)}"
        )
    return locations


def decode_episode(location: str, raw: shards.RawEpisode) -> Episodes | None:
    """One stored episode -> Episodes of its T steps (frames [T, 84, 84] uint8), or None for a single step
    (no transition; the device path drops those too). DataError naming the shard for a bad PNG."""
    if len(raw.action) < 2:
        return None
    frames = np.empty((len(raw.pngs), *FRAME_SHAPE), np.uint8)  # [T, 84, 84]
    for t, png in enumerate(raw.pngs):
        frame = shards.decode_frame(png)
        if frame is None:
            raise DataError(
                f"{location} is corrupt (episode {raw.episode_idx}, step {t}: not an 84x84 grayscale PNG); "
                "download the shard again"
            )
        frames[t] = frame
    steps = shards.episode_steps(raw)
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

    `read_episodes(location) -> list[(location, RawEpisode)]` reads one shard (default: shards.read_shard
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
        shard = shards.read_shard(location, self.data_fraction, self.game, should_stop=self._stop.is_set)
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
