"""One entry point from command-line data flags to the Store each update samples from.

`check_env_id` tells BSuite tasks from RL Unplugged Atari games (and rejects anything else with
the list of both). `load_offline_data` reads (or, for BSuite, generates on first use) a BSuite
dataset whole, checks its observations, actions and the batch size, and returns its store
(common/replay.py, in host memory), the environment's action count, the shape and dtype of one
observation as the networks see it, and a small dict describing the data for results.json. For an
Atari game it decodes nothing: it checks the request (game, run, local shards, or that the first
remote shard answers) and returns the same shapes and where the data are, because how they are held
depends on the device memory and on the compiled update.

`open_feed(data, state, train_chunk, store, device_memory_gb, capacity_steps)` then chooses the
store (`--store {auto,device,stream}`) before the run restores its state:

- the device store: the whole kept data decoded once (Atari: common/atari/loader.py and its cache;
  frames stored single, stacked by 4 when windows are sampled) and held whole on every device, the
  same Store at every dispatch (uniform sampling over all transitions; BSuite always);
- the stream (Atari): a fixed-size ring on every device refilled from the shards by background
  threads (common/atari/stream.py), a new Store of the same shapes at every dispatch.

`auto` takes the device store when it fits beside the update in one device's memory
(`common.atari.stream.check_store`: XLA's memory analysis of the update compiled on a ring-shaped store),
else the stream; a `device` store that does not fit is a one-line UsageError naming the largest
data fraction that does. Where the devices report no memory limit (a CPU) and `--device-memory-gb`
is not given, the device store is taken without compiling anything. The returned `Feed` places
the (restored) state on every device (`place`), gives each dispatch its Store (`next_store`) and
stops the stream's threads (`close`); the store chosen is added to `data.info`. Only one copy of a
store is made on each device (the host copy is placed once). This module holds no sampling or
learning code.
"""

import math
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional, Tuple

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from common.atari import cache, games, loader, memory, stream
from common.atari import env as atari_env
from common.atari.http_source import object_version
from common.bsuite import datasets as bsuite_data
from common.bsuite.env import BSUITE_ENVS, make_env
from common.episodes import process_part
from common.errors import DataError, UsageError
from common.replay import Store, check_batch_size, make_store, place_store
from common.sharding import PROCESS_AXIS, check_batch_divisible, data_mesh, replicate

ATARI_FRAME_STACK = 4


class AtariSource(NamedTuple):
    """Where an Atari game's data are and how much of them to keep (nothing read yet)."""

    game: str
    run: int  # RL Unplugged run, 1..5
    data_dir: Optional[str]  # local directory, gs:// or http(s):// URL; None: $ROSMO_ATARI_DATA_DIR or the bucket
    data_fraction: float
    process: Tuple[int, int]  # (p, P): this process reads shards p, p + P, ...
    cached_steps: Optional[int]  # steps of a matching decoded cache (its manifest), else None


class OfflineData(NamedTuple):
    store: Optional[Store]  # BSuite: the whole data (host memory); Atari: None until `open_feed` decodes or streams it
    num_actions: int
    obs_shape: Tuple[int, ...]  # one observation as the network sees it: (D,) on BSuite, (84, 84, 4) on Atari
    obs_dtype: Any  # float32 on BSuite, uint8 on Atari
    info: Dict[str, Any]  # path, data_fraction, and (once read) episodes, transitions, mean_return, ...
    batch_size: int = 1  # windows per update (checked against the data and the devices)
    atari: Optional[AtariSource] = None  # Atari: what `open_feed` reads


def is_atari(env_id: str) -> bool:
    return env_id in games.GAMES


def check_env_id(env_id: str) -> None:
    """A one-line UsageError unless `env_id` is a BSuite task or an RL Unplugged Atari game."""
    if env_id in BSUITE_ENVS or is_atari(env_id):
        return
    raise UsageError(
        f"unknown --env-id '{env_id}'; valid ids: {', '.join(BSUITE_ENVS)} (BSuite) "
        f"or an RL Unplugged Atari game: {', '.join(games.GAMES)}"
    )


