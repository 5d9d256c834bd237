"""RL Unplugged Atari data: reading the episodic shards into flat `Episodes`, with a local cache.

The source of truth is the public episodic, ordered release,
`gs://rl_unplugged/atari_episodes_ordered/{Game}/run_{r}-{i:05d}-of-{N:05d}`: shard i holds
checkpoint i of the behaviour DQN's training (N = 50, 49 for Carnival, Gravitar and StarGunner),
as a GZIP-compressed TFRecord file with one tf.train.Example per whole episode (checkpoint_idx,
episode_idx, episode_return, clipped_episode_return, observations: one 84x84x1 PNG per step,
actions, unclipped_rewards, clipped_rewards, discounts). An episode's T steps follow TFDS's RLDS
conversion (tensorflow_datasets/rl_unplugged/atari_utils.py): is_first at step 0, is_last at
T-1; when discounts[-1] == 0 the last step is terminal and the discounts shift by one
(discount after action i = discounts[i + 1]). The last step is padding in `Episodes`
(common/episodes.py): its action, reward and discount become 0. Rewards are the stored
`clipped_rewards` (in [-1, 1]); observations are single uint8 frames [N, 84, 84], stacked by the
sampler (common/replay.py, frame_stack=4). Episodes of a single step carry no transition and are
dropped.

A data directory is a local directory, a `gs://bucket/path` URL (read over HTTPS from
storage.googleapis.com, no gcloud needed) or an http(s):// URL; by default
$ROSMO_ATARI_DATA_DIR, else the public bucket. Shards are streamed: compressed bytes are read in
fixed blocks, gunzipped and split into TFRecords on the fly, and reading stops as soon as the
fraction needed from the shard is in. Remote reads retry transient failures with backoff, resume
dropped connections with Range requests and refuse an object that changes while it is read
(common/http_source.py). Data fraction: the official definition keeps the first
int(fraction * num_episodes) episodes of every checkpoint, but a shard's episode count is not
known without reading all of it, so this reader keeps, from every shard, the episodes whose
records are complete within the first `fraction` of the shard's compressed bytes (file size or
Content-Length), counted in whole 64 KiB blocks, and at least one episode. It applies the same
rule to local and remote shards, so both give the same episodes; it approximates the official
count (episodes within a checkpoint have similar lengths).

Integrity: every record's length and payload are checked against their masked CRC32C (the C
`google_crc32c`), and the record after the last kept one is read and checked too, so damage
that makes the decompressor produce fewer bytes cannot silently drop a kept episode (a reader
that stops before the gzip trailer never sees the stream's own CRC32). Every kept episode must
have as many frames as actions, rewards and discounts, finite clipped rewards summing to its
`clipped_episode_return`, discounts in [0, 1] and actions in the game's minimal action set;
a violation is a one-line DataError naming the shard and the episode. The Example protobuf is
decoded by the small wire-format reader of common/tfrecord.py, so reading imports no TensorFlow (nothing
can take accelerator memory from JAX).

The cache: the decoded subset is kept as .npy arrays (observations uint8) in
`{cache root}/atari/{Game}_run_{r}_{fraction}` (cache root: the `cache_dir` argument, else
$ROSMO_DATA_DIR, else ./datasets), a symbolic link to the current version directory
`.{name}.v-{id}` beside it. A version holds manifest.json: the request (game, run, fraction,
source, shard count), every shard read (its size and modification time, or its ETag,
generation and Last-Modified when remote) and every array file's size and CRC32C (CRC32C: the
same C routine as the records, several GB/s, so checking a multi-GB cache on each load costs
about a second; it guards against accidents, not attackers). A load takes a shared lock
(`.{name}.lock`, fcntl) and uses the cache when the request matches, no source shard that can
still be reached has changed and every array matches its checksum; otherwise one process at a
time (exclusive lock; the others wait, then read what it built) removes the `.partial-*`
directories of dead builders (each records its host and process id), checks the free disk
space, decodes into a new `.{name}.partial-{host}-{pid}` directory (preallocated, so a full
disk is an error, not SIGBUS), renames it to a version and swaps the link in one rename: a
valid cache exists at every moment, and a killed builder leaves only a partial directory that
the next build removes. A corrupt cache whose source cannot be read is refused with a one-line
error. Command line (download and cache a subset): `python -m common.atari_data --game Pong
--run 1 --fraction 0.01 [--data-dir D] [--cache-dir C] [--workers 4] [--force]`. This module
holds no sampler, environment or learning code; the minimal action set comes from
common/atari_env.py.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import fcntl
import json
import math
import os
import shlex
import shutil
import socket
import struct
import sys
import threading
import time
import urllib.parse
import zlib
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

import google_crc32c
import numpy as np

from common.episodes import Episodes, check_data_fraction, check_values, validate_episodes
from common.errors import DataError
from common.http_source import DEFAULT_RETRY, RetryPolicy, object_version, stream_blocks
from common.tfrecord import masked_crc32c, parse_example

# The 46 games of RL Unplugged Atari, spelled as in the bucket (and in ALE's v5 ids).
GAMES = (
    "Alien", "Amidar", "Assault", "Asterix", "Atlantis", "BankHeist", "BattleZone", "BeamRider",
    "Boxing", "Breakout", "Carnival", "Centipede", "ChopperCommand", "CrazyClimber", "DemonAttack",
    "DoubleDunk", "Enduro", "FishingDerby", "Freeway", "Frostbite", "Gopher", "Gravitar", "Hero",
    "IceHockey", "Jamesbond", "Kangaroo", "Krull", "KungFuMaster", "MsPacman", "NameThisGame",
    "Phoenix", "Pong", "Pooyan", "Qbert", "Riverraid", "RoadRunner", "Robotank", "Seaquest",
    "SpaceInvaders", "StarGunner", "TimePilot", "UpNDown", "VideoPinball", "WizardOfWor",
    "YarsRevenge", "Zaxxon",
)  # fmt: skip
SHORT_GAMES = ("Carnival", "Gravitar", "StarGunner")  # 49 checkpoints instead of 50
NUM_RUNS = 5
PUBLIC_DATA_DIR = "gs://rl_unplugged/atari_episodes_ordered"
DATA_DIR_ENV_VAR = "ROSMO_ATARI_DATA_DIR"
CACHE_ROOT_ENV_VAR = "ROSMO_DATA_DIR"
DEFAULT_CACHE_ROOT = "datasets"
FRAME_SHAPE = (84, 84)
BLOCK_SIZE = 1 << 16  # compressed bytes per read; the fraction rule counts whole blocks
CACHE_FORMAT = 2
MANIFEST = "manifest.json"
_FIELDS = ("observation", "action", "reward", "discount", "is_first", "is_last", "is_terminal")
_STEP_BYTES = FRAME_SHAPE[0] * FRAME_SHAPE[1] + 4 + 4 + 4 + 1 + 1 + 1  # cache bytes per step, all arrays
_CACHE_SLACK_BYTES = 1 << 20  # .npy headers and the manifest
_CHECKSUM_CHUNK = 1 << 24
# Checking that a remote source is unchanged before using its cache: quick, and on failure the cache is used.
_FRESHNESS_RETRY = RetryPolicy(attempts=2, base_delay_s=0.5, max_delay_s=1.0, deadline_s=10.0, timeout_s=10.0)
# ----------------------------------------------------------------------------------------------
# Names, locations and commands
# ----------------------------------------------------------------------------------------------


def check_game(game: str) -> None:
    if game not in GAMES:
        raise DataError(f"{game!r} is not an RL Unplugged Atari game; the games are: {', '.join(GAMES)}")


def check_run(run: int) -> None:
    if run not in range(1, NUM_RUNS + 1):
        raise DataError(f"--run must be one of 1..{NUM_RUNS} (RL Unplugged has {NUM_RUNS} runs per game), got {run}")


def num_checkpoints(game: str) -> int:
    """Checkpoints (shards) of one run of `game` in the public release: 50, or 49 for SHORT_GAMES."""
    check_game(game)
    return 49 if game in SHORT_GAMES else 50


def shard_name(game: str, run: int, index: int, count: int) -> str:
    """Path of shard `index` relative to the data directory."""
    return f"{game}/run_{run}-{index:05d}-of-{count:05d}"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> str:
    """The --data-dir flag, else $ROSMO_ATARI_DATA_DIR, else the public bucket."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV_VAR) or PUBLIC_DATA_DIR
    chosen = os.fspath(chosen)
    return chosen.rstrip("/") if is_remote(chosen) else str(Path(chosen).expanduser())


