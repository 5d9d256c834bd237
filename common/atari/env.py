"""Atari environments under the Dopamine DQN protocol, and batched evaluation in them.

The protocol is the one that produced the RL Unplugged Atari data: sticky actions
(repeat_action_probability 0.25), the game's minimal action set, 4 emulator frames per agent step
with a max-pool over the last two, grayscale, 84x84 INTER_AREA resizing, no no-op starts, no
terminal on life loss and episodes capped at 27,000 agent steps (108k frames). gymnasium's ALE v5
environments with frameskip=1 plus its AtariPreprocessing wrapper implement exactly this.
`make_single_frame_env` yields single 84x84 uint8 frames (what the data stores, one per step);
`make_atari_env` adds the stack of the last 4 frames, [84, 84, 4] with the newest frame last and
the first frame repeated at the start of an episode (as common/replay.py stacks the data).

Evaluation steps many environments in lockstep with one policy call per step for all of them
(every seed and episode). `evaluate_atari_vector`, the default, runs them in ale_py's threaded
C++ vector environment (AtariVectorEnv) configured for the same protocol; it returns single
frames, and the stacks are built here exactly as above, so its observations are pixel-identical
to the gymnasium path's when sticky actions are off (tests/test_atari_env.py). Its sticky actions
draw from ALE's own seeded generator, so with stickiness on an episode is reproducible from its
seed but not equal to the gymnasium episode of that seed. `evaluate_atari` steps gymnasium
environments one after another on this thread (the reference). Both take a host `policy`
(observations -> actions); common/evaluation.py turns an algorithm's jitted acting function into
one. Both return `Episodes`: the raw, unclipped game scores, the episodes' lengths and the actions
the policy took, so that a score of 0 tells its cause (a Breakout policy that never presses FIRE
plays to the cap; one that only presses FIRE loses its five lives in about 120 steps). This module
holds no data reading, learning or key handling code.
"""

from __future__ import annotations

import functools
import os
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

FRAME_STACK = 4
MAX_EPISODE_STEPS = 27_000  # agent steps (108k emulator frames), the Dopamine cap
STICKY_ACTION_PROBABILITY = 0.25


class Episodes(NamedTuple):
    """What an evaluation played: per seed and episode, and the actions of each seed's episodes together."""

    returns: np.ndarray  # [S, E] float: raw (unclipped) game score of each episode
    lengths: np.ndarray  # [S, E] int: agent steps of each episode (the cap included)
    action_counts: np.ndarray  # [S, A] int: how often each action was taken in the seed's episodes


def count_actions(actions: np.ndarray, live: np.ndarray, counts: np.ndarray) -> None:
    """Adds the actions [S, E] of the live environments (mask [S, E]) to `counts` [S, A], in place."""
    seed = np.broadcast_to(np.arange(counts.shape[0])[:, None], actions.shape)  # [S, E]: each action's seed
    np.add.at(counts, (seed[live], actions[live]), 1)


def _gymnasium():
    # The emulator's packages (ale_py, gymnasium; OpenCV in its preprocessing) load here, when an Atari environment
    # is made, so a BSuite run or a data tool never loads them; the imports in the functions below are the same.
    import ale_py
    import gymnasium

    gymnasium.register_envs(ale_py)
    return gymnasium


def _env_id(game: str) -> str:
    return f"ALE/{game}-v5"


