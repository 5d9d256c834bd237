"""Evaluation in the real environment, many episodes stepped in lockstep.

`evaluate_bsuite` runs `num_seeds x num_episodes` real BSuite environments at once: at every
step the policy is called once for all of them (one jitted call for every seed and episode),
the host steps each live environment, and finished ones wait until the slowest is done.
Returns are the undiscounted environment returns. `make_evaluator` wraps a jitted, seed-vmapped
acting function of an algorithm script into `evaluate(params, key)`: on BSuite with `evaluate_bsuite`,
on Atari with `make_atari_evaluator`. The environments come from common/bsuite/env.py and
common/atari/env.py (which imports nothing of this module); this module holds no data reading and
no training code.

Videos (--capture-video): after each evaluation, `record_episode` plays one more episode with the
same policy (the first seed's agent, the environment of that seed's first evaluation episode) and
`write_video` saves it as an mp4 (imageio with its bundled ffmpeg). It is a separate short
rollout, capped at `VIDEO_MAX_STEPS` agent steps, so recording never changes the returns. Atari
records the RGB screen (ALE's getScreenRGB, 210x160) of a gymnasium environment; catch records
its 10x5 board scaled up 20 times. cartpole and mountain_car have no picture to record.
"""

import functools
import time
from pathlib import Path
from typing import Callable, Dict, List, Literal, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from common.atari import env as atari_env
from common.atari.env import MAX_EPISODE_STEPS, make_atari_env
from common.bsuite.env import BSUITE_ENVS, make_env
from common.errors import UsageError
from common.sharding import local_copy

VIDEO_MAX_STEPS = 2_000  # agent steps of a recorded episode at most (over 2 minutes at Atari's 15 steps/s)
VIDEO_ENVS_BSUITE = ("catch",)  # BSuite tasks whose observation is a picture
CATCH_SCALE = 20  # pixels per cell of catch's 10x5 board


def write_video(path: Path, frames: Sequence[np.ndarray], fps: int) -> Path:
    """An mp4 (H.264 through imageio's bundled ffmpeg) of `frames`, each [H, W, 3] uint8 with H and W even."""
    import imageio.v3 as iio  # only --capture-video needs it (and its ffmpeg): imported when a video is written

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.stack(frames), fps=fps, macro_block_size=1)
    return path


def catch_frame(observation: np.ndarray) -> np.ndarray:
    """catch's board [10, 5] in {0, 1} as an RGB picture [200, 100, 3] uint8 (ball and paddle white)."""
    board = (np.asarray(observation, np.float32) * 255).astype(np.uint8)
    big = np.kron(board, np.ones((CATCH_SCALE, CATCH_SCALE), np.uint8))
    return np.repeat(big[..., None], 3, axis=-1)


def record_episode(
    env_id: str,
    policy: Callable[[np.ndarray], int],
    env_seed: int,
    max_steps: int = VIDEO_MAX_STEPS,
    max_episode_steps: Optional[int] = None,
) -> List[np.ndarray]:
    """RGB frames [H, W, 3] uint8 of one episode of `env_id` seeded with `env_seed`, acting with
    `policy(observation) -> action` (the observation as the evaluation gives it), at most `max_steps`
    agent steps (and the Atari cap `max_episode_steps`)."""
    if env_id in BSUITE_ENVS:
        env = make_env(env_id, env_seed)
        timestep = env.reset()
        frames = [catch_frame(timestep.observation)]
        for _ in range(max_steps):
            timestep = env.step(policy(np.asarray(timestep.observation, np.float32).reshape(-1)))
            frames.append(catch_frame(timestep.observation))
            if timestep.last():
                break
        return frames

    env = make_atari_env(env_id, env_seed, max_episode_steps or MAX_EPISODE_STEPS)
    try:
        observation, _ = env.reset()
        ale = env.unwrapped.ale
        frames = [ale.getScreenRGB()]  # [210, 160, 3]
        for _ in range(max_steps):
            observation, _, terminated, truncated, _ = env.step(policy(observation))
            frames.append(ale.getScreenRGB())
            if terminated or truncated:
                break
        return frames
    finally:
        env.close()