def is_remote(location: str) -> bool:
    return location.startswith(("gs://", "http://", "https://"))


def to_url(location: str) -> str:
    """gs://bucket/path -> https://storage.googleapis.com/bucket/path; http(s) URLs unchanged."""
    if location.startswith("gs://"):
        return "https://storage.googleapis.com/" + urllib.parse.quote(location[len("gs://") :])
    return location


def join_location(base: str, relative: str) -> str:
    return f"{base.rstrip('/')}/{relative}" if is_remote(base) else str(Path(base) / relative)


def resolve_cache_root(cache_dir: str | os.PathLike | None) -> Path:
    """The cache_dir argument, else $ROSMO_DATA_DIR, else ./datasets (arrays go to ROOT/atari/...)."""
    return Path(cache_dir or os.environ.get(CACHE_ROOT_ENV_VAR) or DEFAULT_CACHE_ROOT).expanduser()


def fraction_tag(data_fraction: float) -> str:
    return repr(float(data_fraction))


def cache_path(game: str, run: int, data_fraction: float, cache_dir: str | os.PathLike | None = None) -> Path:
    """Directory of the cached arrays of one (game, run, fraction)."""
    return resolve_cache_root(cache_dir) / "atari" / f"{game}_run_{run}_{fraction_tag(data_fraction)}"


def cache_entry(
    game: str, run: int, data_fraction: float, cache_dir: str | os.PathLike | None = None, process: tuple[int, int] = (0, 1)
) -> Path:
    """The cache directory `load_atari` uses: `cache_path`'s, or one part's of several processes."""
    path = cache_path(game, run, data_fraction, cache_dir)
    part, num_parts = process
    return path.with_name(f"{path.name}_part{part}of{num_parts}") if num_parts > 1 else path


def fetch_command(game: str, run: int, data_dir: str) -> str:
    """The shell command that downloads one whole run into a local data directory."""
    target = shlex.quote(str(Path(data_dir) / game)) + "/"
    return f"mkdir -p {target} && gsutil -m cp '{PUBLIC_DATA_DIR}/{game}/run_{run}-*' {target}"


def stream_command(game: str, run: int, data_fraction: float, data_dir: str | None = None) -> str:
    """The shell command that reads a subset (streamed, no download of whole shards) into the cache."""
    command = f"python -m common.atari_data --game {game} --run {run} --fraction {fraction_tag(data_fraction)}"
    return command + (f" --data-dir {shlex.quote(data_dir)}" if data_dir else "")


# ----------------------------------------------------------------------------------------------
# Streaming a shard: compressed blocks -> gunzipped bytes -> checked TFRecords -> checked episodes
# ----------------------------------------------------------------------------------------------


class _Truncated(Exception):
    """The compressed stream ended before its gzip trailer or inside a record."""


class _RecordError(ValueError):
    """A record fails one of its checksums."""


class _EpisodeError(ValueError):
    """A parsed episode breaks the format's rules; `episode` is its episode_idx (else its record index)."""

    def __init__(self, episode: int, message: str):
        super().__init__(message)
        self.episode = episode


