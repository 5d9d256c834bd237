"""Atari evaluation: gymnasium environments one after another against ALE's threaded vector environment.

    python -m benchmark.atari_eval                              # Pong, 20 environments x 500 steps
    python -m benchmark.atari_eval --threads 1 2 4 8 16 --repeats 5

One evaluation as the scripts run it (common/atari/env.py): `--num-envs` environments under the
Dopamine protocol (sticky actions 0.25, frame skip 4 with max-pooling, 84x84 grayscale, 4-frame
stacks) stepped in lockstep with one policy call per agent step for all of them, each episode
capped at `--max-steps` agent steps. The policy draws uniform random actions with numpy, so the
figures are the environments' cost plus the stacking and bookkeeping around them; a network's
act call adds the same seconds to both paths. Random Pong games last longer than the default
cap of 500 steps (a random player loses 0-21 in about 800 or more), so every episode is cut by
the cap and both paths step exactly num_envs x max_steps agent steps; with a game whose episodes
end earlier the vector environment also steps (resets) finished environments, the gymnasium path
skips them. Each row is the median of `--repeats` whole evaluations, split into setup (creating
and seeding the environments, up to the first policy call; both paths load the ROM again when a
seed is set) and stepping (the rest); "policy" is the time inside the policy calls. Speed-ups
are against the gymnasium path, for stepping and for the whole evaluation. The machine's load
average is recorded with the table: on a shared machine the figures move with it. Writes
benchmark/results/atari_eval.md.
"""

import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import List

import numpy as np
import tyro

from benchmark.common_bench import ROOT, machine_description, write_report


@dataclass
class Args:
    game: str = "Pong"
    """game to evaluate in (a gymnasium ALE name)"""
    num_envs: int = 20
    """environments of one evaluation (seeds x episodes; the scripts' default is 1 seed x 20 episodes)"""
    max_steps: int = 500
    """agent steps per episode (the cap); the protocol's 27,000 makes one evaluation take minutes"""
    threads: List[int] = field(default_factory=lambda: [1, os.cpu_count() or 1])
    """thread counts of the vector environment to measure"""
    repeats: int = 3
    """whole evaluations per row (the median is reported)"""
    seed: int = 0
    """seed of the random policy"""
    out: str = "benchmark/results/atari_eval.md"
    """where the result table goes, relative to the repository root"""


def timed_random_policy(num_actions: int, seed: int):
    """A uniform random policy [S, E, 84, 84, 4] -> [S, E] that records its calls, their seconds and when the first came."""
    rng = np.random.default_rng(seed)
    stats = {"calls": 0, "seconds": 0.0, "first_call": None}

    def act(observation: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        if stats["first_call"] is None:
            stats["first_call"] = start
        actions = rng.integers(0, num_actions, observation.shape[:2])
        stats["calls"] += 1
        stats["seconds"] += time.perf_counter() - start
        return actions

    return act, stats


def measure(evaluate, args: Args, **kwargs) -> dict:
    """Medians over `args.repeats` random-policy evaluations: total, setup and stepping seconds, policy seconds, steps."""
    from common.atari.env import num_actions

    runs = []
    for repeat in range(args.repeats):
        act, stats = timed_random_policy(num_actions(args.game), args.seed + repeat)
        start = time.perf_counter()
        evaluate(args.game, act, seeds=[0], num_episodes=args.num_envs, max_episode_steps=args.max_steps, **kwargs)
        total = time.perf_counter() - start
        setup = stats["first_call"] - start
        runs.append({"total": total, "setup": setup, "stepping": total - setup, "policy": stats["seconds"]})
        steps = stats["calls"] * args.num_envs  # the same in every run: the cap ends every episode
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]} | {"runs": runs, "steps": steps}


def check_args(args: Args) -> None:
    for name in ("num_envs", "max_steps", "repeats"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not args.threads or min(args.threads) < 1:
        raise SystemExit(f"error: --threads must list thread counts of at least 1, got {args.threads}")


def main(args: Args) -> None:
    from common.atari.env import evaluate_atari, evaluate_atari_vector

    check_args(args)
    command = "python -m benchmark.atari_eval" + "".join(" " + shlex.quote(a) for a in sys.argv[1:])
    machine = machine_description()
    rows = [("gymnasium, one env after another", 1, measure(evaluate_atari, args))]
    print(f"gymnasium: {rows[0][2]['total']:.2f} s", flush=True)
    for threads in args.threads:
        result = measure(evaluate_atari_vector, args, num_threads=threads)
        rows.append((f"ALE vector env, {threads} thread{'s' if threads > 1 else ''}", threads, result))
        print(f"vector, {threads} threads: {result['total']:.2f} s", flush=True)

    base = rows[0][2]
    table = [
        "| path | threads | setup s | stepping s (runs) | policy s | agent steps | steps/s stepping "
        "| speed-up, stepping | speed-up, whole evaluation |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, threads, result in rows:
        stepping = [run["stepping"] for run in result["runs"]]
        spread = f"{min(stepping):.2f}..{max(stepping):.2f}"
        table.append(
            f"| {label} | {threads} | {result['setup']:.2f} | {result['stepping']:.2f} ({spread}) "
            f"| {result['policy']:.3f} | {result['steps']:,} | {result['steps'] / result['stepping']:,.0f} "
            f"| {base['stepping'] / result['stepping']:.2f}x | {base['total'] / result['total']:.2f}x |"
        )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print()
    print("\n".join(table))
    print(f"load average (1, 5, 15 min) at the end: {load}")

    lines = [
        f"# Atari evaluation: gymnasium against ALE's threaded vector environment ({args.game})",
        "",
        f"Machine: {machine}; os.cpu_count() = {os.cpu_count()}.",
        f"Command: `{command}`",
        "",
        f"One evaluation: {args.num_envs} environments under the Dopamine protocol (sticky actions 0.25), "
        f"episodes capped at {args.max_steps} agent steps, one uniform-random policy call per step for all "
        f"environments (a network's act call would add the same time to every row). Medians of {args.repeats} "
        f"whole evaluations, split into setup (creating and seeding the environments) and stepping. Speed-ups "
        f"are against the gymnasium path. The vector rows use common/atari/env.py's evaluate_atari_vector, the "
        f"default of the scripts' evaluation (one thread per core, at most one per environment, unless told otherwise).",
        "",
        *table,
        "",
        f"Load average (1, 5, 15 min) at the end: {load} on {os.cpu_count()} cores.",
        "",
    ]
    out = ROOT / args.out
    write_report(out, lines)


if __name__ == "__main__":
    main(tyro.cli(Args))
