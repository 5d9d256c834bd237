"""Behaviour data for any Atari game in the RL Unplugged format, from real ALE play of a planner mixed with noise.

The public RL Unplugged Atari data is the replay of a DQN agent that learns as it plays: its 50 checkpoint
shards hold episodes of a policy that improves from random. This module makes data of that shape on one CPU,
for any game, without a trained agent:

- **The competent controller** is a short look-ahead planner through the emulator's state cloning: at every
  agent step it restores the current emulator state once per action a, holds a for `depth` agent steps (4
  frames each, as the environment steps), and scores the rollout by its summed raw reward minus
  `life_penalty` if a life (or the game) is lost within it; it takes the best action. Ties (every action
  scores the same when nothing happens within the look-ahead, which is most steps of most games) go to the
  first best action of the game's action set (NOOP where the set has it), so the planner is a deterministic
  function of the emulator state, as a DQN's argmax is; `--ties random` breaks them at random instead, which
  makes the recorded actions nearly uniform (Breakout's last shards: 25% each of 4 actions) and so tells a
  learner almost nothing about what the planner preferred.
  Holding one action is the cheapest look-ahead that sees the consequences of a move (a paddle reaching or
  missing a ball); it needs no knowledge of the game.
- **`--controller tracker`** is a per-game controller instead, for the games in `TRACKERS` (Breakout, Pong): it
  reads the ball's and its paddle's positions from the console's RAM and moves the paddle towards the ball (and
  serves when no ball is in play). Its action is a function of what the screen shows, as a DQN's is, where the
  planner's depends on frames of the future no observation holds (the planner's Breakout data taught a small
  network its action frequencies and no more: docs/atari.md, "Why ROSMO did not learn"). It costs no look-ahead
  (about 600 agent steps a second against the planner's 40).
- **Its quality falls with epsilon**: at each step the behaviour policy takes a uniformly random action with
  probability epsilon, else the planner's (epsilon-greedy, as the DQN that recorded the public data acted).
  Shard i of N uses epsilon_i = epsilon_start + (epsilon_end - epsilon_start) i / (N - 1), by default from 1
  (the uniform random policy) to 0 (the planner alone), so quality improves across the shards as a learning
  agent's replay does. The planner is only run when its action is used.
- **The play and the files are the public data's**: the Dopamine protocol of common/atari/env.py (sticky
  actions 0.25, 4 frames per step with a max-pool over the last two, 84x84 grayscale, no terminal on life
  loss), whole episodes (ended by a game over, or cut at `max_steps` agent steps and stored with a final
  discount of 1), and the shard layout and record fields of the episodic ordered release, written by
  common/atari/fixture.py's encoder: `{out}/{Game}/run_{r}-{i:05d}-of-{N:05d}`. The project's reader loads
  them like the bucket's shards, with no special case. The recorded action is the one the agent chose; the
  sticky-action repeat happens inside the environment, as in the public data.

Each shard follows from (seed, run, shard index) alone, so shards are written independently (in parallel with
`--workers`) and a stopped generation resumes by skipping the shards already written. A summary of every shard
(epsilon, episodes, steps, returns) is kept in `{out}/{Game}/behaviour_run_{r}.json`, which the reader ignores.

    python -m common.atari.behaviour --game Pong --out datasets/atari_behaviour
    python -m common.atari.behaviour --game Breakout --controller tracker --out datasets/atari_tracker
    python rosmo.py --env-id Pong --data-dir datasets/atari_behaviour --network-size small --batch-size 32
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np
import tyro

from common.atari.env import make_single_frame_env
from common.atari.fixture import RecordedEpisode, episode_example, play_episode, write_tfrecord_gzip
from common.atari.games import check_game, check_run, shard_name
from common.files import write_atomic

FRAMES_PER_STEP = 4  # the environment's frame skip: one agent step is 4 emulator frames


def shard_epsilon(index: int, num_shards: int, start: float, end: float) -> float:
    """epsilon of shard `index` of `num_shards`: linear from `start` (shard 0) to `end` (the last shard)."""
    if num_shards == 1:
        return end
    return start + (end - start) * index / (num_shards - 1)


def plan(
    ale, action_set: Sequence[int], rng: np.random.Generator, depth: int, life_penalty: float, ties: str = "first"
) -> int:
    """The planner's action index at the emulator's current state (restored before returning).

    For each action: hold it for `depth` agent steps from a copy of the state; its score is the summed raw
    reward, minus `life_penalty` (and the rollout ends) when a life or the game is lost. The best score wins;
    `ties` "first" takes the first of equally good actions (in action-set order), "random" one uniformly at random.
    """
    root = ale.cloneState()
    lives = ale.lives()
    scores = np.zeros(len(action_set))
    for i, action in enumerate(action_set):
        ale.restoreState(root)
        for _ in range(depth * FRAMES_PER_STEP):
            scores[i] += ale.act(action)
            if ale.game_over() or ale.lives() < lives:
                scores[i] -= life_penalty
                break
    ale.restoreState(root)
    best = np.flatnonzero(scores >= scores.max() - 1e-9)
    return int(best[0]) if ties == "first" else int(rng.choice(best))


@dataclasses.dataclass(frozen=True)
class Tracker:
    """A paddle game's tracking controller: RAM addresses of the game's state and the actions that move the paddle.

    Addresses are those of the Atari Annotated RAM Interface (Anand et al. 2019); the offset and dead band were
    chosen by the score of the controller alone (sticky actions on, 3 seeds x 1500 agent steps, over a grid of
    offsets -20..10 and bands 2..10): Breakout about 54 points in 1500 steps, Pong about -1 (a tie) in 1500 steps.
    """

    ball: int  # RAM address of the ball's coordinate along the paddle's axis
    paddle: int  # RAM address of the paddle's coordinate on the same axis
    in_play: int  # RAM address that reads 0 when no ball is in play
    serve: int  # action index taken when no ball is in play
    offset: int  # the paddle coordinate aimed at is ball + offset
    band: int  # no move while |paddle - aim| <= band
    increase: int  # action index that increases the paddle coordinate
    decrease: int  # action index that decreases it


TRACKERS = {
    # actions NOOP FIRE RIGHT LEFT: RIGHT increases the paddle's x (RAM 72, 55..191); ball x 99, ball y 101 (0: none)
    "Breakout": Tracker(ball=99, paddle=72, in_play=101, serve=1, offset=-8, band=4, increase=2, decrease=3),
    # actions NOOP FIRE RIGHT LEFT RIGHTFIRE LEFTFIRE: RIGHT moves the paddle up, lowering its y (RAM 51, 38..203);
    # ball y 54, ball x 49 (0: none, between points, where the game serves by itself)
    "Pong": Tracker(ball=54, paddle=51, in_play=49, serve=0, offset=-8, band=6, increase=3, decrease=2),
}


def track(ram: np.ndarray, tracker: Tracker) -> int:
    """The tracking controller's action index for the console RAM `ram` (128 bytes)."""
    if int(ram[tracker.in_play]) == 0:
        return tracker.serve
    aim, paddle = int(ram[tracker.ball]) + tracker.offset, int(ram[tracker.paddle])
    if paddle < aim - tracker.band:
        return tracker.increase
    if paddle > aim + tracker.band:
        return tracker.decrease
    return 0  # NOOP, first in every minimal action set


