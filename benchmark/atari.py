"""The paper's Atari protocol as one command: 12 RL Unplugged games x the algorithms x 3 seeds, IQM.

    python -m benchmark.atari                                              # paper: 12 games, 6 algorithms, 200k updates
    python -m benchmark.atari --algos rosmo mzu --games MsPacman Pong --compute-dtype bfloat16
    python -m benchmark.atari --dry-run                                    # list the runs

For accelerators (one run of 200k updates at batch 512 is hours on a GPU and weeks on a CPU).
Every (algorithm, game) is one run of the script with its seeds vmapped (`--num-seeds`); runs
go one after another on all local devices. Resumable like benchmark/reproduce.py: a finished
run with the same resolved arguments is reused. Writes, under benchmark/results/ (stem
`atari_{budget}`): a Markdown table of the mean final raw return per game and algorithm (the
paper's Table 8 reports the IQM over seeds) and the IQM normalised score over seeds x games
with its 95% stratified-bootstrap interval (paper Fig. 3), the time each algorithm took to
reach `--time-to-score` (the paper: ROSMO reaches 150% in about 1 hour, MZU in 17.8 hours), the
paper's claims against the outcome, the same as JSON, and PNGs of the final IQM and of the
learning curves over updates and wall-clock time. Normalised scores use the random and online
DQN returns of common/scores.py (defined for the paper's 12 games).
"""

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import tyro

from benchmark import aggregate as agg
from benchmark.common_bench import ROOT, machine_description, write_report
from benchmark.runner import Config, device_backend, run_configs
from common.networks import resolve_compute_dtype
from common.scores import ATARI_SCORES

PAPER_GAMES = list(ATARI_SCORES)
PAPER_IQM = {"rosmo": 1.94, "mzu": 1.51, "crr": 1.05, "cql": 0.835}  # paper Fig. 3, final IQM normalised score


@dataclass
class Args:
    games: List[str] = field(default_factory=lambda: list(PAPER_GAMES))
    """RL Unplugged games (default the paper's 12)"""
    algos: List[str] = field(default_factory=lambda: ["rosmo", "mzu", "crr", "cql", "bc"])
    """algorithm scripts (the paper's Fig. 3 set; add mzu_q for Fig. 4b)"""
    num_seeds: int = 3
    """seeds per (algorithm, game), vmapped in one process (paper: 3)"""
    seed: int = 0
    """first seed"""
    total_steps: int = 200_000
    """learner updates per run (paper: 200k)"""
    eval_every: int = 10_000
    """updates between evaluations"""
    eval_episodes: int = 10
    """evaluation episodes per seed"""
    data_fraction: float = 0.01
    """fraction of every checkpoint shard's episodes (the in-memory store holds about 3.5 GB per 1%)"""
    run: int = 1
    """RL Unplugged run of each game's data"""
    data_dir: Optional[str] = None
    """shard directory or URL (default: the scripts' default, the public bucket)"""
    compute_dtype: str = "auto"
    """network compute precision (auto: bfloat16 on GPUs and TPUs, float32 on CPUs)"""
    extra: str = ""
    """more flags passed to every script, in one string: --extra='--eval-max-steps 20000 --batch-size 256'"""
    time_to_score: float = 1.5
    """report the wall-clock time each algorithm needed to reach this IQM normalised score"""
    bootstrap_reps: int = 2000
    """stratified-bootstrap resamples per confidence interval"""
    workdir: str = str(ROOT)
    """where the runs live (runs/ and datasets/ under it)"""
    out_dir: str = str(ROOT / "benchmark" / "results")
    """where the tables and plots go"""
    dry_run: bool = False
    """list the runs without running anything"""


def make_configs(args: Args) -> List[Config]:
    configs = []
    for algo in args.algos:
        for game in args.games:
            flags = [
                "--env-id",
                game,
                "--num-seeds",
                str(args.num_seeds),
                "--seed",
                str(args.seed),
                "--total-steps",
                str(args.total_steps),
                "--eval-every",
                str(args.eval_every),
                "--eval-episodes",
                str(args.eval_episodes),
                "--data-fraction",
                str(args.data_fraction),
                "--run",
                str(args.run),
                "--compute-dtype",
                args.compute_dtype,
                *shlex.split(args.extra),
            ]
            if args.data_dir:
                flags += ["--data-dir", args.data_dir]
            configs.append(Config(algo, game, flags, algo))
    return configs


def time_to_reach(curve: dict, threshold: float) -> Optional[float]:
    """Wall-clock seconds at the first evaluation whose IQM is at least `threshold` (None if never)."""
    for t, est in zip(curve["wall_clock_s"], curve["iqm"]):
        if est[0] >= threshold:
            return float(t)
    return None


