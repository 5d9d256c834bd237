"""BSuite episodic datasets (paper Appendix E): generation with an online DQN agent, storage as
RLDS episodes in a TFDS builder directory, and reading back as flat `Episodes`. A dataset is every
episode of one training run of a DQN agent on the real bsuite `catch`, `cartpole` or
`mountain_car` environment, where with probability `noise` the agent's action is replaced by a
uniformly random one before it is executed. `noise_in` says where that happens: "environment" (the
paper's, Appendix E: the environment's transitions become stochastic and the agent's own action is
the one recorded and learned from, as envlogger records a noisy environment) or "behaviour" (the
agent's action is replaced inside the agent, so the executed action is recorded and the recorded
transitions stay deterministic: noisier behaviour, not stochastic dynamics). The agent, the bsuite
baseline DQN, and the loop that records its episodes are common/bsuite/behaviour.py. Everything follows from one
seed. A dataset lives in `{data_root}/bsuite/{env_id}_{noise}/bsuite_{env_id}/1.0.0`
(`builder_dir`; a dataset of another episode count, seed or noise kind gets `_episodes{N}`/`_seed{S}`/
`_behaviournoise` in its directory name, so it never stands in for the standard one), one split
"train", with the generation settings as JSON in its description (checked on reading: data of the
other noise kind is refused); the reader also takes the officially released ROSMO BSuite
directories. The files are the ones TFDS writes and reads, written and read by common/bsuite/tfds_files.py
without TensorFlow. The module holds no sampler or evaluation. Command line:
`python -m common.bsuite.datasets --env-id catch --noise 0.1 [--noise-in environment|behaviour] [--data-dir DIR]
[--seed 0] [--num-episodes N] [--force]`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import tyro

from common.bsuite import tfds_files
from common.bsuite.behaviour import DQN_CONFIGS, DQNConfig, run_behaviour_agent
from common.bsuite.env import BSUITE_ENVS, NOISE_IN, check_env_id, check_noise_in, make_env  # noqa: F401 - interface
from common.episodes import (
    DataError,
    Episodes,
    check_data_fraction,
    check_values,
    subset_episode_indices,
    take_episodes,
    validate_episodes,
)

NOISE_LEVELS = (0.0, 0.1, 0.3, 0.5)
NUM_EPISODES = {"catch": 2000, "cartpole": 1000, "mountain_car": 500}
DATASET_VERSION = "1.0.0"
DEFAULT_DATA_ROOT = "datasets"
DATA_DIR_ENV_VAR = "ROSMO_DATA_DIR"
# Rough generation time of a full dataset on two CPU cores, for the message shown before it starts.
# On an idle to a busy 2-core CPU (catch took 44 s and cartpole 10 min 46 s with the machine loaded).
ROUGH_GENERATION_TIME = {"catch": "15 to 45 seconds", "cartpole": "2 to 11 minutes", "mountain_car": "40 seconds"}
_REQUIRED_STEP_FIELDS = ("observation", "action", "reward", "is_first", "is_last")


# ----------------------------------------------------------------------------------------------
# Names, paths and checks
# ----------------------------------------------------------------------------------------------


def check_noise(noise: float) -> None:
    """The paper's levels are NOISE_LEVELS; any other probability in [0, 1] is allowed too."""
    if noise in NOISE_LEVELS:
        return
    if not (0.0 <= noise <= 1.0):
        raise DataError(f"--noise must be a probability in [0, 1] (the paper uses {NOISE_LEVELS}), got {noise}")


def resolve_data_root(data_dir: str | os.PathLike | None) -> Path:
    """The --data-dir flag, else $ROSMO_DATA_DIR, else ./datasets."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV_VAR) or DEFAULT_DATA_ROOT
    return Path(chosen).expanduser()


def noise_tag(noise: float) -> str:
    return repr(float(noise))


def dataset_name(
    env_id: str, noise: float, num_episodes: int | None = None, seed: int = 0, noise_in: str = "environment"
) -> str:
    """The directory name of a dataset, recording its generator settings: {env}_{noise} for the
    paper's episode count, seed 0 and noise in the environment, else with `_episodes{N}`, `_seed{S}`
    and/or `_behaviournoise` appended, so a small, differently seeded or behaviour-noise dataset never
    takes the standard one's place (at noise 0 the two noise kinds are the same data: no suffix)."""
    name = f"{env_id}_{noise_tag(noise)}"
    if num_episodes is not None and int(num_episodes) != NUM_EPISODES[env_id]:
        name += f"_episodes{int(num_episodes)}"
    name += f"_seed{int(seed)}" if seed else ""
    return name + ("_behaviournoise" if noise_in == "behaviour" and noise > 0 else "")


