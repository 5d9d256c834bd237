"""The BSuite environments the scripts train for and evaluate in (the real bsuite package).

`BSUITE_ENVS` names the three tasks of the paper; `make_env` builds one, seeded, optionally with
the paper's stochastic transitions (Appendix E): with probability `noise` the action it is given is
replaced by a uniformly random one before it is executed (`NoisyActions`). This is the BSuite
counterpart of common/atari/env.py: it holds no data reading, generation or learning code.
"""

import numpy as np
from bsuite.environments import cartpole, catch, mountain_car

from common.errors import DataError

BSUITE_ENVS = ("catch", "cartpole", "mountain_car")
NOISE_IN = ("environment", "behaviour")  # where a dataset's action noise acts (common/bsuite/datasets.py)


def check_env_id(env_id: str) -> None:
    """A one-line DataError unless `env_id` is one of BSUITE_ENVS."""
    if env_id not in BSUITE_ENVS:
        raise DataError(f"unknown BSuite env id {env_id!r}; valid ids: {', '.join(BSUITE_ENVS)}")


class NoisyActions:
    """A dm_env environment whose transitions are stochastic: with probability `noise` the action passed to
    `step` is replaced by a uniformly random one (from its own generator, seeded with `seed`) before the wrapped
    environment executes it. The caller keeps the action it chose; only the dynamics it sees change."""

    def __init__(self, env, noise: float, seed: int):
        self._env, self._noise = env, float(noise)
        self._rng = np.random.default_rng(seed)
        self._num_actions = env.action_spec().num_values

    def step(self, action):
        if self._rng.uniform() < self._noise:
            action = int(self._rng.integers(self._num_actions))
        return self._env.step(action)

    def __getattr__(self, name):  # reset, observation_spec, action_spec, ... of the wrapped environment
        return getattr(self._env, name)


def make_env(env_id: str, seed: int, noise: float = 0.0, noise_seed: int = 0):
    """The real bsuite environment (a dm_env.Environment) for `env_id`, seeded with `seed`; with `noise` > 0
    wrapped in `NoisyActions(noise, noise_seed)`."""
    env = _make_bsuite_env(env_id, seed)
    return NoisyActions(env, noise, noise_seed) if noise > 0 else env


def _make_bsuite_env(env_id: str, seed: int):
    check_env_id(env_id)
    if env_id == "catch":
        return catch.Catch(seed=seed)
    if env_id == "cartpole":
        return cartpole.Cartpole(seed=seed)
    return mountain_car.MountainCar(seed=seed)


def check_noise_in(noise_in: str) -> None:
    if noise_in not in NOISE_IN:
        raise DataError(f"--noise-in must be one of {', '.join(NOISE_IN)}, got {noise_in!r}")