class _ActionError(_EpisodeError):
    """An action outside the game's minimal action set."""


def _local_version(stat: os.stat_result) -> dict:
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _local_blocks(path: str, block_size: int) -> tuple[dict, Iterator[bytes]]:
    """The file's size and modification time, and its bytes in `block_size` blocks (one open file,
    so a shard replaced meanwhile is read whole as it was; one changed in place is an error)."""
    f = open(path, "rb")
    version = _local_version(os.fstat(f.fileno()))

    def blocks() -> Iterator[bytes]:
        with f:
            while True:
                block = f.read(block_size)
                if not block:
                    break
                yield block
            if _local_version(os.fstat(f.fileno())) != version:
                raise DataError(f"{path} changed while it was being read; run again once it is complete")

    return version, blocks()


def _records(blocks: Iterator[bytes]) -> Iterator[tuple[bytes | None, int]]:
    """TFRecords of a gzip stream as they arrive, each checked against its length and payload
    CRC32C: (record, compressed bytes read so far), and (None, bytes read) at the end of every block.

    Raises _Truncated at the end of the input if the stream or a record is incomplete,
    _RecordError on a failed checksum, zlib.error on bad compressed data.
    """
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    member_started = False
    buf, consumed, index = bytearray(), 0, 0
    for block in blocks:
        consumed += len(block)
        data = block
        while data:
            buf += inflate.decompress(data)
            member_started = True
            data = b""
            if inflate.eof:  # a gzip member ended; another may follow
                data = inflate.unused_data
                inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
                member_started = False
        pos = 0
        while len(buf) - pos >= 12:
            (length,) = struct.unpack_from("<Q", buf, pos)
            (length_crc,) = struct.unpack_from("<I", buf, pos + 8)
            if masked_crc32c(bytes(buf[pos : pos + 8])) != length_crc:
                raise _RecordError(f"record {index}: its length fails its CRC32C check")
            if len(buf) - pos < 12 + length + 4:
                break
            record = bytes(buf[pos + 12 : pos + 12 + length])
            (payload_crc,) = struct.unpack_from("<I", buf, pos + 12 + length)
            if masked_crc32c(record) != payload_crc:
                raise _RecordError(f"record {index}: its payload fails its CRC32C check")
            yield record, consumed
            index += 1
            pos += 12 + length + 4
        del buf[:pos]
        yield None, consumed
    if member_started or buf:
        raise _Truncated()


class RawEpisode(NamedTuple):
    """One episode as stored: T steps, observations still PNG-encoded."""

    checkpoint_idx: int
    episode_idx: int
    pngs: list  # [T] PNG byte strings (memoryviews into the record)
    action: np.ndarray  # [T] int64
    reward: np.ndarray  # [T] float32, clipped_rewards
    discount: np.ndarray  # [T] float32, as stored (discounts[-1] == 0: the last step is terminal)
    raw_return: float = float("nan")  # episode_return: the game score in raw rewards (nan where it is not stored)


class ShardRead(NamedTuple):
    location: str
    episodes: list  # [RawEpisode], in stored order
    bytes_read: int  # compressed bytes read
    size: int  # compressed bytes in the shard
    complete: bool  # read to the end of the gzip stream
    version: dict  # local: size, mtime_ns; remote: size and the ETag, generation, Last-Modified sent


def _raw_episode(features: dict, record_index: int, action_count: int | None, game: str | None) -> RawEpisode:
    """The episode of one parsed Example, after the cross-checks of the module docstring."""

    def scalar(name: str) -> int:
        value = features.get(name)
        return int(value[0]) if isinstance(value, np.ndarray) and value.size else -1

    episode = scalar("episode_idx") if scalar("episode_idx") >= 0 else record_index
    for name in ("observations", "actions", "clipped_rewards", "discounts"):
        if name not in features:
            raise _EpisodeError(episode, f"has no '{name}' feature")
    pngs = features["observations"]
    action, reward, discount = features["actions"], features["clipped_rewards"], features["discounts"]
    if not isinstance(pngs, list) or not all(isinstance(x, np.ndarray) for x in (action, reward, discount)):
        raise _EpisodeError(episode, "has a feature of the wrong type")
    if not len(pngs) == len(action) == len(reward) == len(discount):
        raise _EpisodeError(
            episode,
            f"has {len(pngs)} frames, {len(action)} actions, {len(reward)} clipped rewards and {len(discount)} discounts",
        )
    bad = np.flatnonzero(~np.isfinite(reward))
    if bad.size:
        raise _EpisodeError(episode, f"has the clipped reward {reward[bad[0]]} at step {bad[0]}")
    bad = np.flatnonzero(~((discount >= 0.0) & (discount <= 1.0)))
    if bad.size:
        raise _EpisodeError(episode, f"has the discount {discount[bad[0]]} at step {bad[0]}, not in [0, 1]")
    if action_count is not None and len(action) and (action.min() < 0 or action.max() >= action_count):
        bad_action = int(action.max() if action.max() >= action_count else action.min())
        raise _ActionError(
            episode, f"has action {bad_action}, outside {game}'s minimal action set of {action_count} actions (ALE)"
        )
    stated = features.get("clipped_episode_return")
    if isinstance(stated, np.ndarray) and stated.size:
        total, stated = float(np.sum(reward, dtype=np.float64)), float(stated[0])
        if not abs(total - stated) <= 1e-3 * max(1.0, abs(stated)):  # also refuses a nan return
            raise _EpisodeError(episode, f"has clipped rewards summing to {total:g} but clipped_episode_return {stated:g}")
    raw = features.get("episode_return")
    raw_return = float(raw[0]) if isinstance(raw, np.ndarray) and raw.size else float("nan")
    return RawEpisode(scalar("checkpoint_idx"), scalar("episode_idx"), pngs, action, reward, discount, raw_return)


