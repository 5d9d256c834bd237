"""Learner throughput: updates/s of the algorithm scripts on one BSuite task, with 1 and 5 vmapped seeds.

    python -m benchmark.speed                                    # all six scripts on catch, seeds 1 and 5
    python -m benchmark.speed --algos rosmo mzu --num-seeds 1 --mzu-simulations 4 20

Each configuration is a real run of the script (data, jitted updates, evaluation) on the same
data and batch; the figure read back is `updates_per_s` of its results.json, which excludes
compilation and evaluation time. One "update" advances every vmapped seed by one gradient step.
mzu.py and mzu_q.py are measured once per `--mzu-simulations` value. The table also gives each
configuration's time per update relative to rosmo.py with the same seed count (the paper:
MuZero Unplugged needs about 17x ROSMO's wall-clock time to reach the same Atari score).
Writes benchmark/results/speed_{env_id}.md (or --out).
"""

from dataclasses import dataclass, field
from typing import List

import tyro

from benchmark.common_bench import ROOT, machine_description, write_report
from benchmark.runner import find_results, run_algorithm

SEARCH_ALGOS = ("mzu", "mzu_q")


@dataclass
class Args:
    algos: List[str] = field(default_factory=lambda: ["rosmo", "mzu", "mzu_q", "crr", "cql", "bc"])
    """algorithm scripts to measure"""
    env_id: str = "catch"
    """BSuite task"""
    num_seeds: List[int] = field(default_factory=lambda: [1, 5])
    """vmapped seed counts to measure"""
    mzu_simulations: List[int] = field(default_factory=lambda: [4, 20])
    """simulation budgets at which the search-based scripts are measured (paper: 4 on BSuite, 20 on Atari)"""
    total_steps: int = 3000
    """updates per measured run"""
    batch_size: int = 128
    """windows per update (paper Table 4)"""
    out: str = ""
    """output file stem under benchmark/results/ (default speed_{env_id})"""


def main(args: Args) -> None:
    logs = ROOT / "runs" / "benchmark_logs"
    logs.mkdir(parents=True, exist_ok=True)
    rows = []
    for algo in args.algos:
        variants = (
            [(f"{algo} (N={n})", ["--num-simulations", str(n)]) for n in args.mzu_simulations]
            if algo in SEARCH_ALGOS
            else [(algo, [])]
        )
        for label, extra in variants:
            for seeds in args.num_seeds:
                exp_name = f"speed_{label.replace(' ', '').replace('(', '_').replace(')', '').replace('=', '')}_s{seeds}"
                flags = [
                    "--env-id",
                    args.env_id,
                    "--num-seeds",
                    str(seeds),
                    "--total-steps",
                    str(args.total_steps),
                    "--eval-every",
                    str(args.total_steps),
                    "--eval-episodes",
                    "1",
                    "--batch-size",
                    str(args.batch_size),
                    "--exp-name",
                    exp_name,
                    *extra,
                ]
                run_algorithm(algo, flags, ROOT, logs / f"{exp_name}.log")
                r = find_results(
                    ROOT / "runs", args.env_id, exp_name, 0, {"num_seeds": seeds, "total_steps": args.total_steps}
                )
                ups = r["updates_per_s"]
                rows.append({"label": label, "seeds": seeds, "ups": ups})
                print(
                    f"{label:14s} seeds={seeds}: {ups:8.1f} updates/s, {ups * seeds:8.1f} agent-updates/s, "
                    f"{1000 / (ups * seeds):6.2f} ms per agent-update",
                    flush=True,
                )
    rosmo = {row["seeds"]: row["ups"] for row in rows if row["label"] == "rosmo"}
    table = []
    for row in rows:
        ratio = f"{rosmo[row['seeds']] / row['ups']:.2f}x" if row["seeds"] in rosmo else "-"
        table.append(
            f"| {row['label']} | {row['seeds']} | {row['ups']:.1f} | {row['ups'] * row['seeds']:.1f} | "
            f"{1000.0 / (row['ups'] * row['seeds']):.2f} | {ratio} |"
        )
    lines = [
        f"# Learner throughput on {args.env_id}",
        "",
        f"Machine: {machine_description()}. Batch {args.batch_size}, {args.total_steps} updates per run; "
        "compilation and evaluation excluded.",
        f"Command: `python -m benchmark.speed --algos {' '.join(args.algos)} --env-id {args.env_id} "
        f"--num-seeds {' '.join(map(str, args.num_seeds))} --mzu-simulations {' '.join(map(str, args.mzu_simulations))} "
        f"--total-steps {args.total_steps}" + (f" --out {args.out}" if args.out else "") + "`",
        "",
        "| algorithm | vmapped seeds | updates/s | agent-updates/s | ms per agent-update | time per update / rosmo |",
        "|---|---|---|---|---|---|",
        *table,
        "",
    ]
    out = ROOT / "benchmark" / "results" / f"{args.out or 'speed_' + args.env_id}.md"
    write_report(out, lines)


if __name__ == "__main__":
    main(tyro.cli(Args))
