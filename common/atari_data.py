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
fraction needed from the shard is in. Data fraction: the official definition keeps the first
int(fraction * num_episodes) episodes of every checkpoint, but a shard's episode count is not
known without reading all of it, so this reader keeps, from every shard, the episodes whose
records are complete within the first `fraction` of the shard's compressed bytes (file size or
Content-Length), counted in whole 64 KiB blocks, and at least one episode. It applies the same
rule to local and remote shards, so both give the same episodes; it approximates the official
count (episodes within a checkpoint have similar lengths) and reads no more than it keeps. Each
record's length is checked against its CRC32C; the payload's integrity rests on gzip's own
checks (deflate errors, and the CRC32 of the whole stream when a shard is read to its end) and on
parsing the Example and its PNGs. The Example protobuf is decoded by a small wire-format reader
here, so reading imports no TensorFlow (nothing can take accelerator memory from JAX).

The decoded subset is cached as .npy arrays (observations uint8) under
`{cache root}/atari/{Game}_run_{r}_{fraction}/` (cache root: the `cache_dir` argument, else
$ROSMO_DATA_DIR, else ./datasets), with a meta.json naming its source; a later load with the same
game, run, fraction, source and shard count reads only the cache. Command line (download and
cache a subset): `python -m common.atari_data --game Pong --run 1 --fraction 0.01 [--data-dir D]
[--cache-dir C] [--workers 4] [--force]`. This module holds no sampler, environment or learning
code; the minimal action set comes from common/atari_env.py.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import http.client
import json
import math
import os
import shlex
import shutil
import struct
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np

from common.episodes import DataError, Episodes, check_data_fraction, validate_episodes

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
CACHE_FORMAT = 1
_FIELDS = ("observation", "action", "reward", "discount", "is_first", "is_last", "is_terminal")
_HTTP_TIMEOUT_S = 60
_HTTP_ATTEMPTS = 4


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


def fetch_command(game: str, run: int, data_dir: str) -> str:
    """The shell command that downloads one whole run into a local data directory."""
    target = shlex.quote(str(Path(data_dir) / game)) + "/"
    return f"mkdir -p {target} && gsutil -m cp '{PUBLIC_DATA_DIR}/{game}/run_{run}-*' {target}"


def stream_command(game: str, run: int, data_fraction: float, data_dir: str | None = None) -> str:
    """The shell command that reads a subset (streamed, no download of whole shards) into the cache."""
    command = f"python -m common.atari_data --game {game} --run {run} --fraction {fraction_tag(data_fraction)}"
    return command + (f" --data-dir {shlex.quote(data_dir)}" if data_dir else "")


# ----------------------------------------------------------------------------------------------
# TFRecord framing and the tf.train.Example wire format
# ----------------------------------------------------------------------------------------------


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum of TFRecord framing. Pure Python: meant for short inputs."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotate right by 15 bits, add a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of every field of one protobuf message."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("a field runs past the end of its message")
        yield field, wire, value