_NAME_PATTERN = re.compile(
    rf"^({'|'.join(BSUITE_ENVS)})_([0-9.eE+-]+?)(?:_episodes([0-9]+))?(?:_seed([0-9]+))?(_behaviournoise)?$"
)


def parse_dataset_name(name: str) -> dict | None:
    """{env_id, noise, num_episodes, seed, noise_in} of a directory named by `dataset_name`, else None."""
    match = _NAME_PATTERN.match(name)
    if not match:
        return None
    try:
        noise = float(match.group(2))
    except ValueError:
        return None
    episodes = int(match.group(3)) if match.group(3) else None
    noise_in = "behaviour" if match.group(5) else "environment"
    return {
        "env_id": match.group(1),
        "noise": noise,
        "num_episodes": episodes,
        "seed": int(match.group(4) or 0),
        "noise_in": noise_in,
    }


def dataset_dir(
    data_root: str | os.PathLike,
    env_id: str,
    noise: float,
    num_episodes: int | None = None,
    seed: int = 0,
    noise_in: str = "environment",
) -> Path:
    """The directory that holds one generated dataset (and nothing else): {root}/bsuite/{dataset_name}."""
    return Path(data_root) / "bsuite" / dataset_name(env_id, noise, num_episodes, seed, noise_in)


def builder_dir(
    data_root: str | os.PathLike,
    env_id: str,
    noise: float,
    num_episodes: int | None = None,
    seed: int = 0,
    noise_in: str = "environment",
) -> Path:
    """The TFDS builder directory (the one holding dataset_info.json) of a generated dataset."""
    return dataset_dir(data_root, env_id, noise, num_episodes, seed, noise_in) / f"bsuite_{env_id}" / DATASET_VERSION


def generate_command(
    env_id: str,
    noise: float,
    data_root: str | os.PathLike,
    force: bool = False,
    num_episodes: int | None = None,
    seed: int = 0,
    noise_in: str = "environment",
) -> str:
    """The shell command that (re)generates a dataset."""
    command = f"python -m common.bsuite.datasets --env-id {env_id} --noise {noise_tag(noise)}"
    command += " --noise-in behaviour" if noise_in == "behaviour" and noise > 0 else ""
    command += f" --data-dir {shlex.quote(str(data_root))}"
    if num_episodes is not None and int(num_episodes) != NUM_EPISODES[env_id]:
        command += f" --num-episodes {int(num_episodes)}"
    command += f" --seed {int(seed)}" if seed else ""
    return command + (" --force" if force else "")


def _command_for_path(path: Path, force: bool, fallback: str | None = None) -> str:
    """The generation command for a directory laid out as `builder_dir` lays it out, else `fallback` (the command
    of the run's own settings), else a template.

    It carries --force when asked or when the dataset's directory exists (a partial dataset).
    """
    for parent in (path, *path.parents):
        settings = parse_dataset_name(parent.name)
        if settings and parent.parent.name == "bsuite":
            return generate_command(
                settings["env_id"],
                settings["noise"],
                parent.parent.parent,
                force or parent.exists(),
                settings["num_episodes"],
                settings["seed"],
                settings["noise_in"],
            )
    if fallback is not None:
        return fallback
    command = "python -m common.bsuite.datasets --env-id ENV_ID --noise NOISE --data-dir DATA_ROOT"
    return command + (" --force" if force else "")


def _corrupt_error(path: Path, reason: str, fallback: str | None = None) -> DataError:
    return DataError(
        f"{path} does not read as a TFDS dataset ({reason}); delete it and regenerate it with: "
        f"{_command_for_path(path, True, fallback)}"
    )


