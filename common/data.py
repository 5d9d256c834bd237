"""One entry point from command-line data flags to a device-resident episodic store.

`load_offline_data` reads (or generates, on first use) the dataset an algorithm script asks for,
flattens vector observations, moves everything to the device once (common/replay.py) and checks
the batch size and the action range against the environment. It returns the store, the
environment's action count and a small dict describing the data for results.json. It holds no
sampling or learning code.
"""

from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional

import numpy as np

from common import bsuite_data
from common.episodes import DataError
from common.replay import Store, check_batch_size, make_store


class OfflineData(NamedTuple):
    store: Store
    num_actions: int
    obs_dim: int  # length of a flattened observation
    info: Dict[str, Any]  # path, noise, data_fraction, episodes, transitions, mean_return


def load_offline_data(
    env_id: str, noise: float, data_dir: Optional[str], data_fraction: float, batch_size: int
) -> OfflineData:
    """Episodes of a BSuite dataset -> OfflineData; one-line DataError on any problem."""
    episodes, data_path = bsuite_data.load_bsuite(env_id, noise, data_dir, data_fraction)
    episodes = episodes._replace(observation=episodes.observation.reshape(episodes.num_steps, -1))
    env = bsuite_data.make_env(env_id, 0)
    num_actions = env.action_spec().num_values
    obs_dim = int(np.prod(env.observation_spec().shape))
    if episodes.observation.shape[-1] != obs_dim:
        raise DataError(
            f"{data_path}: observations have {episodes.observation.shape[-1]} values, {env_id}'s have {obs_dim}; "
            f"is this {env_id} data?"
        )
    if episodes.action.max() >= num_actions or episodes.action.min() < 0:
        bad = int(episodes.action.max() if episodes.action.max() >= num_actions else episodes.action.min())
        raise DataError(f"{data_path}: action {bad} is outside {env_id}'s {num_actions} actions; is this {env_id} data?")
    store = make_store(episodes)
    check_batch_size(store, batch_size)
    info = {
        "path": str(Path(data_path)),
        "noise": noise,
        "data_fraction": data_fraction,
        "episodes": episodes.num_episodes,
        "transitions": episodes.num_transitions,
        "mean_return": float(np.mean(episodes.episode_returns())),
    }
    print(
        f"data: {data_path} | {info['episodes']} episodes, {info['transitions']} transitions, "
        f"mean return {info['mean_return']:.3f}"
    )
    return OfflineData(store, num_actions, obs_dim, info)