def main(args: Args) -> None:
    unknown = [g for g in args.games if g not in ATARI_SCORES]
    if unknown:
        raise SystemExit(
            f"error: no reference scores for {', '.join(unknown)} to normalise; use games of {', '.join(PAPER_GAMES)}"
        )
    start = time.time()
    configs = make_configs(args)
    print(f"== atari: {len(configs)} runs ({args.num_seeds} seeds each) ==", flush=True)
    results = run_configs(configs, "atari", args.dry_run, Path(args.workdir))
    if args.dry_run:
        return
    rows = agg.summarise(configs, results, args.bootstrap_reps)
    budget = f"{args.total_steps // 1000}k" if args.total_steps >= 1000 else str(args.total_steps)
    stem = Path(args.out_dir) / f"atari_{budget}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    machine = machine_description()
    done = [r for r in rows if not r["missing"]]
    lines = [
        f"# Atari: {len(args.games)} games x {args.num_seeds} seeds x {args.total_steps} updates",
        "",
        f"{args.data_fraction:g} of run {args.run} of each game, {args.eval_episodes} evaluation episodes per seed every "
        f"{args.eval_every} updates, compute {resolve_compute_dtype(args.compute_dtype, device_backend())}. "
        f"Machine: {machine}.",
        f"Command: `python -m benchmark.atari --games {' '.join(args.games)} --algos {' '.join(args.algos)} "
        f"--num-seeds {args.num_seeds} --total-steps {args.total_steps}` (+ the flags above). "
        f"This invocation took {(time.time() - start) / 60:.1f} min.",
        "",
        "Mean final raw return per game (over seeds):",
        "",
        "| game | " + " | ".join(r["series"] for r in rows) + " |",
        "|---|" + "---|" * len(rows),
    ]
    for game in args.games:
        cells = ["not run" if r["missing"] else f"{r['returns'][game][0]:.1f}" for r in rows]
        lines.append(f"| {game} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"IQM normalised score over seeds x games, 95% stratified-bootstrap interval ({args.bootstrap_reps} resamples), "
        f"and the wall-clock time to reach {args.time_to_score:g} "
        "(this machine, runs one after another, including evaluation):",
        "",
        "| algorithm | final IQM [95% CI] | paper | time to reach |",
        "|---|---|---|---|",
    ]
    for r in rows:
        if r["missing"]:
            lines.append(f"| {r['series']} | not run | {PAPER_IQM.get(r['series'], '-')} | - |")
            continue
        reached = time_to_reach(r["curve"], args.time_to_score)
        lines.append(
            f"| {r['series']} | {agg.fmt_ci(r['iqm'])} | {PAPER_IQM.get(r['series'], '-')} | "
            f"{'not reached' if reached is None else f'{reached / 3600:.2f} h'} |"
        )
    by = {r["series"]: r["iqm"] for r in done}
    order = [a for a in ("rosmo", "mzu", "crr", "cql") if a in by]
    claims = []
    if len(order) > 1:
        pairs = list(zip(order, order[1:]))
        holds = [by[a][0] > by[b][0] for a, b in pairs]
        claims.append(
            (
                "final IQM orders ROSMO > MZU > CRR > CQL",
                ", ".join(f"{a} {by[a][0]:.3f}" for a in order),
                "holds" if all(holds) else ("does not hold" if not any(holds) else "partly holds"),
            )
        )
    if "bc" in by:
        rl = [a for a in by if a != "bc"]
        beat = [by[a][0] > by["bc"][0] for a in rl]
        claims.append(
            (
                "every offline RL method beats BC",
                ", ".join(f"{a} {by[a][0]:.3f}" for a in rl) + f" vs bc {by['bc'][0]:.3f}",
                "holds" if all(beat) else ("does not hold" if not any(beat) else "partly holds"),
            )
        )
    if "rosmo" in by and "mzu" in by:
        t = {
            a: time_to_reach(next(r for r in done if r["series"] == a)["curve"], args.time_to_score) for a in ("rosmo", "mzu")
        }
        if t["rosmo"] is not None and t["mzu"] is not None:
            outcome, verdict = (
                f"rosmo {t['rosmo'] / 3600:.2f} h, mzu {t['mzu'] / 3600:.2f} h",
                "holds" if t["rosmo"] < t["mzu"] else "does not hold",
            )
        else:
            outcome, verdict = (
                f"rosmo {t['rosmo']}, mzu {t['mzu']} (None: not reached)",
                "not measured" if t["rosmo"] is None else "holds",
            )
        claims.append((f"ROSMO reaches {args.time_to_score:g} in a fraction of MZU's wall-clock time", outcome, verdict))
    lines += ["", "## The paper's claims against this run", "", "| claim (paper) | measured | verdict |", "|---|---|---|"]
    lines += [f"| {c} | {m} | {v} |" for c, m, v in claims]
    lines += ["", f"![final]({stem.name}.png)", "", f"![curves]({stem.name}_curves.png)", ""]
    write_report(stem.with_suffix(".md"), lines, {"settings": vars(args), "machine": machine, "rows": rows})
    if done:
        title = f"Atari ({len(args.games)} games; {args.num_seeds} seeds, {budget} updates)"
        agg.plot_lines(
            stem.with_suffix(".png"),
            title,
            "algorithm",
            {"final IQM": ([r["series"] for r in done], np.array([r["iqm"] for r in done]))},
            categorical=True,
        )
        agg.plot_curves(
            stem.parent / f"{stem.name}_curves.png",
            title,
            {r["series"]: {k: np.asarray(v) for k, v in r["curve"].items()} for r in done},
        )
    print(f"wrote {stem}.md; total wall-clock time {(time.time() - start) / 60:.1f} min")


if __name__ == "__main__":
    main(tyro.cli(Args))
