"""Evaluation in the real environment, many episodes stepped in lockstep.

`evaluate_bsuite` runs `num_seeds x num_episodes` real BSuite environments at once: at every
step the policy is called once for all of them (one jitted call for every seed and episode),
the host steps each live environment, and finished ones wait until the slowest is done.
Returns are the undiscounted environment returns. `make_evaluator` wraps a jitted, seed-vmapped
acting function of an algorithm script into `evaluate(params, key)`, on BSuite here and on Atari
through common/atari_env.py. The environments come from common/bsuite_env.py and
common/atari_env.py; this module holds no data reading and no training code.
"""

from typing import Callable, Optional, Sequence

import numpy as np

from common.bsuite_env import BSUITE_ENVS, make_env


def evaluate_bsuite(
    env_id: str,
    act: Callable[[np.ndarray], np.ndarray],
    seeds: Sequence[int],
    num_episodes: int,
) -> np.ndarray:
    """Undiscounted episode returns [len(seeds), num_episodes].

    `act(observation [num_seeds, num_episodes, *obs_shape]) -> actions [num_seeds, num_episodes]`.
    Episode e of the agent trained with seed s runs in an environment seeded with
    10_000 + 1_000 * s + e: evaluations are reproducible, a vmapped run evaluates each seed
    exactly as a single-seed run with that seed would, and the environment seeds differ from
    the one that generated the data.
    """
    num_seeds = len(seeds)
    envs = [[make_env(env_id, 10_000 + 1_000 * s + e) for e in range(num_episodes)] for s in seeds]
    timesteps = [[env.reset() for env in row] for row in envs]
    returns = np.zeros((num_seeds, num_episodes))
    done = np.zeros((num_seeds, num_episodes), bool)
    while not done.all():
        obs = np.stack([np.stack([ts.observation for ts in row]) for row in timesteps]).astype(np.float32)
        actions = np.asarray(act(obs))
        for s in range(num_seeds):
            for e in range(num_episodes):
                if done[s, e]:
                    continue
                ts = envs[s][e].step(int(actions[s, e]))
                returns[s, e] += ts.reward
                timesteps[s][e] = ts
                done[s, e] = ts.last()
    return returns


def make_evaluator(
    env_id: str, act: Callable, seeds: Sequence[int], num_episodes: int, max_episode_steps: Optional[int] = None
) -> Callable:
    """`evaluate(params, key) -> mean return per seed [S]` for a jitted, seed-vmapped acting function.

    `act(params [S, ...], observation [S, E, *obs_shape], keys [S]) -> actions [S, E]`; BSuite
    observations are flattened to vectors, Atari games (common/atari_env.py) give stacked frames.
    Every step splits a fresh key off `key`, so sampled policies differ between steps, and an
    evaluation depends on nothing but `params` and `key`: a script that derives `key` from its
    seed and the update step (jax.random.fold_in) evaluates the same way whether or not the run
    was interrupted and resumed. `max_episode_steps` caps Atari episodes (default: the protocol's
    27,000 agent steps); BSuite episodes always end by themselves. Parameters replicated over
    several processes (jax.distributed) are evaluated from this process's copy.
    """
    import jax

    from common.sharding import local_copy

    if env_id not in BSUITE_ENVS:  # an Atari game: observations stay [S, E, 84, 84, 4] uint8
        from common.atari_env import make_atari_evaluator

        steps = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
        seconds = []  # wall-clock seconds of each evaluation (environments and policy), in call order

        def evaluate_atari(params, key) -> np.ndarray:
            evaluator = make_atari_evaluator(env_id, act, seeds, num_episodes, key, **steps)  # ALE's threaded vector env
            mean_returns = evaluator(local_copy(params))
            seconds.extend(evaluator.seconds)
            return mean_returns

        evaluate_atari.seconds = seconds
        return evaluate_atari

    def evaluate(params, key) -> np.ndarray:
        params = local_copy(params)
        keys = {"key": key}

        def policy(obs: np.ndarray) -> np.ndarray:
            keys["key"], step_key = jax.random.split(keys["key"])
            flat = obs.reshape(obs.shape[:2] + (-1,))  # [S, E, D]
            return np.asarray(act(params, flat, jax.random.split(step_key, len(seeds))))

        return evaluate_bsuite(env_id, policy, seeds, num_episodes).mean(axis=1)

    return evaluate