def host_store(episodes, frame_stack: int = 1) -> Store:
    """`make_store` in host memory (JAX's CPU device when there is one), so that placing it on the
    accelerators later makes the only device copy."""

    try:
        cpu = jax.local_devices(backend="cpu")[0]  # this process's own: under jax.distributed devices() is global
    except RuntimeError:  # no CPU backend (JAX_PLATFORMS without cpu): the default device
        return make_store(episodes, frame_stack=frame_stack)
    with jax.default_device(cpu):
        return make_store(episodes, frame_stack=frame_stack)


def load_for(args) -> OfflineData:
    """`load_offline_data` with a script's flags (--env-id, --noise, --noise-in, --data-dir, --data-fraction,
    --batch-size, --run, --generate-data): the one call every algorithm script makes."""
    return load_offline_data(
        args.env_id,
        args.noise,
        args.data_dir,
        args.data_fraction,
        args.batch_size,
        args.run,
        args.generate_data,
        args.noise_in,
    )


def load_offline_data(
    env_id: str,
    noise: float,
    data_dir: Optional[str],
    data_fraction: float,
    batch_size: int,
    run: int = 1,
    generate_data: bool = False,
    noise_in: str = "environment",
) -> OfflineData:
    """The dataset of `env_id` -> OfflineData; one-line DataError on any problem.

    `generate_data` lets BSuite generate a missing dataset in an explicit `data_dir` that does not
    exist yet (see bsuite_data.load_bsuite); without it such a directory is an error.

    BSuite: `noise` and `noise_in` (where it acted: "environment" or "behaviour") pick the dataset, read
    whole. Atari: `run` (1..5) picks the RL Unplugged run;
    nothing is read or decoded here (`open_feed` does it), only the request is checked. Under
    `jax.distributed` (P processes), process p keeps only its disjoint part: Atari shards p, p + P,
    ...; BSuite episodes p, p + P, ... (process 0 generates a missing BSuite dataset first).
    """

    process, num_processes = jax.process_index(), jax.process_count()
    if is_atari(env_id):
        source = _atari_source(env_id, run, data_dir, data_fraction, (process, num_processes))
        info = {
            "path": games.join_location(games.resolve_data_dir(data_dir), f"{env_id}/run_{run}"),
            "run": run,
            **({"process": process, "num_processes": num_processes} if num_processes > 1 else {}),
            "data_fraction": data_fraction,
        }
        obs_shape = (*games.FRAME_SHAPE, ATARI_FRAME_STACK)
        return OfflineData(None, atari_env.num_actions(env_id), obs_shape, np.uint8, info, batch_size, source)
    if num_processes > 1:
        if process > 0:  # wait until process 0 has the dataset (it generates it on first use)
            multihost_utils.sync_global_devices("bsuite data")
        episodes, source = bsuite_data.load_bsuite(
            env_id, noise, data_dir, data_fraction, generate_data=generate_data, noise_in=noise_in
        )
        if process == 0:
            multihost_utils.sync_global_devices("bsuite data")
        episodes = process_part(episodes, process, num_processes, str(source))
    else:
        episodes, source = bsuite_data.load_bsuite(
            env_id, noise, data_dir, data_fraction, generate_data=generate_data, noise_in=noise_in
        )
    episodes = episodes._replace(observation=episodes.observation.reshape(episodes.num_steps, -1))
    env = make_env(env_id, 0)
    num_actions = env.action_spec().num_values
    obs_dim = int(np.prod(env.observation_spec().shape))
    if episodes.observation.shape[-1] != obs_dim:
        raise DataError(
            f"{source}: observations have {episodes.observation.shape[-1]} values, {env_id}'s have {obs_dim}; "
            f"is this {env_id} data?"
        )
    if episodes.action.max() >= num_actions or episodes.action.min() < 0:
        bad = int(episodes.action.max() if episodes.action.max() >= num_actions else episodes.action.min())
        raise DataError(f"{source}: action {bad} is outside {env_id}'s {num_actions} actions; is this {env_id} data?")
    store = host_store(episodes)
    check_batch_size(store, batch_size)
    noise_kind = {"noise_in": noise_in} if noise > 0 else {}
    info = {
        "path": str(Path(source)),
        "noise": noise,
        **noise_kind,
        **_describe(episodes, source, data_fraction, process, num_processes),
    }
    return OfflineData(store, num_actions, (obs_dim,), np.float32, info, batch_size)