def _packed_varints(buf: memoryview) -> np.ndarray:
    """A packed repeated int64 field -> int64 array (vectorised; two's complement for negatives)."""
    raw = np.frombuffer(buf, np.uint8)
    if raw.size == 0 or raw.max() < 0x80:
        return raw.astype(np.int64)
    ends = np.flatnonzero(raw < 0x80)
    if ends.size == 0 or ends[-1] != raw.size - 1:
        raise ValueError("truncated packed varints")
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 10:
        raise ValueError("varint longer than 10 bytes")
    values = np.zeros(ends.size, np.uint64)
    for k in range(int(lengths.max())):
        sel = lengths > k
        values[sel] |= (raw[starts[sel] + k] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
    return values.view(np.int64)


def _feature_values(feature: memoryview) -> list | np.ndarray:
    """One tf.train.Feature: a list of byte strings, a float32 array or an int64 array."""
    kind, parts = None, []
    for field, wire, value in _fields(feature):
        if field not in (1, 2, 3) or wire != 2:
            continue
        kind = field
        for inner, inner_wire, item in _fields(value):
            if inner != 1:
                continue
            if field == 1 and inner_wire == 2:  # BytesList
                parts.append(item)
            elif field == 2 and inner_wire == 2:  # FloatList, packed
                if len(item) % 4:
                    raise ValueError("packed floats of a length not a multiple of 4")
                parts.append(np.frombuffer(item, "<f4"))
            elif field == 2 and inner_wire == 5:
                parts.append(np.frombuffer(item, "<f4"))
            elif field == 3 and inner_wire == 2:  # Int64List, packed
                parts.append(_packed_varints(item))
            elif field == 3 and inner_wire == 0:
                parts.append(np.asarray([item], np.uint64).view(np.int64))
            else:
                raise ValueError(f"wire type {inner_wire} in a feature list")
    if kind == 1 or kind is None:
        return parts
    dtype = np.float32 if kind == 2 else np.int64
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def parse_example(record: bytes | memoryview) -> dict[str, list | np.ndarray]:
    """A serialized tf.train.Example -> {feature name: list of bytes | float32 array | int64 array}.

    Byte strings are memoryviews into `record` (no copies). Raises ValueError on malformed input.
    """
    features: dict[str, list | np.ndarray] = {}
    for field, wire, value in _fields(memoryview(record)):
        if field != 1 or wire != 2:
            continue
        for entry_field, entry_wire, entry in _fields(value):
            if entry_field != 1 or entry_wire != 2:
                continue
            name, feature = None, memoryview(b"")
            for part, part_wire, part_value in _fields(entry):
                if part == 1 and part_wire == 2:
                    name = bytes(part_value).decode("utf-8")
                elif part == 2 and part_wire == 2:
                    feature = part_value
            if name is None:
                raise ValueError("a feature without a name")
            features[name] = _feature_values(feature)
    return features


# ----------------------------------------------------------------------------------------------
# Streaming a shard: compressed blocks -> gunzipped bytes -> TFRecords
# ----------------------------------------------------------------------------------------------


class _Truncated(Exception):
    """The compressed stream ended before its gzip trailer or inside a record."""


def _local_blocks(path: str, block_size: int) -> tuple[int, Iterator[bytes]]:
    size = os.path.getsize(path)

    def blocks() -> Iterator[bytes]:
        with open(path, "rb") as f:
            while True:
                block = f.read(block_size)
                if not block:
                    return
                yield block

    return size, blocks()


def _http_open(url: str, offset: int):
    """An HTTP response for `url`, from byte `offset` on (Range request) when offset > 0."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=_HTTP_TIMEOUT_S)


def _http_error(url: str, error: BaseException) -> DataError:
    if isinstance(error, urllib.error.HTTPError) and error.code == 404:
        return DataError(
            f"no shard at {url} (HTTP 404); check the data directory, the game, the run and the shard count"
        )
    if isinstance(error, urllib.error.HTTPError):
        return DataError(f"{url}: HTTP {error.code} {error.reason}; check the data directory and that it is public")
    reason = getattr(error, "reason", error)
    return DataError(
        f"cannot read {url} ({type(error).__name__}: {reason}); check the network, or download the shards "
        f"(gsutil -m cp) and pass their directory as --data-dir"
    )


def _http_blocks(url: str, block_size: int, retry_wait_s: float = 2.0) -> tuple[int, Iterator[bytes]]:
    """Content-Length and exact `block_size` blocks of a URL.

    A connection that drops mid-stream is reopened from the current offset with a Range request
    (giving up after _HTTP_ATTEMPTS failures in a row, waiting retry_wait_s, doubling, between
    them); a server that ignores the range and resends the whole file is read past the part
    already seen.
    """
    try:
        response = _http_open(url, 0)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise _http_error(url, error) from None
    length = response.headers.get("Content-Length")
    if length is None:
        response.close()
        raise DataError(f"{url}: the server sent no Content-Length, which the data-fraction rule needs")
    size = int(length)

    def blocks() -> Iterator[bytes]:
        nonlocal response
        offset, failures, skip, pending = 0, 0, 0, bytearray()
        try:
            while offset < size:
                try:
                    chunk = response.read(min(block_size, size - offset + skip))
                    if not chunk:
                        raise ConnectionError("the connection closed early")
                except (http.client.HTTPException, OSError) as error:
                    response.close()
                    failures += 1
                    if failures >= _HTTP_ATTEMPTS:
                        raise _http_error(url, error) from None
                    time.sleep(retry_wait_s * 2 ** (failures - 1))
                    try:
                        response = _http_open(url, offset)
                    except (urllib.error.URLError, http.client.HTTPException, OSError) as reopen_error:
                        raise _http_error(url, reopen_error) from None
                    skip = offset if response.status == 200 else 0  # the whole file again: pass over what we have
                    continue
                if skip:
                    dropped = min(skip, len(chunk))
                    skip, chunk = skip - dropped, chunk[dropped:]
                if chunk:
                    failures = 0  # progress: count failures afresh
                offset += len(chunk)
                pending += chunk
                while len(pending) >= block_size:
                    yield bytes(pending[:block_size])
                    del pending[:block_size]
            if pending:
                yield bytes(pending)
        finally:
            response.close()

    return size, blocks()


def _records(blocks: Iterator[bytes]) -> Iterator[tuple[bytes | None, int]]:
    """TFRecords of a gzip stream as they arrive: (record, compressed bytes read so far), and
    (None, bytes read) at the end of every block.

    Raises _Truncated at the end of the input if the stream or a record is incomplete, ValueError
    on a bad length checksum, zlib.error on bad compressed data.
    """
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    member_started = False
    buf, consumed = bytearray(), 0
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
            header = bytes(buf[pos : pos + 8])
            (length,) = struct.unpack("<Q", header)
            (header_crc,) = struct.unpack("<I", buf[pos + 8 : pos + 12])
            if masked_crc32c(header) != header_crc:
                raise ValueError("a record's length fails its CRC32C check")
            if len(buf) - pos < 12 + length + 4:
                break
            yield bytes(buf[pos + 12 : pos + 12 + length]), consumed
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


class ShardRead(NamedTuple):
    location: str
    episodes: list  # [RawEpisode], in stored order
    bytes_read: int  # compressed bytes read
    size: int  # compressed bytes in the shard
    complete: bool  # read to the end of the gzip stream


class _ActionError(ValueError):
    """An action outside the game's minimal action set."""


def _raw_episode(features: dict, action_count: int | None, game: str | None) -> RawEpisode:
    for name in ("observations", "actions", "clipped_rewards", "discounts"):
        if name not in features:
            raise ValueError(f"an episode has no '{name}' feature")
    pngs = features["observations"]
    action, reward, discount = features["actions"], features["clipped_rewards"], features["discounts"]
    if not isinstance(pngs, list) or not all(isinstance(x, np.ndarray) for x in (action, reward, discount)):
        raise ValueError("a feature has the wrong type")
    if not len(pngs) == len(action) == len(reward) == len(discount):
        raise ValueError(
            f"an episode has {len(pngs)} observations, {len(action)} actions, {len(reward)} rewards "
            f"and {len(discount)} discounts"
        )
    if action_count is not None and len(action) and (action.min() < 0 or action.max() >= action_count):
        bad = int(action.max() if action.max() >= action_count else action.min())
        raise _ActionError(f"action {bad} is outside {game}'s minimal action set of {action_count} actions (ALE)")

    def scalar(name: str) -> int:
        value = features.get(name)
        return int(value[0]) if isinstance(value, np.ndarray) and value.size else -1

    return RawEpisode(scalar("checkpoint_idx"), scalar("episode_idx"), pngs, action, reward, discount)


def read_shard(
    location: str,
    data_fraction: float = 1.0,
    game: str | None = None,
    block_size: int = BLOCK_SIZE,
    should_stop: Callable[[], bool] = lambda: False,
) -> ShardRead:
    """Stream one shard (local path or URL) and keep the episodes the data-fraction rule selects.

    With data_fraction < 1, reading stops after the first block at which the compressed bytes read
    reach ceil(fraction * size) and at least one episode is complete; every episode complete by
    then is kept. With `game`, actions are checked against its minimal action set.
    Raises DataError naming the shard if it is missing, truncated or corrupt.
    """
    check_data_fraction(data_fraction)
    remote = is_remote(location)
    shown = to_url(location) if remote else location
    if remote:
        size, blocks = _http_blocks(to_url(location), block_size)
    else:
        if not os.path.isfile(location):
            raise DataError(f"no shard at {location}")
        size, blocks = _local_blocks(location, block_size)
    if size == 0:
        raise _shard_error(shown, remote, "is empty (0 bytes)")
    budget = size if data_fraction >= 1.0 else math.ceil(data_fraction * size)
    action_count = None
    if game is not None:
        from common.atari_env import num_actions

        action_count = num_actions(game)
    episodes, bytes_read, complete = [], 0, False
    records = _records(blocks)
    try:
        for record, bytes_read in records:
            if record is not None:
                episodes.append(_raw_episode(parse_example(record), action_count, game))
            elif should_stop() or (data_fraction < 1.0 and bytes_read >= budget and episodes):
                break
        else:
            complete = True
    except DataError:
        raise
    except _Truncated:
        raise _shard_error(shown, remote, "is truncated: the compressed stream ends early") from None
    except _ActionError as error:
        raise DataError(f"{shown}: {error}; is this {game} data?") from None
    except (ValueError, zlib.error, UnicodeDecodeError) as error:
        raise _shard_error(shown, remote, f"is corrupt ({type(error).__name__}: {error})") from None
    finally:
        records.close()
    return ShardRead(shown, episodes, bytes_read, size, complete)


def _shard_error(location: str, remote: bool, what: str) -> DataError:
    if remote:
        return DataError(f"{location} {what}; run again (a dropped connection), or download it with gsutil cp")
    return DataError(
        f"{location} {what}; delete it and download it again with: "
        f"gsutil cp {_public_twin(location)} {shlex.quote(location)}"
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
    locations: Sequence[str], data_fraction: float, game: str, workers: int, progress: bool, desc: str
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
            pool.submit(read_shard, location, data_fraction, game, BLOCK_SIZE, stop.is_set) for location in locations
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


def _write_cache(
    path: Path, shards: Sequence[ShardRead], meta: dict, workers: int, progress: bool, start: float
) -> None:
    """Decode the kept episodes into .npy arrays in a fresh directory, then move it to `path`."""
    kept = [(shard.location, ep) for shard in shards for ep in shard.episodes if len(ep.action) >= 2]
    dropped = sum(len(shard.episodes) for shard in shards) - len(kept)
    if not kept:
        raise DataError(
            f"{meta['source']}: the selected data holds no episode with a transition; use a larger fraction"
        )
    lengths = np.asarray([len(ep.action) for _, ep in kept])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    num_steps = int(offsets[-1])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.parent / f".{path.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        observation = np.lib.format.open_memmap(
            partial / "observation.npy", mode="w+", dtype=np.uint8, shape=(num_steps, *FRAME_SHAPE)
        )
        _decode_frames(kept, offsets, observation, workers, progress)
        observation.flush()
        steps = [episode_steps(ep) for _, ep in kept]
        fields = {name: np.concatenate([s[name] for s in steps]) for name in _FIELDS if name != "observation"}
        episodes = Episodes(observation=observation, **fields)
        validate_episodes(episodes, meta["source"])
        for name, value in fields.items():
            np.save(partial / f"{name}.npy", value)
        meta = {
            **meta,
            "episodes": len(kept),
            "steps": num_steps,
            "transitions": num_steps - len(kept),
            "dropped_single_step_episodes": dropped,
            "mean_clipped_return": float(np.mean(episodes.episode_returns())),
            "seconds": round(time.time() - start, 1),
            "shards": [
                {
                    "location": shard.location,
                    "size": shard.size,
                    "bytes_read": shard.bytes_read,
                    "episodes": len(shard.episodes),
                    "complete": shard.complete,
                }
                for shard in shards
            ],
        }
        (partial / "meta.json").write_text(json.dumps(meta, indent=1))
        if path.exists():
            shutil.rmtree(path)
        os.replace(partial, path)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def read_cache_meta(path: str | os.PathLike) -> dict | None:
    """The meta.json of a cache directory, or None if there is no complete cache there."""
    try:
        return json.loads((Path(path) / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def load_cached(path: str | os.PathLike) -> Episodes:
    """The Episodes of a cache directory (observations memory-mapped, read-only)."""
    path = Path(path)
    try:
        arrays = {
            name: np.load(path / f"{name}.npy", mmap_mode="r" if name == "observation" else None) for name in _FIELDS
        }
        episodes = Episodes(**arrays)
        validate_episodes(episodes, str(path))
    except (OSError, ValueError) as error:
        what = f"{type(error).__name__}: {error}"
        raise DataError(f"the cache {path} is unreadable ({what}); delete it and load again") from None
    return episodes


def _local_shard_count(location: str, game: str, run: int) -> int | None:
    """N of the shards run_{run}-*-of-N present in a local data directory, if they agree on one."""
    counts = set()
    for path in (Path(location) / game).glob(f"run_{run}-*-of-*"):
        tail = path.name.rsplit("-of-", 1)[-1]
        if tail.isdigit():
            counts.add(int(tail))
    return counts.pop() if len(counts) == 1 else None


def _check_local_shards(locations: Sequence[str], game: str, run: int, data_dir: str, data_fraction: float) -> None:
    missing = [location for location in locations if not os.path.isfile(location)]
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
) -> tuple[Episodes, str]:
    """The episodes of `data_fraction` of one RL Unplugged Atari run, and where they came from.

    `data_dir`: local directory, gs:// or http(s):// URL; None: $ROSMO_ATARI_DATA_DIR, else the
    public bucket. `num_shards`: the shard count N in the file names; default the count found in a
    local directory, else the public one (50, or 49). The first call streams the shards (`workers`
    at a time) and caches the decoded subset under `cache_path(game, run, data_fraction,
    cache_dir)`; later calls with the same source read only the cache (`force` rebuilds it).
    `process` = (p, P): read only shards p, p + P, p + 2P, ... (one process of P under
    jax.distributed; its own cache). Returns (Episodes with uint8 observations [N, 84, 84], the
    shards' common prefix).
    Raises DataError with a one-line fix on any problem.
    """
    check_game(game)
    check_run(run)
    check_data_fraction(data_fraction)
    location = resolve_data_dir(data_dir)
    remote = is_remote(location)
    if num_shards is not None and num_shards < 1:
        raise DataError(f"num_shards must be positive, got {num_shards}")
    count = num_shards or (None if remote else _local_shard_count(location, game, run)) or num_checkpoints(game)
    source = join_location(location, f"{game}/run_{run}")
    key = {
        "format": CACHE_FORMAT,
        "game": game,
        "run": run,
        "data_fraction": float(data_fraction),
        "source": to_url(source) if remote else str(Path(source).resolve()),
        "num_shards": count,
        "block_size": BLOCK_SIZE,
    }
    part, num_parts = process
    if not 0 <= part < num_parts:
        raise DataError(f"process {part} is not one of {num_parts} processes")
    if num_parts > count:
        raise DataError(f"{count} shards of {game} run {run} cannot be split over {num_parts} processes; use at most {count}")
    if num_parts > 1:
        key["process"] = [part, num_parts]
    path = cache_path(game, run, data_fraction, cache_dir)
    if num_parts > 1:
        path = path.with_name(f"{path.name}_part{part}of{num_parts}")
    meta = read_cache_meta(path)
    if meta is not None and not force:
        if all(meta.get(name) == value for name, value in key.items()):
            return load_cached(path), source
        print(f"The cache {path} holds other data ({meta.get('source')}); rebuilding it from {source}.", flush=True)
    locations = [join_location(location, shard_name(game, run, i, count)) for i in range(part, count, num_parts)]
    if not remote:
        _check_local_shards(locations, game, run, location, data_fraction)
    from common.atari_env import num_actions

    num_actions(game)  # load the ROM once, before the reader threads ask for the action count
    start = time.time()
    print(f"Reading {fraction_tag(data_fraction)} of every shard of {source} into {path}.", flush=True)
    desc = f"{game} run {run}"
    shards = _read_shards(locations, data_fraction, game, workers, progress, desc)
    _write_cache(path, shards, key, workers, progress, start)
    return load_cached(path), source


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