def _one_line(error: BaseException, limit: int = 200) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    text = f"{type(error).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------------------------
# TFDS storage
# ----------------------------------------------------------------------------------------------


def rlds_features(obs_shape: Sequence[int]) -> dict:
    """The TFDS features of one RLDS episode (common/bsuite/tfds_files.py)."""
    return {
        "episode_id": tfds_files.Tensor((), "int64"),
        "episode_return": tfds_files.Tensor((), "float32"),
        "steps": tfds_files.Sequence(
            {
                "observation": tfds_files.Tensor(tuple(obs_shape), "float32"),
                "action": tfds_files.Tensor((), "int64"),
                "reward": tfds_files.Tensor((), "float32"),
                "discount": tfds_files.Tensor((), "float32"),
                "is_first": tfds_files.Tensor((), "bool"),
                "is_last": tfds_files.Tensor((), "bool"),
                "is_terminal": tfds_files.Tensor((), "bool"),
            }
        ),
    }


def write_rlds(
    episodes: Sequence[dict[str, np.ndarray]], obs_shape: Sequence[int], target: Path, name: str, description: str
) -> None:
    """Write the episodes as a TFDS dataset whose builder directory becomes `target`/{name}/1.0.0, the files
    TFDS's `store_as_tfds_dataset` writes (common/bsuite/tfds_files.py), one split "train" in recording order.

    The files are written into a temporary sibling of `target` that is renamed to `target` only
    when complete, so an interrupted write leaves nothing at `target`. `target` must not exist.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:

        def examples():
            for episode_id, steps in enumerate(episodes):
                episode_return = np.float32(np.sum(steps["reward"], dtype=np.float64))
                yield {"episode_id": episode_id, "episode_return": episode_return, "steps": steps}

        features = rlds_features(obs_shape)
        tfds_files.write_builder_dir(
            scratch / name / DATASET_VERSION, name, DATASET_VERSION, features, {"train": examples()}, description
        )
        try:
            scratch.rename(target)
        except OSError as error:
            raise DataError(f"could not move the new dataset into {target} ({_one_line(error)})") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def generate(
    env_id: str,
    noise: float,
    data_root: str | os.PathLike,
    seed: int = 0,
    num_episodes: int | None = None,
    progress: bool = True,
    force: bool = False,
    config: DQNConfig | None = None,
    noise_in: str = "environment",
) -> dict:
    """Generate one dataset under `data_root`; returns {episodes, transitions, mean_return, seconds, path}.

    Refuses (DataError) to replace an existing dataset unless `force`. `config` defaults to
    DQN_CONFIGS[env_id]; `noise_in` as in `run_behaviour_agent`.
    """
    check_env_id(env_id)
    check_noise(noise)
    check_noise_in(noise_in)
    noise_in = noise_in if noise > 0 else "environment"  # without noise the two kinds are the same data
    config = DQN_CONFIGS[env_id] if config is None else config
    num_episodes = NUM_EPISODES[env_id] if num_episodes is None else int(num_episodes)
    if num_episodes < 1:
        raise DataError(f"--num-episodes must be at least 1, got {num_episodes}")
    target = dataset_dir(data_root, env_id, noise, num_episodes, seed, noise_in)
    if target.exists() and not force:
        raise DataError(f"{target} already exists; pass --force to replace it")
    start = time.perf_counter()
    episodes = list(run_behaviour_agent(env_id, noise, seed, num_episodes, config, progress, noise_in))
    settings = {
        "env_id": env_id,
        "noise": float(noise),
        "noise_in": noise_in,
        "seed": int(seed),
        "num_episodes": num_episodes,
        "agent": "dqn",
        "agent_config": config._asdict(),
        "environment": f"bsuite {env_id} (bsuite package defaults)",
    }
    recorded = "the agent's action is recorded" if noise_in == "environment" else "the executed action is recorded"
    description = (
        f"BSuite {env_id}, every episode of the training of an online DQN agent; with probability "
        f"{noise_tag(noise)} the {noise_in} replaced the agent's action by a uniformly random one ({recorded}). "
        f"RLDS steps. {SETTINGS_PREFIX}{json.dumps(settings, sort_keys=True)}"
    )
    obs_shape = episodes[0]["observation"].shape[1:]
    if force and target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        try:
            write_rlds(episodes, obs_shape, target, f"bsuite_{env_id}", description)
        except BaseException:
            old.rename(target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        write_rlds(episodes, obs_shape, target, f"bsuite_{env_id}", description)
    returns = np.asarray([np.sum(steps["reward"], dtype=np.float64) for steps in episodes])
    return {
        "episodes": num_episodes,
        "transitions": int(sum(len(steps["action"]) - 1 for steps in episodes)),
        "mean_return": float(np.mean(returns)),
        "seconds": time.perf_counter() - start,
        "path": builder_dir(data_root, env_id, noise, num_episodes, seed, noise_in),
    }


SETTINGS_PREFIX = "Generation settings: "


def read_settings(path: Path) -> dict | None:
    """The generation settings a dataset written by `generate` keeps in its description (dataset_info.json of
    the builder directory `path`), else None (an official download, or an unreadable file)."""
    try:
        description = json.loads((Path(path) / "dataset_info.json").read_text()).get("description", "")
        return json.loads(description.split(SETTINGS_PREFIX, 1)[1]) if SETTINGS_PREFIX in description else None
    except (OSError, ValueError, AttributeError):
        return None


def check_noise_kind(path: Path, noise_in: str) -> None:
    """A one-line DataError when the noisy dataset at `path` (a builder directory) has its noise where this run
    does not ask for it; datasets without settings (official downloads) and noise-free ones pass."""
    settings = read_settings(path)
    if not settings or not settings.get("noise"):
        return
    stored = settings.get("noise_in", "behaviour")  # the generator recorded the executed action before the option
    if stored != noise_in:
        what = f"{path} holds {settings.get('env_id', '?')} data with noise {noise_tag(settings['noise'])} in the {stored}"
        named = next((d for d in path.parents if parse_dataset_name(d.name) and d.parent.name == "bsuite"), None)
        if named is not None and parse_dataset_name(named.name)["noise_in"] == noise_in:  # made before the option
            raise DataError(
                f"{what} (an older generator's), but its name and this run say in the {noise_in}; keep it as "
                f"{named.name}_behaviournoise (read with --noise-in behaviour) or regenerate it with: "
                f"{_command_for_path(path, True)}"
            )
        raise DataError(f"{what}, but this run asks for the noise in the {noise_in}; pass --noise-in {stored}")


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def _read_steps(path: Path) -> list[dict[str, np.ndarray]]:
    """Per-episode step arrays of every episode, in recording order."""
    return [episode["steps"] for episode in tfds_files.read_examples(path)]


def _assemble(steps: list[dict[str, np.ndarray]], path: Path) -> Episodes:
    """Concatenate per-episode step arrays into Episodes, filling in fields the data lacks."""
    missing = [name for name in _REQUIRED_STEP_FIELDS if name not in steps[0]]
    if missing:
        raise DataError(f"{path}: the steps lack the field(s) {', '.join(missing)}; this is not an RLDS dataset")

    def cat(name, dtype):
        return np.concatenate([np.asarray(episode[name]) for episode in steps]).astype(dtype)

    is_first = cat("is_first", bool)
    is_last = cat("is_last", bool)
    action = cat("action", np.int32)
    reward = cat("reward", np.float32)
    observation = cat("observation", np.float32)
    if "discount" in steps[0]:
        discount = cat("discount", np.float32)
    else:
        discount = np.ones_like(reward)
    if "is_terminal" in steps[0]:
        is_terminal = cat("is_terminal", bool) & is_last
    elif "discount" in steps[0]:
        # The discount after the final action is 0 exactly when the episode terminated.
        last = np.flatnonzero(is_last)
        is_terminal = np.zeros_like(is_last)
        is_terminal[last] = (last > 0) & (discount[np.maximum(last - 1, 0)] == 0.0)
    else:
        is_terminal = is_last.copy()  # all three bsuite environments end by termination
    if "discount" not in steps[0]:
        last = np.flatnonzero(is_last & is_terminal)
        discount[last[last > 0] - 1] = 0.0
    # The last step of an episode carries padding only.
    action[is_last] = 0
    reward[is_last] = 0.0
    discount[is_last] = 0.0
    episodes = Episodes(observation, action, reward, discount, is_first, is_last, is_terminal)
    try:
        validate_episodes(episodes, "the episodes")
    except ValueError as error:
        raise _corrupt_error(path, str(error)) from None
    check_values(episodes, str(path), num_actions=3)  # catch, cartpole and mountain_car have 3 actions each
    return episodes


def read_episodes(path: str | os.PathLike, data_fraction: float = 1.0, regenerate: str | None = None) -> Episodes:
    """Read a TFDS builder directory of RLDS episodes (ours or an official ROSMO BSuite one).

    Keeps the episodes `subset_episode_indices(num_episodes, data_fraction)` in recording order.
    Missing fields are derived: without `is_terminal` an episode counts as terminated when the
    discount after its final action is 0, or, without `discount` either, always (every bsuite
    environment ends by termination); without `discount` it is 1 after every action except a
    terminating final one (0). The last step of every episode is padding (action, reward and
    discount set to 0). Raises DataError with a one-line fix for a missing or unreadable directory.
    The records are decoded by common/bsuite/tfds_files.py (no TensorFlow; under a second for the largest
    dataset), their CRC32C checked on every read.
    """
    check_data_fraction(data_fraction)
    path = Path(path)
    if not path.exists():
        raise DataError(f"no BSuite dataset at {path}; create it with: {_command_for_path(path, False, regenerate)}")
    if not (path / "dataset_info.json").is_file():
        found = sorted(path.glob("*/*/dataset_info.json")) if path.is_dir() else []
        if found:
            raise DataError(f"{path} is not a TFDS builder directory; did you mean {found[0].parent}?")
        raise _corrupt_error(path, "no dataset_info.json", regenerate)
    episodes = _read_records(path, regenerate)
    keep = subset_episode_indices(episodes.num_episodes, data_fraction)
    return episodes if len(keep) == episodes.num_episodes else take_episodes(episodes, keep)


def _read_records(path: Path, regenerate: str | None = None) -> Episodes:
    """Every episode of the builder directory `path`, decoded (common/bsuite/tfds_files.py) and assembled."""
    try:
        info = tfds_files.read_info(path)
        if "steps" not in tfds_files.read_features(path, info):
            raise DataError(f"{path}: the episodes have no 'steps' feature; this is not an RLDS dataset")
        num_episodes = tfds_files.num_examples(path, info)
        if num_episodes == 0:
            raise _corrupt_error(path, "it holds no episodes", regenerate)
        steps = _read_steps(path)
    except DataError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as error:  # unreadable, truncated or of another layout
        raise _corrupt_error(path, _one_line(error), regenerate) from None
    if len(steps) != num_episodes:
        raise _corrupt_error(path, f"expected {num_episodes} episodes, read {len(steps)}", regenerate)
    return _assemble(steps, path)


def load_bsuite(
    env_id: str,
    noise: float,
    data_dir: str | os.PathLike | None = None,
    data_fraction: float = 1.0,
    generate_if_missing: bool = True,
    generate_data: bool = False,
    noise_in: str = "environment",
) -> tuple[Episodes, Path]:
    """The episodes of a BSuite dataset and the builder directory they came from.

    `data_dir` may be a builder directory (one holding dataset_info.json, e.g. an official
    download), a dataset directory as `dataset_dir` names it (e.g. a small test dataset,
    `{root}/bsuite/catch_0.0_episodes60`), or a data root (see resolve_data_root) where the
    standard dataset of `env_id` and `noise` is read, generated first when missing and
    `generate_if_missing`. An explicit `data_dir` must exist unless `generate_data` (so a
    mistyped path is an error, not a new dataset) and must be a directory; $ROSMO_DATA_DIR and
    the default ./datasets are created when needed (both may also name a dataset directory).
    `noise_in` is where the data's noise acts (see `run_behaviour_agent`); a dataset whose settings
    say otherwise is refused with a one-line DataError.
    """
    check_data_fraction(data_fraction)
    check_env_id(env_id)
    check_noise(noise)
    check_noise_in(noise_in)
    noise_in = noise_in if noise > 0 else "environment"
    root = resolve_data_root(data_dir)
    if root.is_file():
        raise DataError(f"--data-dir {root} is a file; pass a directory (a data root or a dataset directory)")
    if data_dir is not None and not root.is_dir() and not generate_data:
        raise DataError(
            f"--data-dir {root} does not exist; check the path, or add --generate-data to generate "
            f"the {env_id} dataset (noise {noise_tag(noise)}) there"
        )
    # A dataset outside the standard layout cannot be regenerated in place: its fix is a standard one of this run.
    regenerate = generate_command(env_id, noise, DEFAULT_DATA_ROOT, noise_in=noise_in)
    if (root / "dataset_info.json").is_file():  # a builder directory
        check_noise_kind(root, noise_in)
        return read_episodes(root, data_fraction, regenerate), root
    settings = parse_dataset_name(root.name)
    if settings is not None and root.parent.name == "bsuite":  # one dataset directory
        if settings["env_id"] != env_id or settings["noise"] != float(noise):
            raise DataError(
                f"{root} holds {settings['env_id']} data with noise {noise_tag(settings['noise'])}, but this "
                f"run asks for {env_id} with --noise {noise_tag(noise)}; pass the matching dataset"
            )
        path = root / f"bsuite_{env_id}" / DATASET_VERSION
        check_noise_kind(path, noise_in)
        return read_episodes(path, data_fraction), path
    path = builder_dir(root, env_id, noise, noise_in=noise_in)
    if not dataset_dir(root, env_id, noise, noise_in=noise_in).exists():
        command = generate_command(env_id, noise, root, noise_in=noise_in)
        if not (generate_if_missing or generate_data):
            raise DataError(f"no BSuite dataset at {path}; create it with: {command}")
        print(
            f"Generating the BSuite {env_id} dataset (noise {noise_tag(noise)} in the {noise_in}) into {path}; "
            f"this takes roughly {ROUGH_GENERATION_TIME[env_id]}.",
            flush=True,
        )
        generate(env_id, noise, root, progress=True, noise_in=noise_in)
    check_noise_kind(path, noise_in)
    return read_episodes(path, data_fraction), path


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Args:
    env_id: str
    """BSuite environment: catch, cartpole or mountain_car."""
    noise: float = 0.0
    """Probability that the agent's action is replaced by a uniformly random one (paper: 0, 0.1, 0.3, 0.5)."""
    noise_in: Literal["environment", "behaviour"] = "environment"
    """Where the replacement happens: 'environment' (the paper's: stochastic transitions, the agent's action is
    recorded) or 'behaviour' (inside the agent: the executed action is recorded, the transitions stay deterministic)."""
    data_dir: str | None = None
    """Data root; default $ROSMO_DATA_DIR, else ./datasets.
    The dataset goes to DATA_DIR/bsuite/ENV_NOISE[_episodesN][_seedS]/."""
    seed: int = 0
    """Seed of the environment and of the behaviour agent."""
    num_episodes: int | None = None
    """Episodes to record; default the paper's count (catch 2000, cartpole 1000, mountain_car 500)."""
    force: bool = False
    """Replace the dataset if it already exists."""


def main(argv: Sequence[str] | None = None) -> int:
    args = tyro.cli(
        Args,
        args=argv,
        prog="python -m common.bsuite.datasets",
        description="Generate a BSuite RLDS dataset with an online DQN agent.",
    )
    try:
        stats = generate(
            args.env_id,
            args.noise,
            resolve_data_root(args.data_dir),
            seed=args.seed,
            num_episodes=args.num_episodes,
            progress=True,
            force=args.force,
            noise_in=args.noise_in,
        )
    except (DataError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; no dataset was written", file=sys.stderr)
        return 130
    print(
        f"episodes {stats['episodes']}  transitions {stats['transitions']}  "
        f"mean return {stats['mean_return']:.2f}  seconds {stats['seconds']:.1f}\n{stats['path']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