def _describe(
    episodes, source, data_fraction: float, process: int, num_processes: int, raw_mean: Optional[float] = None
) -> dict:
    """results.json's description of data read whole, printed as the `data:` line. On Atari `raw_mean` is the
    episodes' mean game score (their stored episode_return), which is what evaluation reports; the training
    rewards are clipped, and their mean is kept beside it (or alone, for data that stores no raw return)."""
    returns = float(np.mean(episodes.episode_returns()))
    info = {
        **({"process": process, "num_processes": num_processes} if num_processes > 1 else {}),
        "data_fraction": data_fraction,
        "episodes": episodes.num_episodes,
        "transitions": episodes.num_transitions,
        "mean_return": returns if raw_mean is None else raw_mean,
        **({} if raw_mean is None else {"mean_clipped_return": returns}),
    }
    part = f" (part {process + 1} of {num_processes})" if num_processes > 1 else ""
    clipped = "" if raw_mean is None else f" (game score; {returns:.3f} in the clipped rewards trained on)"
    print(
        f"data{part}: {source} | {info['episodes']} episodes, {info['transitions']} transitions, "
        f"mean return {info['mean_return']:.3f}{clipped}"
    )
    return info


def _atari_source(game: str, run: int, data_dir: Optional[str], data_fraction: float, process: tuple) -> AtariSource:
    """The request checked without reading the data: game, run, and for a local directory that it is a
    directory holding this process's shards, for a URL that its first shard answers (one HEAD request: a
    wrong address fails here, in one line, before any network is built), unless a decoded cache of the
    request is there (it serves the device store without them). DataError with the fix otherwise."""

    games.check_game(game)
    games.check_run(run)
    cached = None
    if process[1] == 1:  # a process's part of the data has its own cache; the memory check then estimates
        manifest = cache.read_cache_meta(games.cache_path(game, run, data_fraction))
        location = games.resolve_data_dir(data_dir)
        if games.is_remote(location):
            expected = games.to_url(games.join_location(location, f"{game}/run_{run}"))
        else:
            expected = str(Path(location).resolve() / game / f"run_{run}")
        if manifest and manifest.get("source") == expected and manifest.get("data_fraction") == float(data_fraction):
            cached = int(manifest["steps"])
    if cached is None:
        # a missing local directory or shard: DataError
        first = stream.shard_locations(game, run, data_dir, process=process)[0]
        if games.is_remote(first):
            object_version(games.to_url(first))  # a host that does not resolve, HTTP 404, ...: DataError now
    return AtariSource(game, run, data_dir, float(data_fraction), tuple(process), cached)


# ----------------------------------------------------------------------------------------------
# The feed: the Store of every dispatch
# ----------------------------------------------------------------------------------------------