def read_shard(
    location: str,
    data_fraction: float = 1.0,
    game: str | None = None,
    block_size: int = BLOCK_SIZE,
    should_stop: Callable[[], bool] = lambda: False,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> ShardRead:
    """Stream one shard (local path or URL) and keep the episodes the data-fraction rule selects.

    With data_fraction < 1, reading stops after the first block at which the compressed bytes read
    reach ceil(fraction * size) and at least one episode is complete; every episode complete by
    then is kept, and the next record (if any) is read and checked but not kept. With `game`,
    actions are checked against its minimal action set. `retry`: how remote reads retry.
    Raises DataError naming the shard if it is missing, truncated, corrupt or fails a cross-check.
    """
    check_data_fraction(data_fraction)
    remote = is_remote(location)
    shown = to_url(location) if remote else location
    if remote:
        version, blocks = stream_blocks(shown, block_size, retry, should_stop)
        version = version.as_dict()
    else:
        try:
            version, blocks = _local_blocks(location, block_size)
        except OSError as error:
            raise _shard_error(shown, remote, f"cannot be read ({_os_error(error)})") from None
    size = version["size"]
    if size == 0:
        raise _shard_error(shown, remote, "is empty (0 bytes)")
    budget = size if data_fraction >= 1.0 else math.ceil(data_fraction * size)
    action_count = None
    if game is not None:
        from common.atari_env import num_actions

        action_count = num_actions(game)
    episodes, bytes_read, complete, index, checking_next = [], 0, False, 0, False
    records = _records(blocks)
    try:
        for record, bytes_read in records:
            if record is not None:
                if checking_next:  # the record after the kept ones passed its checksums
                    break
                episodes.append(_raw_episode(parse_example(record), index, action_count, game))
                index += 1
            elif should_stop():
                break
            elif data_fraction < 1.0 and bytes_read >= budget and episodes:
                checking_next = True
        else:
            complete = True
    except DataError:
        raise
    except _Truncated:
        raise _shard_error(shown, remote, "is truncated: the compressed stream ends early") from None
    except _ActionError as error:
        raise DataError(f"{shown}: episode {error.episode} (record {index}) {error}; is this {game} data?") from None
    except _EpisodeError as error:
        what = f"is corrupt: episode {error.episode} (record {index}) {error}"
        raise _shard_error(shown, remote, what) from None
    except _RecordError as error:
        raise _shard_error(shown, remote, f"is corrupt: {error}") from None
    except OSError as error:
        raise _shard_error(shown, remote, f"cannot be read ({_os_error(error)})") from None
    except (ValueError, zlib.error, UnicodeDecodeError) as error:
        raise _shard_error(shown, remote, f"is corrupt (record {index}: {type(error).__name__}: {error})") from None
    finally:
        records.close()
    return ShardRead(shown, episodes, bytes_read, size, complete, version)


def _os_error(error: OSError) -> str:
    return f"{type(error).__name__}: {error.strerror or error}"


def _shard_error(location: str, remote: bool, what: str) -> DataError:
    if remote:
        return DataError(f"{location} {what}; run again (a dropped connection), or download it with gsutil cp")
    return DataError(
        f"{location} {what}; delete it and download it again with: gsutil cp {_public_twin(location)} {shlex.quote(location)}"
    )


def _public_twin(location: str) -> str:
    """The public bucket's copy of a local shard path ({dir}/{Game}/run_...)."""
    path = Path(location)
    return f"{PUBLIC_DATA_DIR}/{path.parent.name}/{path.name}"


# ----------------------------------------------------------------------------------------------
# Stored episodes -> flat Episodes, and the cache
# ----------------------------------------------------------------------------------------------


def episode_steps(raw: RawEpisode) -> dict[str, np.ndarray]:
    """The RLDS step fields (all but the observation) of one stored episode, as TFDS converts it,
    with the last step's action, reward and discount set to the padding value 0."""
    steps = len(raw.action)
    terminal = bool(steps) and raw.discount[-1] == 0.0
    discount = np.asarray(raw.discount, np.float32)
    if terminal:  # stored discounts belong to the step they arrive at; RLDS puts them on the step before
        discount = np.concatenate([discount[1:], [0.0]]).astype(np.float32)
    fields = {
        "action": np.asarray(raw.action, np.int32).copy(),
        "reward": np.asarray(raw.reward, np.float32).copy(),
        "discount": discount.copy(),
        "is_first": np.arange(steps) == 0,
        "is_last": np.arange(steps) == steps - 1,
    }
    fields["is_terminal"] = fields["is_last"] & terminal
    for name in ("action", "reward", "discount"):
        fields[name][-1:] = 0
    return fields


def decode_frame(png: bytes | memoryview) -> np.ndarray | None:
    """One stored PNG -> [84, 84] uint8 frame, or None if it does not decode to one."""
    import cv2

    frame = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if frame is None or frame.dtype != np.uint8:
        return None
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    return frame if frame.shape == FRAME_SHAPE else None


def _read_shards(
    locations: Sequence[str],
    data_fraction: float,
    game: str,
    workers: int,
    progress: bool,
    desc: str,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> list[ShardRead]:
    """read_shard over every location, `workers` at a time, results in order.

    The first failure stops the other readers at their next block; the error raised is that of the
    earliest shard that failed.
    """
    from tqdm import tqdm

    stop = threading.Event()

    def stop_on_error(future: concurrent.futures.Future) -> None:
        if not future.cancelled() and future.exception() is not None:
            stop.set()

    results, episodes, megabytes = [], 0, 0.0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [
            pool.submit(read_shard, location, data_fraction, game, BLOCK_SIZE, stop.is_set, retry) for location in locations
        ]
        for future in futures:
            future.add_done_callback(stop_on_error)
        with tqdm(total=len(locations), desc=desc, unit="shard", disable=not progress) as bar:
            try:
                for future in futures:
                    shard = future.result()
                    results.append(shard)
                    episodes += len(shard.episodes)
                    megabytes += shard.bytes_read / 2**20
                    bar.update(1)
                    bar.set_postfix(episodes=episodes, MiB=f"{megabytes:.0f}")
            except BaseException:
                stop.set()
                for future in futures:
                    future.cancel()
                raise
    return results


def _decode_frames(
    kept: Sequence[tuple[str, RawEpisode]], offsets: np.ndarray, out: np.ndarray, workers: int, progress: bool
) -> None:
    """Decode every kept episode's PNGs into out[offsets[k]:offsets[k + 1]], `workers` episodes at a time."""
    from tqdm import tqdm

    def decode(k: int) -> int:
        location, ep = kept[k]
        for t, png in enumerate(ep.pngs):
            frame = decode_frame(png)
            if frame is None:
                what = f"is corrupt (episode {ep.episode_idx}, step {t}: not an 84x84 grayscale PNG)"
                raise _shard_error(location, is_remote(location), what)
            out[offsets[k] + t] = frame
        return len(ep.pngs)

    with (
        concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(total=int(offsets[-1]), desc="decoding frames", unit="frame", disable=not progress) as bar,
    ):
        for count in pool.map(decode, range(len(kept))):
            bar.update(count)


# ----------------------------------------------------------------------------------------------
# The cache: versions behind a link, a manifest with checksums, one builder at a time
# ----------------------------------------------------------------------------------------------


def _checksum_file(path: Path) -> int:
    """CRC32C of a whole file, computed over a read-only memory map in 16 MiB chunks (no copies)."""
    if os.path.getsize(path) == 0:
        return 0
    data = np.memmap(path, dtype=np.uint8, mode="r")
    crc = 0
    for start in range(0, data.size, _CHECKSUM_CHUNK):
        crc = google_crc32c.extend(crc, data[start : start + _CHECKSUM_CHUNK])
    del data
    return crc


def _array_entry(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "crc32c": _checksum_file(path)}


@contextlib.contextmanager
def _cache_lock(path: Path, exclusive: bool) -> Iterator[None]:
    """Hold `.{name}.lock` beside the cache entry: shared to read it, exclusive to build it.

    The lock is an fcntl.flock, released by the kernel when its holder dies (a kill -9 included).
    """
    try:
        fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        if not exclusive:  # a read-only cache directory: nobody can build there, so reading needs no lock
            yield
            return
        raise DataError(
            f"cannot lock the cache {path} for writing ({_os_error(error)}); set ${CACHE_ROOT_ENV_VAR} to a writable directory"
        ) from None
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"Waiting for another process that is building the cache {path}.", flush=True)
            fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)


