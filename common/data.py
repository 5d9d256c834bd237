"""One entry point from command-line data flags to a device-resident episodic store.

`check_env_id` tells BSuite tasks from RL Unplugged Atari games (and rejects anything else with
the list of both). `load_offline_data` reads (or, for BSuite, generates on first use) the
dataset a script asks for, moves it to the device once (common/replay.py; Atari frames are
stored single and stacked by 4 when windows are sampled) and checks the batch size and the
action range against the environment. It returns the store, the environment's action count,
the shape and dtype of one observation as the networks see it, and a small dict describing the
data for results.json. It holds no sampling or learning code.
"""

from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional, Tuple

import numpy as np

from common import atari_data, bsuite_data
from common.bsuite_env import BSUITE_ENVS, make_env
from common.episodes import process_part
from common.errors import DataError, UsageError
from common.replay import Store, check_batch_size, make_store

ATARI_FRAME_STACK = 4


class OfflineData(NamedTuple):
    store: Store
    num_actions: int
    obs_shape: Tuple[int, ...]  # one observation as the network sees it: (D,) on BSuite, (84, 84, 4) on Atari
    obs_dtype: Any  # float32 on BSuite, uint8 on Atari
    info: Dict[str, Any]  # path, episodes, transitions, mean_return, ...


def is_atari(env_id: str) -> bool:
    return env_id in atari_data.GAMES


def check_env_id(env_id: str) -> None:
    """A one-line UsageError unless `env_id` is a BSuite task or an RL Unplugged Atari game."""
    if env_id in BSUITE_ENVS or is_atari(env_id):
        return
    raise UsageError(
        f"unknown --env-id '{env_id}'; valid ids: {', '.join(BSUITE_ENVS)} (BSuite) "
        f"or an RL Unplugged Atari game: {', '.join(atari_data.GAMES)}"
    )


def load_offline_data(
    env_id: str,
    noise: float,
    data_dir: Optional[str],
    data_fraction: float,
    batch_size: int,
    run: int = 1,
    generate_data: bool = False,
) -> OfflineData:
    """The dataset of `env_id` -> OfflineData; one-line DataError on any problem.

    `generate_data` lets BSuite generate a missing dataset in an explicit `data_dir` that does not
    exist yet (see bsuite_data.load_bsuite); without it such a directory is an error.

    BSuite: `noise` picks the dataset; Atari: `run` (1..5) picks the RL Unplugged run. Under
    `jax.distributed` (P processes), process p keeps only its disjoint part: Atari shards p, p + P,
    ...; BSuite episodes p, p + P, ... (process 0 generates a missing BSuite dataset first).
    """
    import jax

    process, num_processes = jax.process_index(), jax.process_count()
    if is_atari(env_id):
        from common import atari_env

        episodes, source = atari_data.load_atari(env_id, run, data_dir, data_fraction, process=(process, num_processes))
        num_actions = atari_env.num_actions(env_id)  # the loader has checked the actions against it
        store = make_store(episodes, frame_stack=ATARI_FRAME_STACK)
        obs_shape, obs_dtype = tuple(episodes.observation.shape[1:]) + (ATARI_FRAME_STACK,), np.uint8
        info = {"path": str(source), "run": run}
    else:
        if num_processes > 1:
            from jax.experimental import multihost_utils

            if process > 0:  # wait until process 0 has the dataset (it generates it on first use)
                multihost_utils.sync_global_devices("bsuite data")
            episodes, source = bsuite_data.load_bsuite(env_id, noise, data_dir, data_fraction, generate_data=generate_data)
            if process == 0:
                multihost_utils.sync_global_devices("bsuite data")
            episodes = process_part(episodes, process, num_processes, str(source))
        else:
            episodes, source = bsuite_data.load_bsuite(env_id, noise, data_dir, data_fraction, generate_data=generate_data)
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
        store = make_store(episodes)
        obs_shape, obs_dtype = (obs_dim,), np.float32
        info = {"path": str(Path(source)), "noise": noise}
    check_batch_size(store, batch_size)
    info.update(
        {
            **({"process": process, "num_processes": num_processes} if num_processes > 1 else {}),
            "data_fraction": data_fraction,
            "episodes": episodes.num_episodes,
            "transitions": episodes.num_transitions,
            "mean_return": float(np.mean(episodes.episode_returns())),  # clipped rewards on Atari
        }
    )
    part = f" (part {process + 1} of {num_processes})" if num_processes > 1 else ""
    print(
        f"data{part}: {source} | {info['episodes']} episodes, {info['transitions']} transitions, "
        f"mean return {info['mean_return']:.3f}"
    )
    return OfflineData(store, num_actions, obs_shape, obs_dtype, info)