def check_video(env_id: str) -> None:
    """A one-line UsageError when --capture-video has nothing to record for `env_id`."""
    if env_id in BSUITE_ENVS and env_id not in VIDEO_ENVS_BSUITE:
        raise UsageError(
            f"--capture-video records Atari games and catch; {env_id}'s observation is no picture, drop --capture-video"
        )


def per_seed_keys(key, seeds: Sequence[int]):
    """One key per agent [S]: fold_in(key, seed), so seed s's evaluation does not depend on the other seeds of
    a vmapped run (it acts as a one-seed run with seed s would)."""

    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.asarray(list(seeds), jnp.uint32))


def split_per_seed(keys):
    """(next keys [S], this step's keys [S]): every seed's chain split once (jitted: it runs at every
    environment step, and an eager vmap would trace anew each time, about 2 ms a step)."""
    return _split_per_seed()(keys)


@functools.lru_cache(maxsize=None)
def _split_per_seed():

    def split(keys):
        pairs = jax.vmap(jax.random.split)(keys)  # [S, 2, ...]
        return pairs[:, 0], pairs[:, 1]

    return jax.jit(split)


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
    env_id: str,
    act: Callable,
    seeds: Sequence[int],
    num_episodes: int,
    max_episode_steps: Optional[int] = None,
    video_dir: Optional[Path] = None,
) -> Callable:
    """`evaluate(params, key, step=None) -> mean return per seed [S]` for a jitted, seed-vmapped acting function.

    `act(params [S, ...], observation [S, E, *obs_shape], keys [S]) -> actions [S, E]`; BSuite
    observations are flattened to vectors, Atari games (common/atari/env.py) give stacked frames.
    Seed s acts with its own chain fold_in(`key`, s), split afresh at every step, so sampled policies
    differ between steps, seed s of a vmapped run acts as a one-seed run with seed s would (given the
    same `key`), and an evaluation depends on nothing but `params` and `key`: a script that derives `key` from its
    seed and the update step (jax.random.fold_in) evaluates the same way whether or not the run
    was interrupted and resumed. `max_episode_steps` caps Atari episodes (default: the protocol's
    27,000 agent steps); BSuite episodes always end by themselves. Parameters replicated over
    several processes (jax.distributed) are evaluated from this process's copy. With `video_dir`,
    every call also records one episode (see the module docstring) to
    `video_dir`/update_{step}_seed{seed}.mp4 (`step` names the file; `evaluate.videos` lists them).
    `evaluate.episodes` holds one entry per call: on Atari what its episodes played (`episode_summary`:
    mean length and action shares per seed), on BSuite None.
    """

    if video_dir is not None:
        check_video(env_id)
    videos: List[Path] = []

    def record(params, key, step) -> None:
        """One recorded episode of the first seed's agent (its first evaluation environment)."""
        params = local_copy(params)
        keys = {"keys": per_seed_keys(jax.random.fold_in(key, 1), seeds)}  # not the evaluation's own stream

        def policy(observation: np.ndarray) -> int:
            keys["keys"], step_keys = split_per_seed(keys["keys"])
            batch = np.broadcast_to(observation, (len(seeds), 1, *observation.shape))  # [S, 1, *obs]
            return int(np.asarray(act(params, batch, step_keys))[0, 0])

        frames = record_episode(env_id, policy, 10_000 + 1_000 * seeds[0], VIDEO_MAX_STEPS, max_episode_steps)
        name = f"update_{step if step is not None else len(videos)}_seed{seeds[0]}.mp4"
        videos.append(write_video(Path(video_dir) / name, frames, fps=15 if env_id not in BSUITE_ENVS else 4))

    if env_id not in BSUITE_ENVS:  # an Atari game: observations stay [S, E, 84, 84, 4] uint8
        seconds = []  # wall-clock seconds of each evaluation (environments and policy), in call order
        episodes = []  # what each evaluation played (`episode_summary`), in call order

        def evaluate_atari(params, key, step: Optional[int] = None) -> np.ndarray:
            # ALE's threaded vector environment, keys from `key` alone (a resumed run evaluates the same way)
            evaluator = make_atari_evaluator(env_id, act, seeds, num_episodes, key, max_episode_steps)
            mean_returns = evaluator(local_copy(params))
            seconds.extend(evaluator.seconds)
            episodes.extend(evaluator.episodes)
            if video_dir is not None:
                record(params, key, step)
            return mean_returns

        evaluate_atari.seconds, evaluate_atari.episodes, evaluate_atari.videos = seconds, episodes, videos
        return evaluate_atari

    def evaluate(params, key, step: Optional[int] = None) -> np.ndarray:
        params = local_copy(params)
        keys = {"keys": per_seed_keys(key, seeds)}  # [S]: seed s's chain depends on s alone

        def policy(obs: np.ndarray) -> np.ndarray:
            keys["keys"], step_keys = split_per_seed(keys["keys"])
            flat = obs.reshape(obs.shape[:2] + (-1,))  # [S, E, D]
            return np.asarray(act(params, flat, step_keys))

        returns = evaluate_bsuite(env_id, policy, seeds, num_episodes).mean(axis=1)
        if video_dir is not None:
            record(params, key, step)
        evaluate.episodes.append(None)  # BSuite episodes end by themselves; nothing to summarise
        return returns

    evaluate.episodes, evaluate.videos = [], videos
    return evaluate


