"""RL Unplugged Atari: the 46 games, the shards' names and locations, the cache's place, and the commands that fetch
them.

The source of truth is the public episodic, ordered release,
`gs://rl_unplugged/atari_episodes_ordered/{Game}/run_{r}-{i:05d}-of-{N:05d}`: shard i holds
checkpoint i of the behaviour DQN's training (N = 50, 49 for Carnival, Gravitar and StarGunner).
A data directory is a local directory, a `gs://bucket/path` URL (read over HTTPS from
storage.googleapis.com, no gcloud needed) or an http(s):// URL; by default
$ROSMO_ATARI_DATA_DIR, else the public bucket. The decoded subsets are cached under
`{cache root}/atari/{Game}_run_{r}_{fraction}` (cache root: the `cache_dir` argument, else
$ROSMO_DATA_DIR, else ./datasets; common/atari/cache.py). This module reads and writes nothing.
"""

from __future__ import annotations

import os
import shlex
import urllib.parse
from pathlib import Path

from common.errors import DataError

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
    command = f"python -m common.atari.loader --game {game} --run {run} --fraction {fraction_tag(data_fraction)}"
    return command + (f" --data-dir {shlex.quote(data_dir)}" if data_dir else "")