class Feed:
    """The Store of each dispatch: the whole data's Store (the same one every time) on the device path,
    the stream's ring with the newest episodes written in on the stream path (common/atari/stream.py).

    feed = open_feed(data, state, train_chunk, "auto"); state = feed.place(state)
    state, metrics = train_chunk(state, feed.next_store()); ...; feed.close()
    """

    def __init__(self, mesh: Any, store: Optional[Store] = None, stream: Any = None):
        self.mesh, self.store, self.stream = mesh, store, stream

    def place(self, state: Any) -> Any:
        """The training state replicated on every device of the feed's mesh (the batch is split over them)."""

        return replicate(state, self.mesh)

    def next_store(self) -> Store:
        """The Store for the next dispatch (the stream's first call waits until its ring is warm)."""
        return self.stream.next_store() if self.stream is not None else self.store

    def close(self) -> None:
        """Stop and join the stream's threads (nothing to do on the device path); safe to call twice."""
        if self.stream is not None:
            self.stream.close()

    def __enter__(self) -> "Feed":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_feed(
    data: OfflineData,
    state: Any,
    train_chunk: Any,
    store: str = "auto",
    device_memory_gb: Optional[float] = None,
    capacity_steps: Optional[int] = None,
) -> Feed:
    """The Feed of `--store {auto,device,stream}` (see the module docstring), before the run restores its state.

    `state`: the initial training state (only its shapes are used); `train_chunk`: the script's jitted update
    `train_chunk(state, store)` over all devices, compiled once on a ring-shaped store for the memory check
    (Atari, where the devices report their memory or `device_memory_gb` is given). `capacity_steps`: steps of
    the stream's ring (default common.atari.stream.DEFAULT_CAPACITY_STEPS), refilled a quarter at a time. The batch
    must split evenly over the devices. Completes `data.info` (results.json's description of the data) with
    the store chosen and the data's size once read (device store) or the ring's (stream); on Atari prints the
    choice's one-line reason. Place the state with `Feed.place` after restoring it.
    """

    if store not in ("auto", "device", "stream"):
        raise UsageError(f"--store must be auto, device or stream, got {store!r}")
    mesh = data_mesh()
    check_batch_divisible(data.batch_size, mesh)
    if data.atari is None:  # BSuite: always the whole data, placed as it was read
        if store == "stream":
            raise UsageError("--store stream streams Atari shards; BSuite data are always held whole on the device")
        return Feed(mesh, store=place_store(data.store, mesh))

    source = data.atari
    capacity = int(capacity_steps or memory.DEFAULT_CAPACITY_STEPS)
    ring = memory.ring_settings(capacity)
    steps, available = _planned_steps(source), memory.device_memory_bytes(device_memory_gb)
    if mesh.shape[PROCESS_AXIS] > 1:  # one choice for all processes: the largest part, the smallest device
        steps, available = _agree(steps, available)
    replicated = NamedSharding(mesh, PartitionSpec())
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=replicated), state)
    choice = memory.check_store(
        store,
        train_chunk,
        shapes,
        source.game,
        source.data_fraction,
        device_memory_gb=None if available is None else available / 1e9,
        data_steps=steps,
        capacity_steps=capacity,
        refill_steps=ring["refill_steps"],
    )
    print(f"store: {choice.reason}", flush=True)
    capacity = choice.capacity_steps  # --store auto may shrink the ring to the memory given
    ring = memory.ring_settings(capacity)
    game, run, fraction, process = source.game, source.run, source.data_fraction, source.process
    if choice.store == "device":
        episodes, path = loader.load_atari(game, run, source.data_dir, fraction, process=process)
        whole = host_store(episodes, frame_stack=ATARI_FRAME_STACK)
        check_batch_size(whole, data.batch_size)
        manifest = cache.read_cache_meta(games.cache_entry(game, run, fraction, process=process)) or {}
        data.info.update(store="device", **_describe(episodes, path, fraction, *process, manifest.get("mean_return")))
        del episodes
        return Feed(mesh, store=place_store(whole, mesh))
    locations = stream.shard_locations(game, run, source.data_dir, process=process)
    ring_store = stream.StreamingStore(
        locations, game, fraction, capacity_steps=capacity, **ring, seed=process[0], mesh=mesh, frame_stack=ATARI_FRAME_STACK
    )
    part = f" (part {process[0] + 1} of {process[1]})" if process[1] > 1 else ""
    shards = f"{len(locations)} shard{'s' * (len(locations) > 1)}"
    print(
        f"data{part}: {data.info['path']} | streamed from {shards} (--data-fraction {fraction:g} of each) into a ring "
        f"of {capacity} steps on every device, refilled {ring['refill_steps']} steps at a time",
        flush=True,
    )
    data.info.update(store="stream", capacity_steps=capacity, refill_steps=ring["refill_steps"], shards=len(locations))
    return Feed(mesh, stream=ring_store)


def _planned_steps(source: AtariSource) -> int:
    """Steps of this process's data for the memory check: a matching cache's count, else about 1M per shard."""

    if source.cached_steps is not None:
        return source.cached_steps
    location = games.resolve_data_dir(source.data_dir)
    count = None if games.is_remote(location) else loader.local_shard_count(location, source.game, source.run)
    count = count or games.num_checkpoints(source.game)
    mine = len(range(source.process[0], count, source.process[1]))
    return int(math.ceil(source.data_fraction * mine * memory.STEPS_PER_SHARD))


def _agree(steps: int, available: Optional[int]) -> tuple:
    """(largest steps, smallest reported device memory or None) over all processes (a collective)."""

    values = np.asarray(multihost_utils.process_allgather(np.array([steps, -1 if available is None else available])))
    values = values.reshape(-1, 2)
    reported = values[values[:, 1] >= 0, 1]
    return int(values[:, 0].max()), (int(reported.min()) if len(reported) else None)