def make_atari_evaluator(
    game: str,
    act: Callable,
    seeds: Sequence[int],
    num_episodes: int,
    key,
    max_episode_steps: Optional[int] = None,
    backend: Literal["vector", "gymnasium"] = "vector",
    num_threads: Optional[int] = None,
) -> Callable:
    """`evaluate(params) -> mean raw return per seed [S]` for a jitted, seed-vmapped acting function.

    `act(params [S, ...], observation [S, E, 84, 84, 4] uint8, keys [S]) -> actions [S, E]`, the
    contract of `make_evaluator` with stacked frames instead of flat vectors.
    Seed s acts with its own key chain, fold_in(key, s), split afresh at every step, so the whole
    evaluation is reproducible from `key` and each seed's agent acts as in a one-seed run.
    `backend` "vector" (default) steps the environments in ALE's threads (`atari_env.evaluate_atari_vector`),
    "gymnasium" one after another (`atari_env.evaluate_atari`). `evaluate.seconds` lists the wall-clock
    seconds of every call so far, environments and policy together (the first includes
    compiling `act`); `evaluate.episodes` what each call played (`episode_summary`).
    """

    if backend not in ("vector", "gymnasium"):
        raise ValueError(f"unknown Atari evaluation backend {backend!r}; use 'vector' or 'gymnasium'")

    max_episode_steps = atari_env.MAX_EPISODE_STEPS if max_episode_steps is None else max_episode_steps
    state = {"keys": per_seed_keys(key, seeds)}  # [S]

    def evaluate(params) -> np.ndarray:
        start = time.perf_counter()

        def policy(obs: np.ndarray) -> np.ndarray:
            state["keys"], step_keys = split_per_seed(state["keys"])
            return np.asarray(act(params, obs, step_keys))

        if backend == "vector":
            episodes = atari_env.evaluate_atari_vector(
                game, policy, seeds, num_episodes, max_episode_steps, num_threads=num_threads
            )
        else:
            episodes = atari_env.evaluate_atari(game, policy, seeds, num_episodes, max_episode_steps)
        evaluate.seconds.append(time.perf_counter() - start)
        evaluate.episodes.append(episode_summary(episodes))
        return episodes.returns.mean(axis=1)

    evaluate.seconds, evaluate.episodes = [], []
    return evaluate


def episode_summary(episodes: atari_env.Episodes) -> Dict[str, list]:
    """Per seed: the mean episode length in agent steps and the share of each action in its episodes' steps
    (what results.json keeps beside an evaluation's returns)."""
    counts = episodes.action_counts.astype(np.float64)
    return {
        "lengths": episodes.lengths.mean(axis=1).tolist(),
        "action_shares": (counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)).round(4).tolist(),
    }
