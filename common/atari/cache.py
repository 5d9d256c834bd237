"""The cache of decoded RL Unplugged Atari subsets: versions behind a link, a manifest with checksums, one builder
at a time.

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
error.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

import google_crc32c
import numpy as np

from common.atari.games import CACHE_ROOT_ENV_VAR, FRAME_SHAPE, is_remote
from common.atari.http_source import RetryPolicy, object_version
from common.atari.shards import ShardRead, decode_frames, episode_steps, local_version, os_error_text
from common.episodes import Episodes, check_values, validate_episodes
from common.errors import DataError

CACHE_FORMAT = 2
MANIFEST = "manifest.json"
_FIELDS = ("observation", "action", "reward", "discount", "is_first", "is_last", "is_terminal")
_STEP_BYTES = FRAME_SHAPE[0] * FRAME_SHAPE[1] + 4 + 4 + 4 + 1 + 1 + 1  # cache bytes per step, all arrays
_CACHE_SLACK_BYTES = 1 << 20  # .npy headers and the manifest
_CHECKSUM_CHUNK = 1 << 24
# Checking that a remote source is unchanged before using its cache: quick, and on failure the cache is used.
_FRESHNESS_RETRY = RetryPolicy(attempts=2, base_delay_s=0.5, max_delay_s=1.0, deadline_s=10.0, timeout_s=10.0)

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
            f"cannot lock the cache {path} for writing ({os_error_text(error)}); "
            f"set ${CACHE_ROOT_ENV_VAR} to a writable directory"
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
            return f"{file.name} cannot be read ({os_error_text(error)})"
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
                now = local_version(os.stat(location))
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
            "python -m common.atari.loader) to a directory on another disk, or use a smaller --data-fraction"
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
        decode_frames(kept, offsets, observation, workers, progress)
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
            f"writing the cache {path} failed ({os_error_text(error)}); check the disk (space, permissions) or set "
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
            raise DataError(f"cannot create the cache directory {directory} ({os_error_text(error)})") from None
    blocking = next((p for p in (directory, *directory.parents) if p.exists() and not p.is_dir()), directory)
    raise DataError(
        f"the cache directory {directory} cannot be made: {blocking} is a file, not a directory; pass a directory "
        f"as --cache-dir or ${CACHE_ROOT_ENV_VAR}"
    )


# ----------------------------------------------------------------------------------------------


def load_or_build(
    path: Path,
    key: dict,
    num_actions: int,
    read: Callable[[], Sequence[ShardRead]],
    source: str,
    *,
    workers: int = 4,
    progress: bool = True,
    force: bool = False,
) -> Episodes:
    """The episodes cached at `path` when its manifest matches the request `key`, its source is unchanged and its
    checksums hold; else (or with `force`) the shards `read()` returns, decoded into a new version of the cache
    first. One process builds at a time; the others wait and read what it built. `source` names the data in
    messages. DataError with a one-line fix on any problem."""
    _prepare_cache_dir(path.parent)
    if not force:
        with _cache_lock(path, exclusive=False):
            state = _inspect_cache(path, key, num_actions, workers)
        if state.episodes is not None:
            return state.episodes
    with _cache_lock(path, exclusive=True):
        state = _CacheState(None, None, False) if force else _inspect_cache(path, key, num_actions, workers)
        if state.episodes is not None:  # another process built it while this one waited
            return state.episodes
        if state.problem:
            print(f"The cache {path} {state.problem}; rebuilding it from {source}.", flush=True)
        _remove_leftovers(path)
        try:
            start = time.time()
            _write_cache(path, read(), key, num_actions, workers, progress, start)
        except DataError as error:
            if state.corrupt:
                raise DataError(f"the cache {path} {state.problem}, and rebuilding it failed: {error}") from None
            raise
        return load_cached(path, num_actions, verify=False)  # checksums were just taken from the files
