"""RL Unplugged Atari shards: streamed, checked and decoded into episodes (no cache, no choice of shards).

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

A shard is a local file or a gs:// or http(s):// URL (read over HTTPS, no gcloud needed). Shards are streamed:
compressed bytes are read in fixed blocks, gunzipped and split into TFRecords on the fly, and reading stops as soon
as the fraction needed from the shard is in. Remote reads retry transient failures with backoff, resume dropped
connections with Range requests and refuse an object that changes while it is read
(common/atari/http_source.py). Data fraction: the official definition keeps the first
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
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import shlex
import struct
import threading
import zlib
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
from tqdm import tqdm

from common.atari.env import num_actions
from common.atari.games import FRAME_SHAPE, PUBLIC_DATA_DIR, is_remote, to_url
from common.atari.http_source import DEFAULT_RETRY, RetryPolicy, stream_blocks
from common.episodes import check_data_fraction
from common.errors import DataError
from common.tfrecord import masked_crc32c, parse_example

BLOCK_SIZE = 1 << 16  # compressed bytes per read; the fraction rule counts whole blocks

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


def local_version(stat: os.stat_result) -> dict:
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _local_blocks(path: str, block_size: int) -> tuple[dict, Iterator[bytes]]:
    """The file's size and modification time, and its bytes in `block_size` blocks (one open file,
    so a shard replaced meanwhile is read whole as it was; one changed in place is an error)."""
    f = open(path, "rb")
    version = local_version(os.fstat(f.fileno()))

    def blocks() -> Iterator[bytes]:
        with f:
            while True:
                block = f.read(block_size)
                if not block:
                    break
                yield block
            if local_version(os.fstat(f.fileno())) != version:
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
            raise _shard_error(shown, remote, f"cannot be read ({os_error_text(error)})") from None
    size = version["size"]
    if size == 0:
        raise _shard_error(shown, remote, "is empty (0 bytes)")
    budget = size if data_fraction >= 1.0 else math.ceil(data_fraction * size)
    action_count = None
    if game is not None:
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
        raise _shard_error(shown, remote, f"cannot be read ({os_error_text(error)})") from None
    except (ValueError, zlib.error, UnicodeDecodeError) as error:
        raise _shard_error(shown, remote, f"is corrupt (record {index}: {type(error).__name__}: {error})") from None
    finally:
        records.close()
    return ShardRead(shown, episodes, bytes_read, size, complete, version)


def os_error_text(error: OSError) -> str:
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
    import cv2  # OpenCV (a heavy import) loads only where frames are coded

    frame = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if frame is None or frame.dtype != np.uint8:
        return None
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    return frame if frame.shape == FRAME_SHAPE else None


def read_shards(
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


def decode_frames(
    kept: Sequence[tuple[str, RawEpisode]], offsets: np.ndarray, out: np.ndarray, workers: int, progress: bool
) -> None:
    """Decode every kept episode's PNGs into out[offsets[k]:offsets[k + 1]], `workers` episodes at a time."""

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