def record_behaviour_episode(
    env,
    rng: np.random.Generator,
    epsilon: float,
    depth: int,
    life_penalty: float,
    ties: str = "first",
    tracker: Optional[Tracker] = None,
) -> RecordedEpisode:
    """One episode of the epsilon-mixed controller (the planner, or `tracker` where given), until game over or the
    environment's step cap."""
    ale, action_set = env.unwrapped.ale, env.unwrapped._action_set

    def choose(actions: list) -> int:
        if rng.random() < epsilon:
            return int(rng.integers(len(action_set)))
        if tracker is not None:
            return track(ale.getRAM(), tracker)
        return plan(ale, action_set, rng, depth, life_penalty, ties)

    return play_episode(env, choose)


@dataclasses.dataclass
class Args:
    out: str
    """data directory to write into; shards go to OUT/GAME/run_RUN-IIIII-of-NNNNN (pass it to the scripts' --data-dir)"""
    game: str = "Pong"
    """RL Unplugged Atari game (ALE v5 name)"""
    run: int = 1
    """run number in the file names, 1..5"""
    num_shards: int = 50
    """checkpoint shards (the public data has 50 per run)"""
    episodes_per_shard: int = 1
    """episodes per shard"""
    max_steps: int = 2_000
    """agent steps after which an episode is cut (stored with a final discount of 1); the Dopamine cap is 27,000"""
    depth: int = 20
    """agent steps each action is held in the planner's look-ahead"""
    life_penalty: float = 10.0
    """score of losing a life (or the game) within a look-ahead, subtracted from its reward"""
    controller: Literal["planner", "tracker"] = "planner"
    """the competent policy: 'planner', the emulator look-ahead (any game), or 'tracker', the paddle follows the
    ball read from RAM (Breakout and Pong; a function of what the screen shows, so a network can learn it)"""
    ties: Literal["first", "random"] = "first"
    """the planner's choice among equally good actions: the first in the action set, or one at random"""
    epsilon_start: float = 1.0
    """epsilon of the first shard (probability of a uniformly random action; 1: the random policy)"""
    epsilon_end: float = 0.0
    """epsilon of the last shard (0: the planner alone)"""
    seed: int = 0
    """seed of the emulators and of the behaviour policy"""
    workers: int = 1
    """shards written in parallel (processes)"""


