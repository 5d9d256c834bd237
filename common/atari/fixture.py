"""Small RL Unplugged Atari shards of real ALE gameplay, for tests and for trying the pipeline offline.

`write_fixture` plays `game` under the Dopamine protocol (common/atari/env.py, single frames) with a
seeded sticky random behaviour policy (with probability `repeat_probability` the previous action
again, else a uniform one; 0 gives the uniform random policy) and writes the episodes in the
on-disk format of the public episodic ordered release: `{out}/{Game}/run_{r}-{i:05d}-of-{N:05d}`,
GZIP-compressed TFRecord, one tf.train.Example per whole episode (see common/atari/shards.py).
An episode of T transitions is stored as T + 1 steps, as TFDS's parser expects: observations o_0..o_T
(84x84x1 grayscale PNGs), actions a_0..a_{T-1} then 0, rewards r_1..r_T then 0, and discounts
d_0..d_T where d_i is the discount on arriving at o_i: 1, except d_T = 0 when o_T is terminal
(a game over). An episode cut by `max_steps` keeps d_T = 1. `clipped_rewards` are the rewards
clipped to [-1, 1]; `unclipped_rewards` and `episode_return` hold the raw game rewards (in the
public data both hold clipped values). Shard i is checkpoint i; episode_idx counts from 0 within
a shard. Everything follows from `seed`, `run` and the shard index. Records are written by the
small encoder of common/tfrecord.py (protobuf wire format, TFRecord framing with CRC32C, gzip); TFDS's own parser
reads them back unchanged (tests/test_atari_data.py). Command line: `python -m common.atari.fixture
--game Pong --run 1 --num-shards 2 --episodes-per-shard 2 --max-steps 120 --out DIR [--seed 0]`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import tyro

from common.atari.env import make_single_frame_env, num_actions
from common.atari.games import check_game, check_run, shard_name
from common.tfrecord import bytes_feature, encode_example, float_feature, int64_feature, write_tfrecord_gzip

# ----------------------------------------------------------------------------------------------
# Encoding frames
# ----------------------------------------------------------------------------------------------


def encode_png(frame: np.ndarray) -> bytes:
    """An [84, 84] uint8 frame -> 8-bit grayscale PNG (decodes to 84x84x1)."""
    import cv2  # OpenCV (a heavy import) loads only where frames are coded

    ok, png = cv2.imencode(".png", np.ascontiguousarray(frame, np.uint8))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return png.tobytes()


# ----------------------------------------------------------------------------------------------
# Recording real gameplay
# ----------------------------------------------------------------------------------------------


class RecordedEpisode(NamedTuple):
    frames: np.ndarray  # [T + 1, 84, 84] uint8, o_0..o_T
    action: np.ndarray  # [T] int64, a_i taken at o_i
    reward: np.ndarray  # [T] float32, raw game reward after a_i
    terminated: bool  # o_T is a game over (else the episode was cut at max_steps)


def episode_example(checkpoint_idx: int, episode_idx: int, episode: RecordedEpisode) -> bytes:
    """One episode as a serialized Example in the RL Unplugged layout (T + 1 steps, see above)."""
    steps = len(episode.action)
    clipped = np.clip(episode.reward, -1.0, 1.0)
    discounts = np.ones(steps + 1, np.float32)
    discounts[-1] = 0.0 if episode.terminated else 1.0
    return encode_example(
        {
            "checkpoint_idx": int64_feature([checkpoint_idx]),
            "episode_idx": int64_feature([episode_idx]),
            "episode_return": float_feature([float(np.sum(episode.reward))]),
            "clipped_episode_return": float_feature([float(np.sum(clipped))]),
            "observations": bytes_feature(encode_png(frame) for frame in episode.frames),
            "actions": int64_feature([*episode.action.tolist(), 0]),
            "unclipped_rewards": float_feature([*episode.reward.tolist(), 0.0]),
            "clipped_rewards": float_feature([*clipped.tolist(), 0.0]),
            "discounts": float_feature(discounts),
        }
    )


def play_episode(env, choose: Callable[[list], int]) -> RecordedEpisode:
    """Play one episode until game over or the env's step cap; `choose(actions so far)` picks each action."""
    frame, _ = env.reset()
    frames, actions, rewards = [frame], [], []
    while True:
        action = choose(actions)
        frame, reward, terminated, truncated, _ = env.step(action)
        frames.append(frame)
        actions.append(action)
        rewards.append(float(reward))
        if terminated or truncated:
            return RecordedEpisode(
                np.stack(frames).astype(np.uint8),
                np.asarray(actions, np.int64),
                np.asarray(rewards, np.float32),
                bool(terminated),
            )


def record_episode(env, rng: np.random.Generator, action_count: int, repeat_probability: float) -> RecordedEpisode:
    """Play one episode with the sticky random policy until game over or the env's step cap."""

    def choose(actions: list) -> int:
        if actions and rng.random() < repeat_probability:
            return actions[-1]
        return int(rng.integers(action_count))

    return play_episode(env, choose)


def write_fixture(
    out: str | os.PathLike,
    game: str,
    run: int = 1,
    num_shards: int = 2,
    episodes_per_shard: int = 2,
    max_steps: int = 120,
    seed: int = 0,
    repeat_probability: float = 0.5,
) -> list[list[RecordedEpisode]]:
    """Record and write `num_shards` shards of `episodes_per_shard` episodes; returns what was recorded."""
    check_game(game)
    check_run(run)
    action_count = num_actions(game)
    recorded = []
    for index in range(num_shards):
        env_seed, policy_seed = np.random.SeedSequence([seed, run, index]).generate_state(2)
        env = make_single_frame_env(game, int(env_seed), max_episode_steps=max_steps)
        rng = np.random.default_rng(int(policy_seed))
        try:
            episodes = [record_episode(env, rng, action_count, repeat_probability) for _ in range(episodes_per_shard)]
        finally:
            env.close()
        records = (episode_example(index, e, episode) for e, episode in enumerate(episodes))
        write_tfrecord_gzip(Path(out) / shard_name(game, run, index, num_shards), records)
        recorded.append(episodes)
    return recorded


@dataclasses.dataclass
class Args:
    out: str
    """Data directory to write into; shards go to OUT/GAME/run_RUN-IIIII-of-NNNNN."""
    game: str = "Pong"
    """RL Unplugged Atari game (ALE v5 name)."""
    run: int = 1
    """Run number in the file names, 1..5."""
    num_shards: int = 2
    """Shards (checkpoints) to write."""
    episodes_per_shard: int = 2
    """Episodes per shard."""
    max_steps: int = 120
    """Agent steps after which an episode is cut (stored with discounts[-1] == 1)."""
    seed: int = 0
    """Seed of the emulator and of the behaviour policy."""
    repeat_probability: float = 0.5
    """Probability that the behaviour policy repeats its previous action (0: uniform random)."""


def main(argv: Sequence[str] | None = None) -> int:
    args = tyro.cli(
        Args, args=argv, prog="python -m common.atari.fixture", description="Write small RL Unplugged Atari shards."
    )
    for name in ("num_shards", "episodes_per_shard", "max_steps"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    try:
        recorded = write_fixture(
            args.out,
            args.game,
            args.run,
            args.num_shards,
            args.episodes_per_shard,
            args.max_steps,
            args.seed,
            args.repeat_probability,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    episodes = [episode for shard in recorded for episode in shard]
    print(
        f"{len(episodes)} episodes, {sum(len(e.action) for e in episodes)} transitions, "
        f"{sum(e.terminated for e in episodes)} ending in a game over -> {Path(args.out) / args.game}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
