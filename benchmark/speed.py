"""Learner throughput: updates/s of an algorithm script on one BSuite task, 1 and 5 vmapped seeds.

    python benchmark/speed.py                       # rosmo.py on catch, seeds 1 and 5
    python benchmark/speed.py --num-seeds 1 3 5 --total-steps 5000

Each configuration is a real run of the script (data, jitted updates, evaluation); the
figure read back is `updates_per_s` of its results.json, which excludes compilation and
evaluation time. One "update" advances every vmapped seed by one gradient step.
Writes benchmark/results/speed_{env_id}.md.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import List

import tyro

from common_bench import ROOT, find_results, machine_description, run_algorithm


@dataclass
class Args:
    algos: List[str] = field(default_factory=lambda: ["rosmo"])
    """algorithm scripts to measure"""
    env_id: str = "catch"
    """BSuite task"""
    num_seeds: List[int] = field(default_factory=lambda: [1, 5])
    """vmapped seed counts to measure"""
    total_steps: int = 3000
    """updates per measured run"""
    batch_size: int = 128
    """windows per update (paper Table 4)"""


def main(args: Args) -> None:
    logs = ROOT / "runs" / "benchmark_logs"
    logs.mkdir(parents=True, exist_ok=True)
    rows = []
    for algo in args.algos:
        for seeds in args.num_seeds:
            exp_name = f"speed_{algo}_s{seeds}"
            flags = ["--env-id", args.env_id, "--num-seeds", str(seeds), "--total-steps", str(args.total_steps),
                     "--eval-every", str(args.total_steps), "--eval-episodes", "1", "--batch-size", str(args.batch_size),
                     "--exp-name", exp_name]
            run_algorithm(algo, flags, ROOT, logs / f"{exp_name}.log")
            r = find_results(ROOT / "runs", args.env_id, exp_name, 0, {"num_seeds": seeds, "total_steps": args.total_steps})
            ups = r["updates_per_s"]
            rows.append((algo, seeds, ups, ups * seeds, 1000.0 / (ups * seeds)))
            print(f"{algo:8s} seeds={seeds}: {ups:8.1f} updates/s, {ups * seeds:8.1f} agent-updates/s, {1000 / (ups * seeds):6.2f} ms per agent-update")
    lines = [
        f"# Learner throughput on {args.env_id}",
        "",
        f"Machine: {machine_description()}. Batch {args.batch_size}, {args.total_steps} updates per run.",
        f"Command: `python benchmark/speed.py --algos {' '.join(args.algos)} --env-id {args.env_id} "
        f"--num-seeds {' '.join(map(str, args.num_seeds))} --total-steps {args.total_steps}`",
        "",
        "| algorithm | vmapped seeds | updates/s | agent-updates/s | ms per agent-update |",
        "|---|---|---|---|---|",
        *[f"| {a} | {s} | {u:.1f} | {au:.1f} | {ms:.2f} |" for a, s, u, au, ms in rows],
        "",
    ]
    out = ROOT / "benchmark" / "results" / f"speed_{args.env_id}.md"
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(tyro.cli(Args))