def write_shard(args: Args, index: int) -> dict:
    """Record and write shard `index`; returns its summary."""
    path = Path(args.out) / shard_name(args.game, args.run, index, args.num_shards)
    epsilon = shard_epsilon(index, args.num_shards, args.epsilon_start, args.epsilon_end)
    env_seed, policy_seed = np.random.SeedSequence([args.seed, args.run, index]).generate_state(2)
    env = make_single_frame_env(args.game, int(env_seed), max_episode_steps=args.max_steps)
    rng = np.random.default_rng(int(policy_seed))
    tracker = TRACKERS[args.game] if args.controller == "tracker" else None
    start = time.time()
    try:
        episodes = [
            record_behaviour_episode(env, rng, epsilon, args.depth, args.life_penalty, args.ties, tracker)
            for _ in range(args.episodes_per_shard)
        ]
    finally:
        env.close()
    write_tfrecord_gzip(path, (episode_example(index, e, episode) for e, episode in enumerate(episodes)))
    return {
        "shard": index,
        "epsilon": epsilon,
        "episodes": len(episodes),
        "steps": [len(e.action) for e in episodes],
        "returns": [float(np.sum(e.reward)) for e in episodes],
        "game_over": [e.terminated for e in episodes],
        "seconds": round(time.time() - start, 1),
    }


def summary_path(args: Args) -> Path:
    return Path(args.out) / args.game / f"behaviour_run_{args.run}.json"


def check_args(args: Args) -> None:
    check_game(args.game)
    check_run(args.run)
    if args.controller == "tracker" and args.game not in TRACKERS:
        raise ValueError(
            f"--controller tracker knows {sorted(TRACKERS)}, not {args.game}; use --controller planner for other games"
        )
    for name in ("num_shards", "episodes_per_shard", "max_steps", "depth", "workers"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("epsilon_start", "epsilon_end"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(args, name)}")


def generate(args: Args) -> dict:
    """Write every shard not yet written (resuming a stopped generation); returns the whole summary."""
    check_args(args)
    settings = {k: v for k, v in dataclasses.asdict(args).items() if k not in ("out", "workers")}
    previous: Optional[dict] = json.loads(summary_path(args).read_text()) if summary_path(args).exists() else None
    if previous is not None:  # data written before --controller existed is the planner's
        previous["settings"].setdefault("controller", "planner")
    if previous is not None and previous["settings"] != settings:
        raise ValueError(
            f"{summary_path(args).parent} holds behaviour data made with other settings ({previous['settings']}); "
            "pass another --out or the same settings"
        )
    shards = {s["shard"]: s for s in (previous or {}).get("shards", [])}
    todo = [
        i
        for i in range(args.num_shards)
        if i not in shards or not (Path(args.out) / shard_name(args.game, args.run, i, args.num_shards)).exists()
    ]

    def save() -> dict:
        ordered = [shards[i] for i in sorted(shards)]
        returns = [r for s in ordered for r in s["returns"]]
        summary = {
            "settings": settings,
            "shards": ordered,
            "episodes": len(returns),
            "steps": sum(n for s in ordered for n in s["steps"]),
            "mean_return": float(np.mean(returns)) if returns else None,
            "complete": len(ordered) == args.num_shards,
        }
        write_atomic(summary_path(args), (json.dumps(summary, indent=1) + "\n").encode())
        return summary

    with contextlib.ExitStack() as stack:
        if args.workers > 1:  # one worker writes in this process (no fork of a process that may run threads)
            pool = stack.enter_context(concurrent.futures.ProcessPoolExecutor(args.workers))
            written = pool.map(write_shard, [args] * len(todo), todo)
        else:
            written = (write_shard(args, i) for i in todo)
        for done in written:
            shards[done["shard"]] = done
            print(
                f"shard {done['shard']}: epsilon {done['epsilon']:.2f}, returns {done['returns']}, steps {done['steps']} "
                f"({done['seconds']:.0f} s)",
                flush=True,
            )
            save()
    return save()


def main(argv: Sequence[str] | None = None) -> int:
    args = tyro.cli(
        Args,
        args=argv,
        prog="python -m common.atari.behaviour",
        description="Write RL Unplugged-format Atari shards of an epsilon-mixed look-ahead planner or paddle tracker.",
    )
    try:
        summary = generate(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    first, last = summary["shards"][0], summary["shards"][-1]
    print(
        f"{summary['episodes']} episodes, {summary['steps']} transitions, mean return {summary['mean_return']:.2f} "
        f"(epsilon {first['epsilon']:.2f}: {np.mean(first['returns']):.2f}; epsilon {last['epsilon']:.2f}: "
        f"{np.mean(last['returns']):.2f}) -> {Path(args.out) / args.game}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
