"""Final returns of algorithm scripts on the BSuite tasks, as one table.

    python -m benchmark.bsuite_returns                                   # rosmo, 3 tasks, 3 seeds, 50k updates
    python -m benchmark.bsuite_returns --envs catch --total-steps 20000

Every (algorithm, task) is one run of the script with all seeds vmapped (`--num-seeds`).
Resumable: a configuration whose finished results.json already exists under runs/ is not run
again. Writes benchmark/results/bsuite_{total_steps}.md and .json: per task the data's mean
return, the final evaluation return (mean and std over seeds), the normalised score, and
the mean return at every evaluation (a coarse learning curve) and wall-clock time; all labelled with
the budget and the machine. Wall-clock times include data generation on first use and any other
load on the machine.
"""

from dataclasses import dataclass, field
from typing import List

import numpy as np
import tyro

from benchmark.common_bench import ROOT, machine_description, write_report
from benchmark.runner import find_results, run_algorithm


@dataclass
class Args:
    algos: List[str] = field(default_factory=lambda: ["rosmo"])
    """algorithm scripts to run"""
    envs: List[str] = field(default_factory=lambda: ["catch", "cartpole", "mountain_car"])
    """BSuite tasks"""
    num_seeds: int = 3
    """seeds per configuration (vmapped in one process)"""
    seed: int = 0
    """first seed"""
    total_steps: int = 50_000
    """learner updates per run (paper: 200k)"""
    noise: float = 0.0
    """epsilon of the datasets"""
    data_fraction: float = 1.0
    """fraction of the episodes used"""
    eval_episodes: int = 20
    """evaluation episodes per seed"""
    eval_every: int = 5_000
    """updates between evaluations"""


def main(args: Args) -> None:
    logs = ROOT / "runs" / "benchmark_logs"
    logs.mkdir(parents=True, exist_ok=True)
    rows = []
    for env_id in args.envs:
        for algo in args.algos:
            exp_name = f"bench_{algo}"
            expect = {
                "num_seeds": args.num_seeds,
                "total_steps": args.total_steps,
                "noise": args.noise,
                "data_fraction": args.data_fraction,
                "eval_episodes": args.eval_episodes,
            }
            results = find_results(ROOT / "runs", env_id, exp_name, args.seed, expect)
            if results is None:
                flags = [
                    "--env-id",
                    env_id,
                    "--num-seeds",
                    str(args.num_seeds),
                    "--seed",
                    str(args.seed),
                    "--total-steps",
                    str(args.total_steps),
                    "--noise",
                    str(args.noise),
                    "--data-fraction",
                    str(args.data_fraction),
                    "--eval-episodes",
                    str(args.eval_episodes),
                    "--eval-every",
                    str(args.eval_every),
                    "--exp-name",
                    exp_name,
                ]
                print(f"running {algo} on {env_id} ...", flush=True)
                run_algorithm(algo, flags, ROOT, logs / f"{env_id}_{exp_name}_{args.total_steps}.log")
                results = find_results(ROOT / "runs", env_id, exp_name, args.seed, expect)
            final = np.asarray(results["final_returns"])
            row = {
                "algo": algo,
                "env_id": env_id,
                "data_return": results["data"]["mean_return"],
                "return_mean": float(final.mean()),
                "return_std": float(final.std()),
                "normalized_mean": float(np.mean(results["normalized_scores"])),
                "final_returns": final.tolist(),
                "wall_clock_s": results["wall_clock_s"],
                "updates_per_s": results["updates_per_s"],
                "curve": {
                    int(k): float(np.mean(v))
                    for k, v in zip(results["eval_history"]["steps"], results["eval_history"]["returns"])
                },
            }
            rows.append(row)
            print(
                f"{algo:8s} {env_id:13s} data {row['data_return']:9.2f} | final {row['return_mean']:9.2f} "
                f"+- {row['return_std']:7.2f} | normalised {row['normalized_mean']:.3f} | {row['wall_clock_s']:.0f} s"
            )

    header = (
        f"{args.num_seeds} seeds, {args.total_steps} updates, noise {args.noise}, data fraction {args.data_fraction}, "
        f"{args.eval_episodes} evaluation episodes per seed at the end"
    )
    lines = [
        f"# BSuite final returns ({args.total_steps // 1000}k updates)",
        "",
        f"{header}. Machine: {machine_description()}.",
        f"Command: `python -m benchmark.bsuite_returns --algos {' '.join(args.algos)} --envs {' '.join(args.envs)} "
        f"--num-seeds {args.num_seeds} --total-steps {args.total_steps} --noise {args.noise} --eval-every {args.eval_every}` "
        "(finished runs are reused, so a row may come from an earlier invocation with another --eval-every)",
        "",
        "| algorithm | task | data mean return | final return (mean +- std over seeds) | normalised score "
        "| mean return at each evaluation | wall clock |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {r['algo']} | {r['env_id']} | {r['data_return']:.2f} | {r['return_mean']:.2f} +- {r['return_std']:.2f} | "
            f"{r['normalized_mean']:.3f} | {', '.join(f'{k // 1000}k: {v:.2f}' for k, v in r['curve'].items())} | "
            f"{r['wall_clock_s'] / 60:.1f} min |"
            for r in rows
        ],
        "",
    ]
    stem = ROOT / "benchmark" / "results" / f"bsuite_{args.total_steps // 1000}k"
    write_report(stem.with_suffix(".md"), lines, {"settings": vars(args), "machine": machine_description(), "rows": rows}, 2)


if __name__ == "__main__":
    main(tyro.cli(Args))