def _current_version(path: Path) -> Path | None:
    """The directory the cache entry `path` stands for: its link's target, or `path` itself when it
    is a plain directory (an older layout); None when there is none. DataError if it is a file."""
    if path.is_symlink():
        target = path.parent / os.readlink(path)
        return target if target.is_dir() else None
    if path.is_dir():
        return path
    if path.exists():
        raise DataError(f"the cache entry {path} is a file, not a directory; remove it or choose another cache directory")
    return None


def read_cache_meta(path: str | os.PathLike) -> dict | None:
    """The manifest of a cache entry (or version directory), or None if there is no complete cache there."""
    try:
        version = _current_version(Path(path))
        return None if version is None else json.loads((version / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def cache_problem(path: str | os.PathLike, manifest: dict | None = None) -> str | None:
    """What is wrong with the arrays of a cache entry ('observation.npy fails its checksum', ...), or None."""
    path = Path(path)
    version = _current_version(path)
    manifest = manifest if manifest is not None else read_cache_meta(path)
    if version is None or manifest is None:
        return "it is missing or incomplete"
    arrays = manifest.get("arrays")
    if not isinstance(arrays, dict) or set(arrays) != set(_FIELDS):
        return f"its {MANIFEST} lists no checksums"
    for name in _FIELDS:
        file = version / f"{name}.npy"
        try:
            size = file.stat().st_size
            if size != arrays[name]["bytes"]:
                return f"{file.name} has {size} bytes, its manifest says {arrays[name]['bytes']}"
            if _checksum_file(file) != arrays[name]["crc32c"]:
                return f"{file.name} fails its CRC32C checksum"
        except OSError as error:
            return f"{file.name} cannot be read ({_os_error(error)})"
        except (KeyError, TypeError):
            return f"its {MANIFEST} is malformed"
    return None


def load_cached(path: str | os.PathLike, num_actions: int | None = None, verify: bool = True) -> Episodes:
    """The Episodes of a cache entry (observations memory-mapped, read-only), after checking every
    array against the manifest's checksum (`verify`) and the values (common.episodes.check_values)."""
    path = Path(path)
    problem = cache_problem(path) if verify else None
    if problem is not None:
        raise DataError(f"the cache {path} is corrupt ({problem}); delete it and load again")
    version = _current_version(path)
    try:
        arrays = {name: np.load(version / f"{name}.npy", mmap_mode="r" if name == "observation" else None) for name in _FIELDS}
        episodes = Episodes(**arrays)
        validate_episodes(episodes, str(path))
        check_values(episodes, f"the cache {path}", num_actions)
    except (OSError, ValueError) as error:
        what = f"{type(error).__name__}: {error}"
        raise DataError(f"the cache {path} is unreadable ({what}); delete it and load again") from None
    return episodes


def _source_change(manifest: dict, workers: int) -> str | None:
    """How a source shard has changed since the cache was built (size and mtime locally, the ETag,
    generation or Last-Modified remotely), or None. A shard that cannot be reached is no change:
    the cache may outlive its source."""

    def change(shard: dict) -> str | None:
        location, recorded = shard.get("location", ""), shard.get("version") or {}
        if is_remote(location):
            try:
                now = object_version(location, _FRESHNESS_RETRY).as_dict()
            except DataError:
                return None
        else:
            try:
                now = _local_version(os.stat(location))
            except OSError:
                return None
        differs = [f"{k} {recorded[k]} -> {now[k]}" for k in now if k in recorded and recorded[k] != now[k]]
        return f"{location} changed since it was cached ({', '.join(differs)})" if differs else None

    shards = manifest.get("shards") or []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for found in pool.map(change, shards):
            if found:
                return found
    return None


class _CacheState(NamedTuple):
    episodes: Episodes | None  # the cached episodes when usable
    problem: str | None  # why not, for the message of the rebuild
    corrupt: bool  # the arrays fail their checks (a rebuild that fails must say so)


def _inspect_cache(path: Path, key: dict, num_actions: int, workers: int) -> _CacheState:
    """Whether the cache entry serves the request `key`: same request, unchanged source, intact arrays."""
    manifest = read_cache_meta(path)
    if manifest is None:
        return _CacheState(None, None, False)
    if any(manifest.get(name) != value for name, value in key.items()):
        return _CacheState(None, f"holds other data ({manifest.get('source')})", False)
    changed = _source_change(manifest, workers)
    if changed:
        return _CacheState(None, f"is out of date: {changed}", False)
    problem = cache_problem(path, manifest)
    if problem:
        return _CacheState(None, f"is corrupt: {problem}", True)
    try:
        return _CacheState(load_cached(path, num_actions, verify=False), None, False)
    except DataError as error:
        return _CacheState(None, f"is corrupt: {error}", True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _partial_owner(partial: Path) -> tuple[str, int]:
    """(host, pid) of the builder of a partial directory, from its owner.json, else from its name."""
    try:
        owner = json.loads((partial / "owner.json").read_text())
        return str(owner["host"]), int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        host, _, rest = partial.name.split(".partial-", 1)[-1].rpartition("-")  # {host}-{pid}-{id}
        host, _, pid = host.rpartition("-")
        return host, int(pid) if pid.isdigit() else -1


def _remove_leftovers(path: Path) -> None:
    """Remove what killed builders left beside the entry (call with the exclusive lock held): partial
    directories of dead processes on this host, unlinked versions and stray link names."""
    host, current = socket.gethostname(), _current_version(path)
    for partial in path.parent.glob(f".{path.name}.partial-*"):
        owner_host, pid = _partial_owner(partial)
        if owner_host == host and (pid == os.getpid() or not _pid_alive(pid)):
            print(f"Removing {partial}, left by process {pid} that died while building the cache.", flush=True)
            shutil.rmtree(partial, ignore_errors=True)
    for version in path.parent.glob(f".{path.name}.v-*"):
        if current is None or version.resolve() != current.resolve():
            shutil.rmtree(version, ignore_errors=True)
    for link in path.parent.glob(f".{path.name}.link-*"):
        link.unlink(missing_ok=True)


def _swap_in(path: Path, version: Path) -> None:
    """Point the entry `path` at `version` with one rename (readers see the old or the new cache,
    never none), then remove the old version."""
    old = _current_version(path)
    link = path.parent / f".{path.name}.link-{os.urandom(4).hex()}"
    os.symlink(version.name, link)
    if old is not None and not path.is_symlink():  # an older plain-directory cache: move it aside first
        aside = path.parent / f".{path.name}.v-old-{os.urandom(4).hex()}"
        os.rename(path, aside)
        old = aside
    os.replace(link, path)
    if old is not None and old.resolve() != version.resolve():
        shutil.rmtree(old, ignore_errors=True)


def _preallocate(file: Path) -> None:
    """Reserve the blocks of a (sparse) file now, so a full disk is an OSError here, not a SIGBUS later."""
    with open(file, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS):
                raise


def _check_free_space(path: Path, needed: int) -> None:
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise DataError(
            f"not enough free disk space for the cache {path}: it needs {needed / 2**20:.1f} MiB and "
            f"{free / 2**20:.1f} MiB are free; free some space, or set ${CACHE_ROOT_ENV_VAR} (--cache-dir of "
            "python -m common.atari_data) to a directory on another disk, or use a smaller --data-fraction"
        )


def _write_cache(
    path: Path, shards: Sequence[ShardRead], key: dict, num_actions: int, workers: int, progress: bool, start: float
) -> None:
    """Decode the kept episodes into a fresh partial directory, check them, record the manifest,
    then make it the current version of `path` (call with the exclusive lock held)."""
    kept = [(shard.location, ep) for shard in shards for ep in shard.episodes if len(ep.action) >= 2]
    dropped = sum(len(shard.episodes) for shard in shards) - len(kept)
    if not kept:
        raise DataError(f"{key['source']}: the selected data holds no episode with a transition; use a larger fraction")
    lengths = np.asarray([len(ep.action) for _, ep in kept])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    num_steps = int(offsets[-1])
    _check_free_space(path, num_steps * _STEP_BYTES + _CACHE_SLACK_BYTES)
    host, pid = socket.gethostname(), os.getpid()
    partial = path.parent / f".{path.name}.partial-{host}-{pid}-{os.urandom(4).hex()}"
    partial.mkdir()
    try:
        (partial / "owner.json").write_text(json.dumps({"host": host, "pid": pid, "started": time.time()}))
        observation = np.lib.format.open_memmap(
            partial / "observation.npy", mode="w+", dtype=np.uint8, shape=(num_steps, *FRAME_SHAPE)
        )  # [N, 84, 84] uint8
        _preallocate(partial / "observation.npy")
        _decode_frames(kept, offsets, observation, workers, progress)
        observation.flush()
        steps = [episode_steps(ep) for _, ep in kept]
        fields = {name: np.concatenate([s[name] for s in steps]) for name in _FIELDS if name != "observation"}
        episodes = Episodes(observation=observation, **fields)
        validate_episodes(episodes, key["source"])
        check_values(episodes, key["source"], num_actions)
        for name, value in fields.items():
            np.save(partial / f"{name}.npy", value)
        del observation, episodes
        raw_returns = np.array([ep.raw_return for _, ep in kept])  # the game score: what evaluation reports
        raw_mean = {"mean_return": float(np.mean(raw_returns))} if np.all(np.isfinite(raw_returns)) else {}
        manifest = {
            **key,
            "episodes": len(kept),
            "steps": num_steps,
            "transitions": num_steps - len(kept),
            "dropped_single_step_episodes": dropped,
            "mean_clipped_return": float(np.mean([float(np.sum(s["reward"])) for s in steps])),
            **raw_mean,
            "seconds": round(time.time() - start, 1),
            "built_by": {"host": host, "pid": pid},
            "shards": [
                {
                    "location": shard.location,
                    "size": shard.size,
                    "version": shard.version,
                    "bytes_read": shard.bytes_read,
                    "episodes": len(shard.episodes),
                    "complete": shard.complete,
                }
                for shard in shards
            ],
            "arrays": {name: _array_entry(partial / f"{name}.npy") for name in _FIELDS},
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1))
        (partial / "owner.json").unlink()
        version = path.parent / f".{path.name}.v-{os.urandom(4).hex()}"
        os.rename(partial, version)
        _swap_in(path, version)
    except OSError as error:
        raise DataError(
            f"writing the cache {path} failed ({_os_error(error)}); check the disk (space, permissions) or set "
            f"${CACHE_ROOT_ENV_VAR} to another directory"
        ) from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _prepare_cache_dir(directory: Path) -> None:
    """Create the cache's directory; one-line DataError if a file or a link loop is in the way."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if directory.is_dir():
            return
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise DataError(
                f"the cache directory {directory} is a symbolic link loop; fix the link or choose another"
            ) from None
        if not isinstance(error, (FileExistsError, NotADirectoryError)):
            raise DataError(f"cannot create the cache directory {directory} ({_os_error(error)})") from None
    blocking = next((p for p in (directory, *directory.parents) if p.exists() and not p.is_dir()), directory)
    raise DataError(
        f"the cache directory {directory} cannot be made: {blocking} is a file, not a directory; pass a directory "
        f"as --cache-dir or ${CACHE_ROOT_ENV_VAR}"
    )


# ----------------------------------------------------------------------------------------------
# Local data directories, and loading
# ----------------------------------------------------------------------------------------------


def _is_file(location: str) -> bool:
    """os.path.isfile, but a symbolic link loop is a DataError instead of a missing file."""
    try:
        os.stat(location)
    except FileNotFoundError:
        return False
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise DataError(f"{location} is a symbolic link loop; fix or remove the link") from None
        return False
    return os.path.isfile(location)


def check_data_dir(location: str) -> str:
    """The real path of a local data directory; DataError if it is a file or a symbolic link loop."""
    try:
        real = Path(location).resolve(strict=True)
    except FileNotFoundError:
        return str(Path(location).resolve())
    except (RuntimeError, OSError) as error:  # Python 3.11 raises RuntimeError on a loop
        if isinstance(error, OSError) and error.errno != errno.ELOOP:
            raise DataError(f"the data directory {location} cannot be read ({_os_error(error)})") from None
        raise DataError(
            f"the data directory {location} is a symbolic link loop; fix the link or pass another --data-dir"
        ) from None
    if not real.is_dir():
        raise DataError(
            f"the data directory {location} is a file, not a directory of shards; pass the directory above {{Game}}/"
        )
    return str(real)


def local_shard_count(location: str, game: str, run: int) -> int | None:
    """N of the shards run_{run}-*-of-N present in a local data directory, if they agree on one."""
    counts = set()
    try:
        paths = list((Path(location) / game).glob(f"run_{run}-*-of-*"))
    except OSError:
        return None
    for path in paths:
        tail = path.name.rsplit("-of-", 1)[-1]
        if tail.isdigit():
            counts.add(int(tail))
    return counts.pop() if len(counts) == 1 else None


def select_shards(
    game: str, run: int, location: str, num_shards: int | None = None, process: tuple[int, int] = (0, 1)
) -> tuple[int, list[str]]:
    """(N, this process's shard locations): the count N is `num_shards`, else the one found in a local
    directory, else the public one; process (p, P) reads shards p, p + P, p + 2P, ... (the device store and the
    stream select them here alike). DataError if the processes do not fit the shards."""
    remote = is_remote(location)
    count = num_shards or (None if remote else local_shard_count(location, game, run)) or num_checkpoints(game)
    part, num_parts = process
    if not 0 <= part < num_parts:
        raise DataError(f"process {part} is not one of {num_parts} processes")
    if num_parts > count:
        raise DataError(f"{count} shards of {game} run {run} cannot be split over {num_parts} processes; use at most {count}")
    return count, [join_location(location, shard_name(game, run, i, count)) for i in range(part, count, num_parts)]


def _check_local_shards(locations: Sequence[str], game: str, run: int, data_dir: str, data_fraction: float) -> None:
    missing = [location for location in locations if not _is_file(location)]
    if not missing:
        return
    fixes = (
        f"download the run with: {fetch_command(game, run, data_dir)} ; or leave --data-dir unset to stream a subset "
        f"from the public bucket (ahead of a run: {stream_command(game, run, data_fraction)})"
    )
    if len(missing) == len(locations):
        raise DataError(f"no RL Unplugged Atari data for {game} run {run} in {data_dir} (no {missing[0]}); {fixes}")
    raise DataError(
        f"{missing[0]} is missing ({len(locations) - len(missing)} of {len(locations)} shards of {game} run {run} "
        f"are in {data_dir}); {fixes}"
    )


def load_atari(
    game: str,
    run: int,
    data_dir: str | os.PathLike | None,
    data_fraction: float,
    *,
    cache_dir: str | os.PathLike | None = None,
    num_shards: int | None = None,
    workers: int = 4,
    progress: bool = True,
    force: bool = False,
    process: tuple[int, int] = (0, 1),
    retry: RetryPolicy = DEFAULT_RETRY,
) -> tuple[Episodes, str]:
    """The episodes of `data_fraction` of one RL Unplugged Atari run, and where they came from.

    `data_dir`: local directory, gs:// or http(s):// URL; None: $ROSMO_ATARI_DATA_DIR, else the
    public bucket. `num_shards`: the shard count N in the file names; default the count found in a
    local directory, else the public one (50, or 49). The first call streams the shards (`workers`
    at a time) and caches the decoded subset under `cache_path(game, run, data_fraction,
    cache_dir)`; later calls read only the cache while it matches the request, its source is
    unchanged and its checksums hold (`force` rebuilds it). `process` = (p, P): read only shards
    p, p + P, p + 2P, ... (one process of P under jax.distributed; its own cache). `retry`: how
    remote reads retry (common/http_source.py). Returns (Episodes with uint8 observations
    [N, 84, 84], the shards' common prefix).
    Raises DataError with a one-line fix on any problem.
    """
    check_game(game)
    check_run(run)
    check_data_fraction(data_fraction)
    location = resolve_data_dir(data_dir)
    remote = is_remote(location)
    if num_shards is not None and num_shards < 1:
        raise DataError(f"num_shards must be positive, got {num_shards}")
    real_location = location if remote else check_data_dir(location)
    count, locations = select_shards(game, run, location, num_shards, process)
    source = join_location(location, f"{game}/run_{run}")
    key = {
        "format": CACHE_FORMAT,
        "game": game,
        "run": run,
        "data_fraction": float(data_fraction),
        "source": to_url(source) if remote else join_location(real_location, f"{game}/run_{run}"),
        "num_shards": count,
        "block_size": BLOCK_SIZE,
    }
    part, num_parts = process
    if num_parts > 1:
        key["process"] = [part, num_parts]
    path = cache_entry(game, run, data_fraction, cache_dir, process)
    _prepare_cache_dir(path.parent)
    from common.atari_env import num_actions

    action_count = num_actions(game)  # loads the ROM once, before the reader threads ask for the action count
    if not force:
        with _cache_lock(path, exclusive=False):
            state = _inspect_cache(path, key, action_count, workers)
        if state.episodes is not None:
            return state.episodes, source
    with _cache_lock(path, exclusive=True):
        state = _CacheState(None, None, False) if force else _inspect_cache(path, key, action_count, workers)
        if state.episodes is not None:  # another process built it while this one waited
            return state.episodes, source
        if state.problem:
            print(f"The cache {path} {state.problem}; rebuilding it from {source}.", flush=True)
        _remove_leftovers(path)
        try:
            if not remote:
                _check_local_shards(locations, game, run, location, data_fraction)
            start = time.time()
            print(f"Reading {fraction_tag(data_fraction)} of every shard of {source} into {path}.", flush=True)
            shards = _read_shards(locations, data_fraction, game, workers, progress, f"{game} run {run}", retry)
            _write_cache(path, shards, key, action_count, workers, progress, start)
        except DataError as error:
            if state.corrupt:
                raise DataError(f"the cache {path} {state.problem}, and rebuilding it failed: {error}") from None
            raise
        return load_cached(path, action_count, verify=False), source  # checksums were just taken from the files


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Args:
    game: str
    """RL Unplugged Atari game, e.g. Pong, MsPacman (the 46 names of GAMES)."""
    run: int = 1
    """Run of the behaviour DQN, 1..5."""
    fraction: float = 0.01
    """Fraction of every checkpoint shard to keep: its first episodes, within that share of its compressed bytes."""
    data_dir: str | None = None
    """Shard directory (local path, gs:// or http(s):// URL); default $ROSMO_ATARI_DATA_DIR, else the public bucket."""
    cache_dir: str | None = None
    """Cache root; default $ROSMO_DATA_DIR, else ./datasets. Arrays go to CACHE_DIR/atari/GAME_run_RUN_FRACTION/."""
    num_shards: int | None = None
    """Shard count N in the file names; default the one found locally, else 50 (49 for 3 games)."""
    workers: int = 4
    """Shards read at a time."""
    force: bool = False
    """Rebuild the cache even if it is there."""


def main(argv: Sequence[str] | None = None) -> int:
    import tyro

    args = tyro.cli(
        Args,
        args=argv,
        prog="python -m common.atari_data",
        description="Read a fraction of an RL Unplugged Atari run (streamed) into the local cache.",
    )
    start = time.time()
    try:
        episodes, source = load_atari(
            args.game,
            args.run,
            args.data_dir,
            args.fraction,
            cache_dir=args.cache_dir,
            num_shards=args.num_shards,
            workers=args.workers,
            force=args.force,
        )
    except (DataError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; the cache was not written", file=sys.stderr)
        return 130
    print(
        f"episodes {episodes.num_episodes}  transitions {episodes.num_transitions}  "
        f"mean clipped return {float(np.mean(episodes.episode_returns())):.2f}  seconds {time.time() - start:.1f}\n"
        f"{source} -> {cache_path(args.game, args.run, args.fraction, args.cache_dir)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