def make_single_frame_env(
    game: str,
    seed: int,
    max_episode_steps: int = MAX_EPISODE_STEPS,
    sticky_action_probability: float = STICKY_ACTION_PROBABILITY,
):
    """A gymnasium env for `game` under the Dopamine protocol, observations single [84, 84] uint8 frames.

    `seed` seeds the emulator (and its sticky actions) at the first reset; later resets continue
    its random stream, so a sequence of episodes is reproducible from the one seed.
    `sticky_action_probability` is the protocol's 0.25; 0 makes a game deterministic (tests).
    """
    gymnasium = _gymnasium()
    from gymnasium.wrappers import AtariPreprocessing, TimeLimit

    env = gymnasium.make(
        _env_id(game),
        frameskip=1,
        repeat_action_probability=sticky_action_probability,
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


def make_atari_env(
    game: str,
    seed: int,
    max_episode_steps: int = MAX_EPISODE_STEPS,
    sticky_action_probability: float = STICKY_ACTION_PROBABILITY,
):
    """The Dopamine-protocol env with observations stacked: [84, 84, 4] uint8, newest frame last."""
    gymnasium = _gymnasium()
    from gymnasium.wrappers import FrameStackObservation, TransformObservation

    env = make_single_frame_env(game, seed, max_episode_steps, sticky_action_probability)
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


def eval_env_seeds(seeds: Sequence[int], num_episodes: int) -> np.ndarray:
    """Environment seeds [len(seeds), num_episodes]: episode e of the agent with seed s uses 10_000 + 1_000 * s + e.

    As common/evaluation.py does for BSuite: evaluations are reproducible, a vmapped run evaluates
    each seed as a single-seed run would, and the seeds differ from the data's.
    """
    return np.array([[10_000 + 1_000 * s + e for e in range(num_episodes)] for s in seeds], dtype=np.int64)


def evaluate_atari(
    game: str,
    act: Callable[[np.ndarray], np.ndarray],
    seeds: Sequence[int],
    num_episodes: int,
    max_episode_steps: int = MAX_EPISODE_STEPS,
    sticky_action_probability: float = STICKY_ACTION_PROBABILITY,
) -> Episodes:
    """The episodes of every seed (`Episodes`: returns [len(seeds), num_episodes], ...), gymnasium envs stepped
    one after another.

    `act(observation [num_seeds, num_episodes, 84, 84, 4] uint8) -> actions [num_seeds, num_episodes]`
    is called once per agent step for every environment; finished ones keep their last
    observation and their actions are ignored until the slowest episode ends. Environments are
    seeded by `eval_env_seeds`. The reference for `evaluate_atari_vector`.
    """
    num_seeds = len(seeds)
    env_seeds = eval_env_seeds(seeds, num_episodes)
    envs = [
        [make_atari_env(game, int(seed), max_episode_steps, sticky_action_probability) for seed in row] for row in env_seeds
    ]
    try:
        # make_atari_env already reset each env with its seed; reset again without one to get the
        # first observation from the same seeded stream.
        obs = np.zeros((num_seeds, num_episodes, 84, 84, FRAME_STACK), np.uint8)
        for s in range(num_seeds):
            for e in range(num_episodes):
                obs[s, e] = envs[s][e].reset()[0]
        returns = np.zeros((num_seeds, num_episodes))
        lengths = np.zeros((num_seeds, num_episodes), np.int64)
        counts = np.zeros((num_seeds, int(envs[0][0].action_space.n)), np.int64)
        done = np.zeros((num_seeds, num_episodes), bool)
        while not done.all():
            actions = np.asarray(act(obs))
            count_actions(actions, ~done, counts)
            lengths += ~done
            for s in range(num_seeds):
                for e in range(num_episodes):
                    if done[s, e]:
                        continue
                    observation, reward, terminated, truncated, _ = envs[s][e].step(int(actions[s, e]))
                    obs[s, e] = observation
                    returns[s, e] += float(reward)
                    done[s, e] = terminated or truncated
        return Episodes(returns, lengths, counts)
    finally:
        for row in envs:
            for env in row:
                env.close()


@functools.cache
def rom_id(game: str) -> str:
    """ALE's ROM id of a gymnasium game name ('MsPacman' -> 'ms_pacman'), the name AtariVectorEnv takes."""
    from ale_py import roms
    from ale_py.registration import rom_id_to_name

    ids = {rom_id_to_name(rom): rom for rom in roms.get_all_rom_ids()}
    if game not in ids:
        raise ValueError(f"no ALE ROM for the game {game!r}; use a gymnasium name such as 'MsPacman'")
    return ids[game]


def default_num_threads(num_envs: int) -> int:
    """Threads of the vector environment: one per environment, at most one per core."""
    return max(1, min(num_envs, os.cpu_count() or 1))


def make_vector_env(
    game: str,
    num_envs: int,
    max_episode_steps: int = MAX_EPISODE_STEPS,
    sticky_action_probability: float = STICKY_ACTION_PROBABILITY,
    num_threads: Optional[int] = None,
):
    """ale_py's threaded AtariVectorEnv under the Dopamine protocol, observations single frames [num_envs, 1, 84, 84].

    Frame skip 4 with a max-pool over the last two frames, grayscale, 84x84 INTER_AREA resizing
    (the same pixels as gymnasium's AtariPreprocessing), no no-op starts, no fire on reset, no
    reward clipping, no terminal on life loss, the minimal action set, and truncation after
    `max_episode_steps` agent steps (ALE counts the cap in emulator frames: 4 per step). Frames
    are not stacked here: the vector env pads a new episode's stack with zeros, the data with
    the first frame. Finished environments reset on their next step (they are then ignored).
    """
    from ale_py.vector_env import AtariVectorEnv

    return AtariVectorEnv(
        rom_id(game),
        num_envs,
        num_threads=default_num_threads(num_envs) if num_threads is None else num_threads,
        max_num_frames_per_episode=4 * max_episode_steps,
        repeat_action_probability=sticky_action_probability,
        full_action_space=False,
        img_height=84,
        img_width=84,
        grayscale=True,
        stack_num=1,
        frameskip=4,
        maxpool=True,
        noop_max=0,
        episodic_life=False,
        life_loss_info=False,
        reward_clipping=False,
        use_fire_reset=False,
        autoreset_mode="NextStep",
    )


def push_frames(stack: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Drops the oldest frame of each stack and appends the new one: [N, 84, 84, 4], [N, 84, 84] -> [N, 84, 84, 4]."""
    return np.concatenate([stack[..., 1:], frames[..., None]], axis=-1)


def evaluate_atari_vector(
    game: str,
    act: Callable[[np.ndarray], np.ndarray],
    seeds: Sequence[int],
    num_episodes: int,
    max_episode_steps: int = MAX_EPISODE_STEPS,
    sticky_action_probability: float = STICKY_ACTION_PROBABILITY,
    num_threads: Optional[int] = None,
) -> Episodes:
    """The episodes of every seed (`Episodes`), all environments stepped by ALE's threads.

    The contract of `evaluate_atari`: `act(observation [S, E, 84, 84, 4] uint8) -> actions [S, E]`
    once per agent step for every environment, finished ones keep their last observation, the
    same environment seeds. `num_threads` defaults to one per core (at most one per environment).
    """
    num_seeds = len(seeds)
    env_seeds = eval_env_seeds(seeds, num_episodes).reshape(-1)  # [S * E], seed-major
    num_envs = env_seeds.size
    envs = make_vector_env(game, num_envs, max_episode_steps, sticky_action_probability, num_threads)
    try:
        frames, info = envs.reset(seed=env_seeds)  # [N, 1, 84, 84]
        obs = np.empty((num_envs, 84, 84, FRAME_STACK), np.uint8)
        obs[info["env_id"]] = np.repeat(frames[:, 0, :, :, None], FRAME_STACK, axis=-1)  # first frame repeated
        returns = np.zeros(num_envs)
        lengths = np.zeros(num_envs, np.int64)
        counts = np.zeros((num_seeds, int(envs.single_action_space.n)), np.int64)
        done = np.zeros(num_envs, bool)
        while not done.all():
            actions = np.asarray(act(obs.reshape(num_seeds, num_episodes, 84, 84, FRAME_STACK))).reshape(num_envs)
            frames, reward, terminated, truncated, info = envs.step(actions.astype(np.int32))
            order = info["env_id"]  # results in environment order
            live = ~done
            count_actions(actions.reshape(num_seeds, num_episodes), live.reshape(num_seeds, num_episodes), counts)
            lengths += live
            new = np.empty((num_envs, 84, 84), np.uint8)
            new[order] = frames[:, 0]
            obs[live] = push_frames(obs[live], new[live])
            returns[order] += np.where(live[order], reward, 0)
            done[order] |= terminated | truncated
        return Episodes(returns.reshape(num_seeds, num_episodes), lengths.reshape(num_seeds, num_episodes), counts)
    finally:
        envs.close()
