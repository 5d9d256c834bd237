"""Loading one RL Unplugged Atari run: the shards of a data directory, read once into the cache, as `Episodes`.

`load_atari` is the one entry of the Atari device store (common/data.py calls it): it checks the request, selects
this process's shards (`select_shards`, also used by the streamed ring of common/atari/stream.py), and returns the
cached episodes, building the cache from the shards (common/atari/shards.py) when it is missing, stale or corrupt
(common/atari/cache.py). Command line (download and cache a subset): `python -m common.atari.loader --game Pong
--run 1 --fraction 0.01 [--data-dir D] [--cache-dir C] [--workers 4] [--force]`. This module holds no sampler,
environment or learning code; the minimal action set comes from common/atari/env.py.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import tyro

from common.atari.cache import CACHE_FORMAT, load_or_build
from common.atari.env import num_actions
from common.atari.games import (
    cache_entry,
    cache_path,
    check_game,
    check_run,
    fetch_command,
    fraction_tag,
    is_remote,
    join_location,
    num_checkpoints,
    resolve_data_dir,
    shard_name,
    stream_command,
    to_url,
)
from common.atari.http_source import DEFAULT_RETRY, RetryPolicy
from common.atari.shards import BLOCK_SIZE, ShardRead, os_error_text, read_shards
from common.episodes import Episodes, check_data_fraction
from common.errors import DataError

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
            raise DataError(f"the data directory {location} cannot be read ({os_error_text(error)})") from None
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
    remote reads retry (common/atari/http_source.py). Returns (Episodes with uint8 observations
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
    action_count = num_actions(game)  # loads the ROM once, before the reader threads ask for the action count

    def read() -> list[ShardRead]:
        if not remote:
            _check_local_shards(locations, game, run, location, data_fraction)
        print(f"Reading {fraction_tag(data_fraction)} of every shard of {source} into {path}.", flush=True)
        return read_shards(locations, data_fraction, game, workers, progress, f"{game} run {run}", retry)

    episodes = load_or_build(path, key, action_count, read, source, workers=workers, progress=progress, force=force)
    return episodes, source


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
    args = tyro.cli(
        Args,
        args=argv,
        prog="python -m common.atari.loader",
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
