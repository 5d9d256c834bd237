"""Atari environments under the Dopamine DQN protocol, and batched evaluation in them.

The protocol is the one that produced the RL Unplugged Atari data: sticky actions
(repeat_action_probability 0.25), the game's minimal action set, 4 emulator frames per agent step
with a max-pool over the last two, grayscale, 84x84 INTER_AREA resizing, no no-op starts, no
terminal on life loss and episodes capped at 27,000 agent steps (108k frames). gymnasium's ALE v5
environments with frameskip=1 plus its AtariPreprocessing wrapper implement exactly this.
`make_single_frame_env` yields single 84x84 uint8 frames (what the data stores, one per step);
`make_atari_env` adds the stack of the last 4 frames, [84, 84, 4] with the newest frame last and
the first frame repeated at the start of an episode (as common/replay.py stacks the data).
`evaluate_atari` steps many environments in lockstep with one policy call per step, and
`make_atari_evaluator` wraps a jitted, seed-vmapped acting function into `evaluate(params)`.
Returns are the raw, unclipped game scores. This module holds no data reading or learning code.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np

FRAME_STACK = 4
MAX_EPISODE_STEPS = 27_000  # agent steps (108k emulator frames), the Dopamine cap
STICKY_ACTION_PROBABILITY = 0.25


def _gymnasium():
    import ale_py
    import gymnasium

    gymnasium.register_envs(ale_py)
    return gymnasium


def _env_id(game: str) -> str:
    return f"ALE/{game}-v5"


def make_single_frame_env(game: str, seed: int, max_episode_steps: int = MAX_EPISODE_STEPS):
    """A gymnasium env for `game` under the Dopamine protocol, observations single [84, 84] uint8 frames.

    `seed` seeds the emulator (and its sticky actions) at the first reset; later resets continue
    its random stream, so a sequence of episodes is reproducible from the one seed.
    """
    gymnasium = _gymnasium()
    from gymnasium.wrappers import AtariPreprocessing, TimeLimit

    env = gymnasium.make(
        _env_id(game),
        frameskip=1,
        repeat_action_probability=STICKY_ACTION_PROBABILITY,
        full_action_space=False,
        # ALE's own frame cap must not cut an episode before the agent-step cap below does.
        max_num_frames_per_episode=4 * max_episode_steps + 4,
    )
    env = AtariPreprocessing(
        env,
        noop_max=0,
        frame_skip=4,
        screen_size=84,
        terminal_on_life_loss=False,
        grayscale_obs=True,
        grayscale_newaxis=False,
        scale_obs=False,
    )
    env = TimeLimit(env, max_episode_steps=max_episode_steps)
    env.reset(seed=seed)
    return env


def make_atari_env(game: str, seed: int, max_episode_steps: int = MAX_EPISODE_STEPS):
    """The Dopamine-protocol env with observations stacked: [84, 84, 4] uint8, newest frame last."""
    gymnasium = _gymnasium()
    from gymnasium.wrappers import FrameStackObservation, TransformObservation

    env = make_single_frame_env(game, seed, max_episode_steps)
    # "reset" padding repeats the first frame of an episode, as the data sampler does.
    env = FrameStackObservation(env, FRAME_STACK, padding_type="reset")
    space = gymnasium.spaces.Box(0, 255, (84, 84, FRAME_STACK), np.uint8)
    return TransformObservation(env, lambda obs: np.moveaxis(np.asarray(obs), 0, -1), space)


@functools.cache
def num_actions(game: str) -> int:
    """Size of the game's minimal action set in ALE (the action space of the data and the env)."""
    gymnasium = _gymnasium()
    env = gymnasium.make(_env_id(game), full_action_space=False)
    try:
        return int(env.action_space.n)
    finally:
        env.close()


def evaluate_atari(
    game: str,
    act: Callable[[np.ndarray], np.ndarray],
    seeds: Sequence[int],
    num_episodes: int,
    max_episode_steps: int = MAX_EPISODE_STEPS,
) -> np.ndarray:
    """Raw (unclipped) episode returns [len(seeds), num_episodes].

    `act(observation [num_seeds, num_episodes, 84, 84, 4] uint8) -> actions [num_seeds, num_episodes]`
    is called once per agent step for every environment; finished ones keep their last
    observation and their actions are ignored until the slowest episode ends. Episode e of the
    agent trained with seed s runs in an environment seeded with 10_000 + 1_000 * s + e (as
    common/evaluation.py does for BSuite), so evaluations are reproducible and a vmapped run
    evaluates each seed as a single-seed run would.
    """
    num_seeds = len(seeds)
    envs = [
        [make_atari_env(game, 10_000 + 1_000 * s + e, max_episode_steps) for e in range(num_episodes)] for s in seeds
    ]
    try:
        # make_atari_env already reset each env with its seed; reset again without one to get the
        # first observation from the same seeded stream.
        obs = np.zeros((num_seeds, num_episodes, 84, 84, FRAME_STACK), np.uint8)
        for s in range(num_seeds):
            for e in range(num_episodes):
                obs[s, e] = envs[s][e].reset()[0]
        returns = np.zeros((num_seeds, num_episodes))
        done = np.zeros((num_seeds, num_episodes), bool)
        while not done.all():
            actions = np.asarray(act(obs))
            for s in range(num_seeds):
                for e in range(num_episodes):
                    if done[s, e]:
                        continue
                    observation, reward, terminated, truncated, _ = envs[s][e].step(int(actions[s, e]))
                    obs[s, e] = observation
                    returns[s, e] += float(reward)
                    done[s, e] = terminated or truncated
        return returns
    finally:
        for row in envs:
            for env in row:
                env.close()


def make_atari_evaluator(
    game: str,
    act: Callable,
    seeds: Sequence[int],
    num_episodes: int,
    key,
    max_episode_steps: int = MAX_EPISODE_STEPS,
) -> Callable:
    """`evaluate(params) -> mean raw return per seed [S]` for a jitted, seed-vmapped acting function.

    `act(params [S, ...], observation [S, E, 84, 84, 4] uint8, keys [S]) -> actions [S, E]`, the
    contract of common/evaluation.py's make_evaluator with stacked frames instead of flat vectors.
    A fresh key is split off for every step, so the whole run is reproducible from `key`.
    """
    import jax

    state = {"key": key}

    def evaluate(params) -> np.ndarray:
        def policy(obs: np.ndarray) -> np.ndarray:
            state["key"], step_key = jax.random.split(state["key"])
            return np.asarray(act(params, obs, jax.random.split(step_key, len(seeds))))

        return evaluate_atari(game, policy, seeds, num_episodes, max_episode_steps).mean(axis=1)

    return evaluate
