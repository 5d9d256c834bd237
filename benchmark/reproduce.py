"""One-command reproductions of the paper's BSuite study (Section 4, Table 1, Table 2, Fig. 2, Fig. 4).

    python -m benchmark.reproduce --study table2                      # paper budget: 5 seeds x 200k updates
    python -m benchmark.reproduce --study noise --num-seeds 3 --total-steps 10000   # a CPU-sized budget
    python -m benchmark.reproduce --study all --dry-run                # list every run it would do
    python -m benchmark.reproduce --study all --report-only            # tables from the runs finished so far
    python -m benchmark.reproduce --from-json benchmark/results/table2_50k.json   # rewrite a kept report from its JSON

Studies (each one runs the algorithm scripts with all seeds of a configuration vmapped in one
process, `--num-seeds`):

  table2                   Table 2: all six algorithms x the BSuite tasks, final returns.
  data_fraction            Hypothesis 1 (Fig. 2a): ROSMO vs MZU with 1%, 10%, 100% of the data.
  noise                    Hypothesis 2 (Table 1): ROSMO vs MZU on catch with noise 0, 0.1, 0.3, 0.5.
  model_capacity           Hypothesis 3 (Fig. 2b): dynamics hidden units 32..1024, 10% of the data.
  search_budget            Hypothesis 4 (Fig. 2c): MZU with N simulations x search depth d; with
                           --searches muzero gumbel also Gumbel MuZero's search, and ROSMO as the reference.
  ablation_sampling        Fig. 4b: sampled ROSMO (N=4) vs MZU (4 simulations) vs MZU-Q (4).
  ablation_unroll          Fig. 4c: ROSMO and MZU with unroll K = 1 and K = 5.
  ablation_regularization  Fig. 4d: ROSMO vs OneStep (no behaviour term) vs Behavior (only it).

Resumable: a run is reused when a finished results.json with the same resolved arguments
exists under runs/ (whatever study or command made it), so an interrupted study picks up where
it stopped and studies share their common runs. For each study it writes, under
benchmark/results/ (stem `{study}_{budget}`): a Markdown table (per configuration and task the
mean and std over seeds of the final return and of each seed's late average, the mean of its last
five evaluations; the IQM normalised score of both with its 95% stratified-bootstrap interval;
then the paper's claims, each with the interval of the difference that decides its verdict: holds,
inconclusive or does not hold), the same as JSON with every run's path and every seed's returns
at every evaluation, a PNG of the final IQM per configuration, a PNG of the learning curves over
updates and over wall-clock time, and a PNG of the score distributions (performance profiles).
A report is never replaced by one that measures fewer of its configurations: a configuration
with no run on this machine is taken from the kept JSON. The Fig. 4 ablations are Atari
experiments in the paper (MsPacman); here they run on the BSuite tasks. Every table names the
budget and the machine.
"""

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional

import numpy as np
import tyro

from benchmark import aggregate as agg
from benchmark.common_bench import RECORDS, ROOT, Config, machine_description, run_configs, write_report

BSUITE = ["catch", "cartpole", "mountain_car"]
ALGOS = ["rosmo", "mzu", "mzu_q", "crr", "cql", "bc"]
# Table 2's rows: the six algorithms, plus ROSMO with Eq. 11's data reading of the behaviour advantage (the
# official release's choice) and BC acting greedily (argmax pi) beside BC sampling from pi.
VARIANTS = {"rosmo-data": ("rosmo", {"behavior_advantage": "data"}), "bc-greedy": ("bc", {"eval_greedy": True})}
ROWS = ["rosmo", "rosmo-data", "mzu", "mzu_q", "crr", "cql", "bc", "bc-greedy"]
STUDIES = [
    "table2",
    "lr_decay",
    "cql_sweep",
    "data_fraction",
    "noise",
    "model_capacity",
    "search_budget",
    "ablation_sampling",
    "ablation_unroll",
    "ablation_regularization",
    "atari_small",
]
# The Atari study on this project's behaviour data (common/atari/behaviour.py --controller tracker: the paddle follows
# the ball, a function of the screen, mixed with random actions as epsilon falls from 1 to 0 across the shards): the
# games, episodes per shard of their data, and the settings every run shares (the small networks at batch 32,
# episodes cut at 2,000 agent steps in the data and in evaluation alike, a 200-update warm-up). The budget, 3 seeds x
# 30,000 updates, is the one BC was measured to learn in (Breakout: 1.0 at 4k updates, 6.2 at 30k; docs/atari.md);
# 2,000 updates, what 2 CPU cores do for the six methods on two games in about 6 hours, leave every method at the
# random policy's level. A 3-seed update of the small networks at batch 32 takes about 1.0 s (ROSMO), 1.3 s (MZU,
# 20 simulations), 0.4 s (CRR, CQL) and 0.13 s (BC) of a 2-core CPU, so the whole study is about 75 CPU-hours there:
# it is meant for an accelerator (benchmark/gpu.sh), or for --total-steps and --envs chosen to fit.
ATARI_SMALL_GAMES = {"Breakout": 2, "Pong": 1}
ATARI_SMALL_FLAGS = ["--network-size", "small", "--batch-size", "32", "--eval-max-steps", "2000", "--warmup-steps", "200"]
ATARI_SMALL_DEFAULTS = {"num_seeds": 3, "total_steps": 30_000, "eval_episodes": 5}


@dataclass
class Args:
    study: Literal[
        "table2",
        "lr_decay",
        "cql_sweep",
        "data_fraction",
        "noise",
        "model_capacity",
        "search_budget",
        "ablation_sampling",
        "ablation_unroll",
        "ablation_regularization",
        "atari_small",
        "all",
    ] = "table2"
    """which reproduction to run ('all' runs them one after another)"""
    envs: Optional[List[str]] = None
    """BSuite tasks (default: the paper's, i.e. all three; catch only for the noise study); atari_small: games
    (default Breakout and Pong)"""
    num_seeds: Optional[int] = None
    """seeds per configuration, vmapped in one process (default 5, the paper's; atari_small 3)"""
    seed: int = 0
    """first seed"""
    total_steps: Optional[int] = None
    """learner updates per run (default 200k, the paper's; atari_small 30k)"""
    eval_every: Optional[int] = None
    """updates between evaluations (default total_steps / 10)"""
    eval_episodes: Optional[int] = None
    """evaluation episodes per seed (default 20; atari_small 5)"""
    atari_data_dir: str = "datasets/atari_tracker"
    """atari_small: where its behaviour data is generated (python -m common.atari.behaviour) and read, under --workdir;
    its own directory, as finished runs and kept records are reused by their flags (--data-dir among them)"""
    algos: List[str] = field(default_factory=lambda: list(ROWS))
    """table2: the rows (the algorithms, 'rosmo-data' and 'bc-greedy'), run in this order"""
    lr_decay_steps: Optional[int] = None
    """--lr-decay-steps of every run (default: the scripts' 100k, i.e. no decay within 100k updates);
    the paper's shape is x0.1 at half the budget (100k of 200k)"""
    alphas: List[float] = field(default_factory=lambda: [0.0, 0.01, 0.1, 0.3, 1.0])
    """cql_sweep: the penalty weights (the CQL-paper optimiser takes those >= 0.1, 10- and 3-step targets those <= 0.1)"""
    fractions: List[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    """data_fraction: the data fractions"""
    noises: List[float] = field(default_factory=lambda: [0.0, 0.1, 0.3, 0.5])
    """noise: the dataset noise levels (epsilon)"""
    noise_in: Literal["environment", "behaviour"] = "environment"
    """noise: where the data's noise acted, the environment (the paper's: stochastic transitions) or the behaviour
    agent (deterministic transitions, noisier behaviour); the tables of the latter get '_behaviournoise' in their name"""
    hidden_units: List[int] = field(default_factory=lambda: [32, 64, 128, 256, 512, 1024])
    """model_capacity: widths of the dynamics MLP's middle layer"""
    capacity_fraction: float = 0.1
    """model_capacity: data fraction (paper: 10%)"""
    simulations: List[int] = field(default_factory=lambda: [4, 8, 16, 32])
    """search_budget: MZU simulation budgets N"""
    depths: List[int] = field(default_factory=lambda: [1, 2, 0])
    """search_budget: maximum search depths d (0: unlimited, the MZU default)"""
    searches: List[Literal["muzero", "gumbel"]] = field(default_factory=lambda: ["muzero"])
    """search_budget: MZU's searches (mzu.py --search); with 'gumbel' the study also runs ROSMO as the reference"""
    bootstrap_reps: int = 2000
    """stratified-bootstrap resamples per confidence interval"""
    workdir: str = str(ROOT)
    """where the runs live (runs/ and datasets/ under it)"""
    out_dir: str = str(ROOT / "benchmark" / "results")
    """where the tables and plots go"""
    dry_run: bool = False
    """list the runs (and which are already finished) without running anything"""
    report_only: bool = False
    """write the tables and plots from the runs already finished, running nothing (a configuration not found is
    taken from the report's kept JSON when that was made with the same settings; never shown as 'not run' there)"""
    from_json: Optional[str] = None
    """rewrite one kept report (a benchmark/results/*.json) from what it keeps, with its own settings: every
    seed's scores from the kept results of the runs it names, else read back from its intervals; runs nothing"""


def default_envs(study: str) -> List[str]:
    if study == "atari_small":
        return list(ATARI_SMALL_GAMES)
    return ["catch"] if study == "noise" else ["cartpole"] if study in ("lr_decay", "cql_sweep") else list(BSUITE)


def search_series(search: str, depth: int) -> str:
    """The search_budget series of MZU with `search` at maximum depth `depth` (0: unlimited): "d=1", "gumbel d=1"."""
    return ("" if search == "muzero" else f"{search} ") + f"d={depth or 'unlimited'}"


def study_configs(study: str, args: Args, envs: List[str]) -> List[Config]:
    """The runs of one study: algorithm, task, flags, and where each goes in the table."""
    configs = []

    def add(algo: str, series: str, x=None, **flags) -> None:
        for env_id in envs:
            cli = [
                "--env-id",
                env_id,
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
            ]
            if args.lr_decay_steps is not None and "lr_decay_steps" not in flags:
                cli += ["--lr-decay-steps", str(args.lr_decay_steps)]
            for name, value in flags.items():
                if isinstance(value, bool):
                    cli += [f"--{name.replace('_', '-')}"] if value else []
                else:
                    cli += [f"--{name.replace('_', '-')}", str(value)]
            configs.append(Config(algo, env_id, cli, series, x))

    if study == "table2":
        for row in args.algos:
            algo, flags = VARIANTS.get(row, (row, {}))
            add(algo, row, **flags)
    elif study == "lr_decay":
        add("rosmo", "decay x0.1 at half", lr_decay_steps=max(args.total_steps // 2, 1))
        add("rosmo", "no decay", lr_decay_steps=max(args.total_steps, 1))  # the first decay would fall after the last update
    elif study == "cql_sweep":
        # The penalty weight with 10-step and 3-step targets (3: ROSMO's BSuite TD steps), then with 1-step targets
        # (the official CQL backup), all with the shared optimiser of the ROSMO paper's Table 4 (learning rate 7e-4,
        # target copy every 200 updates); and 1-step with the CQL paper's discrete (QR-DQN/Dopamine) one (5e-5, 2000).
        for n_step in (10, 3):
            for alpha in (a for a in args.alphas if a <= 0.1):
                add("cql", f"{n_step}-step, shared optimiser", alpha, alpha=alpha, n_step=n_step)
        for alpha in args.alphas:
            add("cql", "1-step, shared optimiser", alpha, alpha=alpha, n_step=1)
        for alpha in (a for a in args.alphas if a >= 0.1):
            add(
                "cql",
                "1-step, CQL-paper optimiser",
                alpha,
                alpha=alpha,
                n_step=1,
                learning_rate=5e-5,
                target_update_interval=2000,
            )
    elif study == "data_fraction":
        for algo in ("rosmo", "mzu"):
            for fraction in args.fractions:
                add(algo, algo, fraction, data_fraction=fraction)
    elif study == "noise":
        for algo in ("rosmo", "mzu"):
            for noise in args.noises:
                add(algo, algo, noise, noise=noise, noise_in=args.noise_in)
    elif study == "model_capacity":
        for algo in ("rosmo", "mzu"):
            for width in args.hidden_units:
                add(algo, algo, width, dynamics_hidden=width, data_fraction=args.capacity_fraction)
    elif study == "search_budget":
        for search in args.searches:
            search_flag = {} if search == "muzero" else {"search": search}  # muzero: the runs made before the flag
            for depth in args.depths:
                for n in args.simulations:
                    depth_flag = {} if depth == 0 else {"max_depth": depth}
                    add("mzu", search_series(search, depth), n, num_simulations=n, **search_flag, **depth_flag)
        if "gumbel" in args.searches:
            add("rosmo", "rosmo")  # the reference: Table 2's ROSMO runs at the same budget
    elif study == "ablation_sampling":
        add("rosmo", "ROSMO sampled (N=4)", num_samples=4)
        add("mzu", "MZU (N=4)", num_simulations=4)
        add("mzu_q", "MZU-Q (N=4)", num_simulations=4)
    elif study == "ablation_unroll":
        for algo in ("rosmo", "mzu"):
            for k in (1, 5):
                add(algo, algo, k, unroll_steps=k)
    elif study == "atari_small":
        data_flags = ["--data-dir", args.atari_data_dir, *ATARI_SMALL_FLAGS]
        for algo in ALGOS:
            add(algo, algo, **{f.lstrip("-").replace("-", "_"): v for f, v in zip(data_flags[::2], data_flags[1::2])})
    elif study == "ablation_regularization":
        add("rosmo", "ROSMO")
        add("rosmo", "OneStep", behavior_coef=0.0)
        add("rosmo", "Behavior", behavior_only=True)
    return configs


# ---------------------------------------------------------------------------------------------
# The paper's claims, each checked against the measured rows with intervals. A comparison "X above Y"
# holds when the 95% stratified-bootstrap interval of IQM(X) - IQM(Y) lies above 0, does not hold when
# it lies below 0, and is inconclusive when it contains 0. The scores compared are each seed's late
# average (its last five evaluations) where every run kept its per-seed history, else its final score.
# A claim made of several comparisons holds when all of them hold and does not hold when any does not.
# Every verdict is one of VERDICTS, or "not measured" while a configuration it needs has not run.

VERDICTS = ("holds", "inconclusive", "does not hold")
NOT_MEASURED = "not measured"


def _row(rows, series, x=None) -> Optional[dict]:
    for r in rows:
        if r["series"] == series and r["x"] == x and not r["missing"]:
            return r
    return None


def verdict_measure(rows: List[Dict]) -> str:
    """'late' when every measured row has each seed's history (so each seed's late average), else 'final'."""
    done = [r for r in rows if not r["missing"]]
    return "late" if done and all(r.get("per_seed", {}).get("aligned") for r in done) else "final"


def _scores(rows, series, x, measure: str) -> Optional[np.ndarray]:
    """Normalised scores [seeds, tasks] of a configuration under `measure`, None if not run or not kept per seed."""
    row = _row(rows, series, x)
    return None if row is None or "per_seed" not in row else agg.seed_scores(row["per_seed"], measure)


def from_interval(estimate, at_least: bool = False, tolerance: float = 1e-9) -> str:
    """The verdict of a claimed effect > 0 (>= 0 with `at_least`) from its (point, lower, upper); an end within
    `tolerance` of 0 (rounding in the sums) counts as 0."""
    _, low, high = estimate
    if low > tolerance or (at_least and low >= -tolerance):
        return "holds"
    return "does not hold" if high < -tolerance else "inconclusive"


def combine(verdicts: List[str]) -> str:
    """A claim made of several comparisons: holds when all hold, does not hold when any does not."""
    if not verdicts or NOT_MEASURED in verdicts:
        return NOT_MEASURED
    if all(v == "holds" for v in verdicts):
        return "holds"
    return "does not hold" if "does not hold" in verdicts else "inconclusive"


def _compare(rows, a, b, measure: str, reps: int, at_least: bool = False, names=None) -> tuple:
    """(verdict, measured text) of "configuration a scores above configuration b"; a and b are (series, x)."""
    na, nb = names or (a[0], b[0])
    xa, xb = _scores(rows, *a, measure), _scores(rows, *b, measure)
    if xa is None or xb is None:
        return NOT_MEASURED, f"{na} {_fmt(xa)} vs {nb} {_fmt(xb)}"
    diff = agg.iqm_difference_with_ci(xa, xb, reps)
    better = agg.probability_of_improvement_with_ci(xa, xb, reps)
    text = (
        f"{na} {_fmt(xa)} vs {nb} {_fmt(xb)}: difference {agg.fmt_ci(diff, signed=True)}, P({na} > {nb}) {agg.fmt_ci(better)}"
    )
    return from_interval(diff, at_least), text


def _fmt(scores: Optional[np.ndarray]) -> str:
    return "-" if scores is None else f"{agg.iqm(scores):.3f}"


def _effect(rows, keys, statistic, measure: str, reps: int) -> Optional[tuple]:
    """statistic(*scores of the configurations `keys`) with its stratified-bootstrap interval, each
    configuration's runs resampled independently; None until all of them are measured."""
    scores = [_scores(rows, series, x, measure) for series, x in keys]
    if any(s is None for s in scores):
        return None
    return agg.interval_of(scores, statistic, reps)


def _rosmo_above_mzu(rows, xs, claim: str, measure: str, reps: int) -> tuple:
    """(claim, measured, verdict): ROSMO's IQM above MZU's at every x of the study."""
    checks = [_compare(rows, ("rosmo", x), ("mzu", x), measure, reps) for x in xs]
    return claim, "; ".join(f"{x:g}: {text}" for x, (_, text) in zip(xs, checks)), combine([v for v, _ in checks])


def _rosmo_above_search(rows, search: str, simulations: List[int], measure: str, reps: int) -> tuple:
    """(claim, measured, verdict) of search_budget: the ROSMO reference's IQM above MZU's with `search` at
    unlimited depth at every budget N of `simulations`."""
    label = {"muzero": "MuZero", "gumbel": "Gumbel"}[search]
    series = search_series(search, 0)
    checks = [_compare(rows, ("rosmo", None), (series, n), measure, reps, names=("rosmo", search)) for n in simulations]
    claim = f"ROSMO beats MCTS at a low budget ({label} search, unlimited depth, N={', '.join(map(str, simulations))})"
    return claim, "; ".join(f"N={n}: {text}" for n, (_, text) in zip(simulations, checks)), combine([v for v, _ in checks])


def _above_the_data(rows, algos: List[str], measure: str, reps: int, data_returns: Dict[str, float]) -> List[tuple]:
    """(claim, measured, verdict) per algorithm: its IQM of (score - the data's mean score, per task) above 0;
    `data_returns`: the data's mean return per task (else the run's own count of it)."""
    from common.scores import normalized_score

    out = []
    for algo in algos:
        row, scores = _row(rows, algo), _scores(rows, algo, None, measure)
        envs = list(row["per_seed"]["returns"]) if row is not None and "per_seed" in row else []
        means = {**(row or {}).get("data_returns", {}), **data_returns}
        if scores is None or any(e not in means for e in envs):
            out.append((f"{algo} ends above the data's mean return", "-", NOT_MEASURED))
            continue
        data = np.array([normalized_score(e, means[e]) for e in envs])
        effect = agg.interval_of([scores], lambda x, data=data: agg.iqm(x - data), reps)
        measured = f"{algo} {_fmt(scores)} vs data {', '.join(f'{e} {d:.3f}' for e, d in zip(envs, data))}: "
        out.append(
            (f"{algo} ends above the data's mean return", measured + agg.fmt_ci(effect, signed=True), from_interval(effect))
        )
    return out


def _spread(*scores) -> float:
    values = [agg.iqm(s) for s in scores]
    return max(values) - min(values)


def _rosmo_steadier(rows, xs, claim: str, measure: str, reps: int) -> tuple:
    """(claim, measured, verdict): ROSMO's IQM varies less over the study's axis than MZU's: the interval of
    spread(MZU) - spread(ROSMO), spread = max - min of the IQM over the axis."""
    keys = [("rosmo", x) for x in xs] + [("mzu", x) for x in xs]
    n = len(xs)
    effect = _effect(rows, keys, lambda *s: _spread(*s[n:]) - _spread(*s[:n]), measure, reps)
    if effect is None:
        return claim, "-", NOT_MEASURED
    sr = _spread(*[_scores(rows, *k, measure) for k in keys[:n]])
    sm = _spread(*[_scores(rows, *k, measure) for k in keys[n:]])
    measured = f"spread rosmo {sr:.3f} vs mzu {sm:.3f}: mzu - rosmo {agg.fmt_ci(effect, signed=True)}"
    return claim, measured, from_interval(effect)


def claims(study: str, rows: List[Dict], args: Args, measure: Optional[str] = None) -> List[tuple]:
    """(paper's claim, what was measured, verdict) for the study; `measure`: the scores compared ('late' or
    'final'; by default the late averages where every row has them)."""
    measure = measure or verdict_measure(rows)
    reps = args.bootstrap_reps
    out = []

    def compare(a, b, **kw):
        return _compare(rows, a, b, measure, reps, **kw)

    if study == "table2":
        # Every requested row, finished or not: a claim over the table is "not measured" until all of it is in.
        algos = list(dict.fromkeys(r["series"] for r in rows))
        if "rosmo" in algos:
            others = [a for a in algos if a not in ("rosmo", "rosmo-data")]  # rosmo-data is ROSMO, read differently
            checks = [compare(("rosmo", None), (a, None)) for a in others]
            out.append(
                (
                    "ROSMO has the best overall result (IQM over the tasks)",
                    "; ".join(text for _, text in checks),
                    combine([v for v, _ in checks]),
                )
            )
        for bc in ("bc", "bc-greedy"):
            if bc in algos:
                rl = [a for a in algos if not a.startswith("bc")]
                checks = [compare((a, None), (bc, None)) for a in rl]
                out.append(
                    (
                        f"every offline RL method beats behaviour cloning ({bc})",
                        "; ".join(text for _, text in checks) or "-",
                        combine([v for v, _ in checks]),
                    )
                )
        if "rosmo-data" in algos and "rosmo" in algos:
            verdict, text = compare(("rosmo", None), ("rosmo-data", None))
            out.append(("Eq. 11 read with the model's advantage (default) vs the data's (official release)", text, verdict))
    elif study == "lr_decay":
        verdict, text = compare(("decay x0.1 at half", None), ("no decay", None), at_least=True, names=("decay", "none"))
        claim = "the paper's schedule (x0.1 at half the budget) is at least as good as none at this budget (difference >= 0)"
        out.append((claim, text, verdict))
    elif study == "data_fraction":
        lo, hi = min(args.fractions), max(args.fractions)
        verdict, text = compare(("mzu", hi), ("mzu", lo), names=(f"mzu[{hi:g}]", f"mzu[{lo:g}]"))
        out.append((f"MZU degrades as coverage falls and is poor at {lo:g} of the data", text, verdict))
        out.append(_rosmo_above_mzu(rows, args.fractions, "ROSMO outperforms MZU at every data fraction", measure, reps))
    elif study == "noise":
        claim = "ROSMO is much less sensitive to the dataset noise than MZU (spread of the score over noise levels)"
        out.append(_rosmo_steadier(rows, args.noises, claim, measure, reps))
        out.append(_rosmo_above_mzu(rows, args.noises, "ROSMO scores above MZU at every noise level", measure, reps))
    elif study == "model_capacity":
        lo, hi = min(args.hidden_units), max(args.hidden_units)
        verdict, text = compare(("mzu", hi), ("mzu", lo), names=(f"mzu[{hi}]", f"mzu[{lo}]"))
        out.append((f"MZU degrades with less dynamics capacity ({lo} vs {hi} hidden units)", text, verdict))
        claim = "ROSMO is stable across capacities (smaller spread than MZU)"
        out.append(_rosmo_steadier(rows, args.hidden_units, claim, measure, reps))
        out.append(_rosmo_above_mzu(rows, args.hidden_units, "ROSMO outperforms MZU at every capacity", measure, reps))
    elif study == "search_budget":
        lo, hi = min(args.simulations), max(args.simulations)
        unlimited = "d=unlimited"
        if "muzero" in args.searches:
            if lo < hi:  # one budget alone has no low and high to compare
                verdict, text = compare((unlimited, hi), (unlimited, lo), names=(f"N={hi}", f"N={lo}"))
                claim = f"MZU fails to learn with a low simulation budget (N={lo} vs N={hi}, unlimited depth)"
                out.append((claim, text, verdict))
            shallow = f"d={min(d for d in args.depths if d > 0)}" if any(d > 0 for d in args.depths) else None
            if shallow is not None:  # a claim about a limited depth needs one among --depths
                verdict, text = compare((shallow, hi), (unlimited, hi), names=(shallow, "unlimited"))
                out.append((f"with many simulations (N={hi}) a deep search is worse than a limited depth", text, verdict))
        if "gumbel" in args.searches:
            for search in args.searches:
                out.append(_rosmo_above_search(rows, search, args.simulations, measure, reps))
            if "muzero" in args.searches:
                gumbel, muzero = (search_series("gumbel", 0), lo), (unlimited, lo)
                verdict, text = compare(gumbel, muzero, names=("gumbel", "muzero"))
                out.append((f"Gumbel's search beats MuZero's at N={lo} (unlimited depth)", text, verdict))
    elif study == "ablation_sampling":
        s, m, q = ("ROSMO sampled (N=4)", None), ("MZU (N=4)", None), ("MZU-Q (N=4)", None)
        verdict, text = compare(q, m, names=("mzu_q", "mzu"))
        out.append(("MZU-Q alleviates MZU's failure at 4 simulations", text, verdict))
        checks = [compare(s, q, names=("rosmo", "mzu_q")), compare(s, m, names=("rosmo", "mzu"))]
        claim = "sampled ROSMO performs well with 4 samples (above both)"
        out.append((claim, "; ".join(text for _, text in checks), combine([v for v, _ in checks])))
    elif study == "ablation_unroll":
        verdict, text = compare(("mzu", 5), ("mzu", 1), names=("mzu K=5", "mzu K=1"))
        out.append(("MZU drops significantly with a single-step unroll", text, verdict))
        keys = [("rosmo", 1), ("rosmo", 5), ("mzu", 1), ("mzu", 5)]
        effect = _effect(
            rows, keys, lambda r1, r5, m1, m5: abs(agg.iqm(m5) - agg.iqm(m1)) - abs(agg.iqm(r5) - agg.iqm(r1)), measure, reps
        )
        claim = "ROSMO is not sensitive to the unroll length (a smaller change than MZU's)"
        if effect is None:
            out.append((claim, "-", NOT_MEASURED))
        else:
            r1, r5, m1, m5 = (_fmt(_scores(rows, *k, measure)) for k in keys)
            measured = f"rosmo K=1 {r1} vs K=5 {r5}; mzu K=1 {m1} vs K=5 {m5}: abs(mzu change) - abs(rosmo change) "
            out.append((claim, measured + agg.fmt_ci(effect, signed=True), from_interval(effect)))
    elif study == "atari_small":
        # The claim compares with the data's mean game score (raw rewards, as evaluation returns are), taken from
        # the generator's summary: a run that streamed its data, or read an older cache, has not counted it.
        raw = {g: m for g in default_envs(study) + list(args.envs or []) if (m := behaviour_mean_return(args, g)) is not None}
        out += _above_the_data(rows, [a for a in ALGOS if _row(rows, a) is not None], measure, reps, raw)
        verdict, text = compare(("rosmo", None), ("bc", None))
        out.append(("ROSMO ends above behaviour cloning", text, verdict))
        verdict, text = compare(("rosmo", None), ("mzu", None))
        out.append(("ROSMO ends above MuZero Unplugged at the same number of updates", text, verdict))
    elif study == "ablation_regularization":
        full, one, beh = ("ROSMO", None), ("OneStep", None), ("Behavior", None)
        checks = [compare(full, one), compare(full, beh)]
        out.append(
            ("the full ROSMO is best at the end", "; ".join(text for _, text in checks), combine([v for v, _ in checks]))
        )
        verdict, text = compare(one, beh)
        out.append(("OneStep ends above Behavior", text, verdict))
        verdict, text = _compare(rows, beh, one, "first", reps)
        out.append(("Behavior learns faster than OneStep early on (first evaluation)", text, verdict))
    return out


def best_setting(rows: List[Dict]) -> Optional[str]:
    """The configuration with the highest final IQM (a choice made from a sweep, not a claim of the paper)."""
    best = max((r for r in rows if not r["missing"]), key=lambda r: r["iqm"][0], default=None)
    if best is None:
        return None
    return f"{best['series']} @ {best['x']}: final IQM {agg.fmt_ci(best['iqm'])}"


def report_stem(study: str, args: Args, envs: List[str]) -> Path:
    """Where a study's report goes: benchmark/results/{study}[_{envs}][_behaviournoise][_seeds{first}-{last}]_{budget}
    (no suffix; the seeds are named when they do not start at 0, so a check on other seeds keeps its own report)."""
    budget = f"{args.total_steps // 1000}k" if args.total_steps >= 1000 else f"{args.total_steps}"
    name = study if envs == default_envs(study) else f"{study}_{'_'.join(envs)}"
    name += "_behaviournoise" if study == "noise" and args.noise_in == "behaviour" else ""
    name += f"_seeds{args.seed}-{args.seed + args.num_seeds - 1}" if args.seed else ""
    return Path(args.out_dir) / f"{name}_{budget}"


# The settings that decide what a report's runs computed besides its configurations (series, x): a kept
# row is reused in a report with the same values only.
SAME_RUNS = ("num_seeds", "seed", "total_steps", "eval_every", "eval_episodes", "lr_decay_steps", "capacity_fraction")


def _kept_results(run: str) -> Optional[dict]:
    """The results of a run a kept report names: its run directory's results.json, else its kept record."""
    for path in (ROOT / run / "results.json", ROOT / f"{run}.json", RECORDS / f"{Path(run).name}.json"):
        if path.is_file():
            results = json.loads(path.read_text())
            if results.get("status") == "finished":
                run_dir = path.parent if path.name == "results.json" else path.with_suffix("")
                return {**results, "run_dir": str(run_dir.relative_to(ROOT))}
    return None


def seeds_from_intervals(row: Dict, envs: List[str], num_seeds: int, reps: int) -> Optional[dict]:
    """Every seed's return at every evaluation of a kept row of ONE task with at most 3 seeds, read back from
    its IQM curve's intervals (aggregate.runs_from_interval) and checked: each stored interval is recomputed
    from them, and the final ones give the stored mean and std of the final return. Which seed is which is
    lost (each evaluation's seeds come sorted), so `aligned` is False. None where this does not apply."""
    from common.scores import reference_scores

    if len(envs) != 1 or "curve" not in row:
        return None
    (env_id,) = envs
    random_return, online_return = reference_scores(env_id)
    history = []
    for estimate in row["curve"]["iqm"]:
        scores = agg.runs_from_interval(estimate, num_seeds)
        if scores is None or not np.allclose(agg.iqm_with_ci(scores[:, None], reps), estimate, rtol=0, atol=1e-9):
            return None
        history.append([round(float(random_return + s * (online_return - random_return)), 9) for s in scores])
    mean, std = row["returns"][env_id]
    if not (abs(np.mean(history[-1]) - mean) < 1e-6 and abs(np.std(history[-1]) - std) < 1e-6):
        return None
    return {
        "steps": list(row["curve"]["steps"]),
        "returns": {env_id: history},
        "final_returns": {env_id: history[-1]},
        "aligned": False,
        "source": "read back from the stored IQM curve and its intervals (the run files were not kept)",
    }


def kept_row(row: Dict, envs: List[str], num_seeds: int, reps: int) -> Dict:
    """A measured row of a kept report, with every seed's scores where they can be had: recomputed from the
    kept results of the runs it names when those reproduce its final IQM, else read back from its intervals
    (`seeds_from_intervals`), else as it was stored."""
    if row["missing"] or "per_seed" in row:
        return row
    runs = [_kept_results(run) for run in row.get("runs", [])]
    if runs and None not in runs and [r["env_id"] for r in runs] == envs:
        again = agg.summarise_runs(row["series"], row["x"], runs, reps)
        if np.allclose(again["iqm"], row["iqm"], rtol=0, atol=1e-9):
            return again
    seeds = seeds_from_intervals(row, envs, num_seeds, reps)
    if seeds is None:
        return row
    return {**row, "per_seed": seeds, "late": agg.late_summary(seeds, reps)}


def keep_measured(rows: List[Dict], stem: Path, args: Args, envs: List[str]) -> List[Dict]:
    """The rows of a report, with every configuration not measured now taken from the report's kept JSON
    where it was made with the same settings (SAME_RUNS, tasks). A report is never replaced by one that
    measures fewer of its configurations: that stops with an error and writes nothing."""
    path = stem.with_suffix(".json")
    if not path.is_file():
        return rows
    kept = json.loads(path.read_text())
    settings = kept.get("settings", {})
    same = kept.get("envs") == envs and all(settings.get(k) == getattr(args, k) for k in SAME_RUNS)
    measured = {(r["series"], r["x"]): r for r in kept.get("rows", []) if not r.get("missing")}
    if same:
        rows = [
            kept_row(measured[(r["series"], r["x"])], envs, args.num_seeds, args.bootstrap_reps)
            if r["missing"] and (r["series"], r["x"]) in measured
            else r
            for r in rows
        ]
    lost = set(measured) - {(r["series"], r["x"]) for r in rows if not r["missing"]}
    if lost:
        names = ", ".join(f"{s}" + (f" @ {x}" if x is not None else "") for s, x in sorted(lost, key=str))
        raise SystemExit(
            f"error: {path} measures {len(lost)} configuration(s) this report would leave out or show as not run "
            f"({names}); nothing written. Run them, regenerate it with --from-json {path}, or pass another --out-dir"
        )
    return rows


def _cell(estimate) -> str:
    if estimate is None:
        return "-"
    mean, std = estimate
    return f"{mean:.2f}" if std is None else f"{mean:.2f} +- {std:.2f}"


def write_study(
    study: str, args: Args, envs: List[str], rows: List[Dict], machine: Optional[str] = None, stem: Optional[Path] = None
) -> None:
    """The study's report from its rows (aggregate.summarise_runs): Markdown, JSON and plots at `stem`
    (default report_stem), the machine named `machine` (default this one)."""
    stem = stem or report_stem(study, args, envs)
    stem.parent.mkdir(parents=True, exist_ok=True)
    budget = stem.name.rsplit("_", 1)[1]
    machine = machine or machine_description()
    behaviour_noise = study == "noise" and args.noise_in == "behaviour"
    searches = study == "search_budget" and args.searches != ["muzero"]  # MZU's searches compared, ROSMO beside
    has_x = any(r["x"] is not None for r in rows)
    command = (
        f"python -m benchmark.reproduce --study {study} --envs {' '.join(envs)} --num-seeds {args.num_seeds} "
        f"--total-steps {args.total_steps} --eval-every {args.eval_every}"
        + (f" --seed {args.seed}" if args.seed else "")
        + (f" --lr-decay-steps {args.lr_decay_steps}" if args.lr_decay_steps is not None else "")
        + (f" --algos {' '.join(args.algos)}" if study == "table2" and args.algos != ROWS else "")
        + (" --noise-in behaviour" if behaviour_noise else "")
        + (
            f" --searches {' '.join(args.searches)} --simulations {' '.join(map(str, args.simulations))} "
            f"--depths {' '.join(map(str, args.depths))}"
            if searches
            else ""
        )
    )
    decay = (
        "the learning-rate schedule its row names"
        if study == "lr_decay"
        else (
            "no learning-rate decay within the budget"
            if (args.lr_decay_steps or 100_000) >= args.total_steps
            else f"learning rate x0.1 every {args.lr_decay_steps} updates"
        )
    )
    done = [r for r in rows if not r["missing"]]
    measure = verdict_measure(rows)
    late = next((r["late"] for r in done if "late" in r), None)
    window = f"updates {late['steps'][0]}-{late['steps'][1]}" if late else "-"
    read_back = [r for r in done if r.get("per_seed", {}).get("source", "").startswith("read back")]
    unkept = [r for r in done if "per_seed" not in r]
    devices: Dict[str, List[str]] = {}  # the devices a configuration's runs trained on: its configurations
    for r in done:
        where = " then ".join(r.get("devices") or ["not recorded"])
        devices.setdefault(where, []).append(r["series"] + (f" @ {r['x']}" if r["x"] is not None else ""))
    values = args.num_seeds * len(envs)
    head = (
        "| configuration | "
        + " | ".join(f"{e} final return | {e} last {agg.LATE_EVALUATIONS} evaluations" for e in envs)
        + f" | IQM final [95% CI] | IQM last {agg.LATE_EVALUATIONS} [95% CI] |"
        + (" updates/s (ms per update) |" if searches else "")
    )
    lines = [
        f"# {study}: {args.num_seeds} seeds x {args.total_steps} updates",
        "",
        f"Budget: {args.num_seeds} seeds per configuration, {args.total_steps} learner updates (paper: 5 seeds, 200k), "
        f"{args.eval_episodes} evaluation episodes per seed every {args.eval_every} updates, {decay}. Machine: {machine}.",
        *(
            [
                "Devices the runs trained on (each run's `devices`): "
                + "; ".join(f"{', '.join(v)}: {k}" for k, v in devices.items())
                + "."
            ]
            if len(set(devices) - {"not recorded"}) > 1
            else []
        ),
        f"Command: `{command}` (it reuses finished runs and continues unfinished ones). "
        f"The runs took {sum(r.get('wall_clock_s', 0) for r in rows) / 60:.1f} min of wall-clock time in all.",
        "Returns: mean +- std over seeds of the final return, and of each seed's mean return over its last "
        f"{agg.LATE_EVALUATIONS} evaluations ({window}). IQM over seeds x tasks of the normalised score, 95% "
        f"stratified-bootstrap percentile interval ({args.bootstrap_reps} resamples)"
        + (f"; with {values} values (fewer than 4) the IQM trims nothing and equals the mean." if values < 4 else "."),
        *(
            [
                "The run files of this table were not kept: every seed's return at each evaluation is read back from "
                "the stored IQM curve and its intervals (with one task and at most 3 seeds the interval's ends are the "
                "lowest and the highest seed, see `runs_from_interval` in benchmark/aggregate.py), checked by recomputing "
                "every stored interval and the final mean and std. Which seed is which is not kept, so a late average "
                "has no std or interval here, and the verdicts compare the final scores."
            ]
            if read_back
            else []
        ),
        *(
            [
                "The data's noise: "
                + (
                    "the behaviour agent replaced its action at random and the executed action was recorded, so the "
                    "recorded transitions are deterministic (noisier behaviour, not the paper's stochastic dynamics)."
                    if behaviour_noise
                    else "the environment replaced the agent's action at random and the agent's action was recorded, "
                    "so the recorded transitions are stochastic (the paper's Appendix E)."
                )
                + " Evaluation runs in the noise-free task, as in the official release."
            ]
            if study == "noise"
            else []
        ),
        *(
            [
                "Searches: `d=...` is MZU with MuZero's search (pUCT, the visit distribution as the policy target), "
                "`gumbel d=...` MZU with `--search gumbel` (Gumbel MuZero: Sequential Halving, the improved policy of "
                "completed Q-values as the target), each with N simulations (`@ N`) and maximum depth d; `rosmo` is "
                "ROSMO with the same settings, the reference. Updates/s: the mean over the configuration's runs (one "
                "per task) of each run's training-loop rate (every vmapped seed advances; compilation and evaluation "
                "excluded), and its inverse."
            ]
            if searches
            else []
        ),
        "",
        head,
        "|---|" + "---|---|" * len(envs) + "---|---|" + ("---|" if searches else ""),
    ]
    for r in rows:
        name = r["series"] + (f" @ {r['x']}" if r["x"] is not None else "")
        if r["missing"]:
            partial = r.get("returns", {})
            cells = [f"{_cell(partial[e])} | -" if e in partial else "not run | -" for e in envs]
            lines.append(f"| {name} | " + " | ".join(cells) + " | - | - |" + (" - |" if searches else ""))
            continue
        row_late = r.get("late", {})
        cells = [f"{_cell(r['returns'][e])} | {_cell(row_late.get('returns', {}).get(e))}" for e in envs]
        speed = r.get("updates_per_s")
        speed = "-" if speed is None else f"{speed:.1f} ({1000 / speed:.1f})"
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {agg.fmt_ci(r['iqm'])} | {agg.fmt_ci(row_late.get('iqm'))} |"
            + (f" {speed} |" if searches else "")
        )
    data = next(
        (r["data_returns"] for r in rows if not r["missing"] and r["x"] in (None, 1.0, 0.0, max(args.hidden_units))), None
    )
    if data and study in (
        "table2",
        "lr_decay",
        "cql_sweep",
        "ablation_sampling",
        "ablation_unroll",
        "ablation_regularization",
    ):
        lines += ["", "Mean return of the data: " + ", ".join(f"{e} {data[e]:.2f}" for e in envs) + "."]
    if study == "atari_small":
        lines += ["", *atari_data_lines(args, envs, data or {})]
    if unkept:
        lines += ["", "Kept without per-seed scores (no claim can use them): " + ", ".join(r["series"] for r in unkept) + "."]
    found = claims(study, rows, args, measure)
    measure_name = (
        f"each seed's normalised late average (its mean over its last {agg.LATE_EVALUATIONS} evaluations)"
        if measure == "late"
        else "each seed's normalised final score"
    )
    lines += [
        "",
        "## The paper's claims against this run",
        "",
        f"Each comparison X vs Y reads {measure_name}: the IQMs, the difference "
        "IQM(X) - IQM(Y) and the probability of improvement P(X > Y) (rliable's), each with its 95% stratified-bootstrap "
        "interval (X's and Y's runs resampled independently). Verdict: **holds** when the interval of the difference "
        "lies above 0, **does not hold** when it lies below 0, **inconclusive** when it contains 0 (an 'at least as "
        "good' claim holds when the interval lies at or above 0); a claim made of several comparisons holds when all "
        "hold and does not hold when any does not.",
        "",
    ]
    if found:
        lines += ["| claim (paper) | measured (IQM normalised score) | verdict |", "|---|---|---|"]
        lines += [f"| {c} | {m} | {v} |" for c, m, v in found]
    else:
        lines += ["No claim of the paper is checked by this study."]
    choice = best_setting(rows) if study == "cql_sweep" else None
    if choice:
        lines += ["", f"The setting chosen from this sweep (the highest final IQM; a choice, not a claim): {choice}."]
    profiles = [r for r in done if "per_seed" in r]
    plot_profiles = 0 < len(profiles) <= 8
    lines += ["", f"![final]({stem.name}.png)", "", f"![curves]({stem.name}_curves.png)", ""]
    lines += [f"![score distributions]({stem.name}_profiles.png)", ""] if plot_profiles else []
    data = {
        "study": study,
        "settings": vars(args),
        "envs": envs,
        "machine": machine,
        "verdict_measure": measure,
        "claims": [{"claim": c, "measured": m, "verdict": v} for c, m, v in found],
        "rows": rows,
    }
    write_report(stem.with_suffix(".md"), lines, data)

    if not done:
        return
    title = f"{study} ({', '.join(envs)}; {args.num_seeds} seeds, {budget} updates)"
    if has_x:
        lines_by_series: Dict[str, tuple] = {}
        for r in done:
            if r["x"] is None:  # a configuration off the axis (search_budget's ROSMO) is a reference line
                continue
            xs, est = lines_by_series.setdefault(r["series"], ([], []))
            xs.append(r["x"])
            est.append(r["iqm"])
        categorical = study in ("search_budget", "ablation_unroll", "model_capacity", "data_fraction")
        xlabel = {
            "cql_sweep": "alpha",
            "data_fraction": "data fraction",
            "noise": "dataset noise epsilon",
            "model_capacity": "dynamics hidden units",
            "search_budget": "simulations N",
            "ablation_unroll": "unroll steps K",
        }[study]
        agg.plot_lines(
            stem.with_suffix(".png"),
            title,
            xlabel,
            {k: (xs, np.array(e)) for k, (xs, e) in lines_by_series.items()},
            categorical=categorical,
            references={r["series"]: r["iqm"] for r in done if r["x"] is None},
        )
    else:
        agg.plot_lines(
            stem.with_suffix(".png"),
            title,
            "configuration",
            {"final IQM": ([r["series"] for r in done], np.array([r["iqm"] for r in done]))},
            categorical=True,
        )
    agg.plot_curves(
        stem.parent / f"{stem.name}_curves.png",
        title,
        {
            r["series"] + (f" @ {r['x']}" if r["x"] is not None else ""): {k: np.asarray(v) for k, v in r["curve"].items()}
            for r in done
        },
    )
    if plot_profiles:
        scores = {
            r["series"] + (f" @ {r['x']}" if r["x"] is not None else ""): agg.seed_scores(r["per_seed"], measure)
            for r in profiles
        }
        every = np.concatenate([s.ravel() for s in scores.values()])
        taus = np.linspace(min(every.min(), 0.0) - 0.05, max(every.max(), 1.0) + 0.05, 121)
        agg.plot_profiles(
            stem.parent / f"{stem.name}_profiles.png",
            f"{title}\nscore distributions of the {'late averages' if measure == 'late' else 'final scores'}",
            {name: (taus, agg.performance_profile_with_ci(s, taus, args.bootstrap_reps)) for name, s in scores.items()},
        )
    print(f"wrote {stem}.md")


def rewrite_from_json(path: str) -> None:
    """Rewrite the report kept at `path` (its .md, .json and plots) from what its JSON keeps, with the
    settings it was made with: the runs' kept results where they are in the repository, else its rows."""
    import dataclasses

    path = Path(path)
    kept = json.loads(path.read_text())
    if not {"study", "settings", "envs", "rows"} <= set(kept):
        raise SystemExit(f"error: {path} is not a report of benchmark/reproduce.py (it lacks study, settings, envs or rows)")
    skip = {"study", "envs", "workdir", "out_dir", "dry_run", "report_only", "from_json"}
    fields = {f.name for f in dataclasses.fields(Args)} - skip
    args = Args(
        study=kept["study"],
        envs=kept["envs"],
        out_dir=str(path.parent.resolve()),
        **{k: v for k, v in kept["settings"].items() if k in fields},
    )
    rows = [kept_row(r, kept["envs"], args.num_seeds, args.bootstrap_reps) for r in kept["rows"]]
    write_study(kept["study"], args, kept["envs"], rows, machine=kept.get("machine"), stem=path.with_suffix(""))


def behaviour_summary(args: Args, game: str) -> Optional[dict]:
    """The behaviour data generator's summary of `game` (common/atari/behaviour.py), if it is there."""
    path = Path(args.workdir) / args.atari_data_dir / game / "behaviour_run_1.json"
    return json.loads(path.read_text()) if path.is_file() else None


def behaviour_mean_return(args: Args, game: str) -> Optional[float]:
    """The raw (unclipped) mean episode return of `game`'s behaviour data, None without its summary."""
    summary = behaviour_summary(args, game)
    return None if summary is None else summary["mean_return"]


def atari_data_lines(args: Args, games: List[str], data_returns: Dict[str, float]) -> List[str]:
    """The atari_small report's description of its data: per game the mean return of all its episodes, of the
    uniformly random policy (the first shard) and of the controller alone (the last), from the generator's summary."""
    summaries = [behaviour_summary(args, game) for game in games]
    kinds = {(summary or {}).get("settings", {}).get("controller", "planner") for summary in summaries if summary}
    controller = {
        "tracker": "tracking controller (the paddle follows the ball)",
        "planner": "look-ahead planner",
    }.get(kinds.pop() if len(kinds) == 1 else "", "controllers")
    lines = [
        f"The data: common/atari/behaviour.py's {controller} mixed with random actions, epsilon falling from 1 "
        "(shard 0) to 0 (shard 49); episodes and evaluation both cut at 2,000 agent steps; the small networks "
        "(--network-size small) at batch 32. Normalised scores use the game's random and online DQN returns.",
        "",
        "| game | episodes | transitions | data's mean return (raw; clipped) | random policy (shard 0) | "
        "controller with epsilon <= 0.08 (shards 45-49) | best shard |",
        "|---|---|---|---|---|---|---|",
    ]
    for game in games:
        summary = behaviour_summary(args, game)
        clipped = data_returns.get(game)
        clipped = "-" if clipped is None else f"{clipped:.2f}"
        if summary is None:
            lines.append(f"| {game} | - | - | -; {clipped} | - | - | - |")
            continue
        shards = summary["shards"]
        best = max(shards, key=lambda s: np.mean(s["returns"]))
        lines.append(
            f"| {game} | {summary['episodes']} | {summary['steps']} | {summary['mean_return']:.2f}; {clipped} | "
            f"{np.mean(shards[0]['returns']):.2f} | {np.mean([r for s in shards[-5:] for r in s['returns']]):.2f} | "
            f"{np.mean(best['returns']):.2f} (shard {best['shard']}) |"
        )
    return lines


def ensure_atari_data(args: Args, games: List[str]) -> None:
    """Generate (or finish generating) the atari_small study's behaviour data of `games`; a game whose data is
    complete is left as it is (the generator skips the shards already written)."""
    for game in games:
        cmd = [sys.executable, "-m", "common.atari.behaviour", "--game", game, "--out", args.atari_data_dir]
        cmd += ["--controller", "tracker"]
        cmd += ["--episodes-per-shard", str(ATARI_SMALL_GAMES.get(game, 1))]
        print(f"data: {' '.join(cmd[1:])}", flush=True)
        subprocess.run(cmd, cwd=args.workdir, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def main(args: Args) -> None:
    if args.from_json:
        return rewrite_from_json(args.from_json)
    defaults = (
        ATARI_SMALL_DEFAULTS if args.study == "atari_small" else {"num_seeds": 5, "total_steps": 200_000, "eval_episodes": 20}
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.eval_every is None:
        args.eval_every = max(args.total_steps // 10, 1)
    if args.study == "atari_small":
        from common.atari.games import GAMES

        unknown = [e for e in (args.envs or []) if e not in GAMES]
        if unknown:
            raise SystemExit(f"error: --envs {' '.join(unknown)} are not RL Unplugged Atari games (e.g. Breakout, Pong)")
        if not (args.dry_run or args.report_only):
            ensure_atari_data(args, args.envs or default_envs("atari_small"))
    unknown = [e for e in (args.envs or []) if e not in BSUITE and args.study != "atari_small"]
    if unknown:
        raise SystemExit(f"error: --envs {' '.join(unknown)} are not BSuite tasks; use some of {', '.join(BSUITE)}")
    bad = [a for a in args.algos if a not in ROWS]
    if bad:
        raise SystemExit(f"error: --algos {' '.join(bad)} are not Table 2 rows; use some of {', '.join(ROWS)}")
    start = time.time()
    # 'all' is the BSuite reproduction; the Atari study has its own defaults and is run by name.
    for study in [s for s in STUDIES if s != "atari_small"] if args.study == "all" else [args.study]:
        envs = args.envs or default_envs(study)
        study_start = time.time()
        configs = study_configs(study, args, envs)
        print(f"== {study}: {len(configs)} runs ({args.num_seeds} seeds each) ==", flush=True)
        results = run_configs(configs, f"repro_{study}", args.dry_run or args.report_only, Path(args.workdir))
        if args.dry_run:
            continue
        stem = report_stem(study, args, envs)
        rows = keep_measured(agg.summarise(configs, results, args.bootstrap_reps), stem, args, envs)
        if all(r["missing"] for r in rows):
            print(f"{study}: no finished run at this budget and no kept report at {stem}.json; nothing written")
            continue
        write_study(study, args, envs, rows)
        print(f"{study}: {(time.time() - study_start) / 60:.1f} min", flush=True)
    print(f"total wall-clock time: {(time.time() - start) / 60:.1f} min")


if __name__ == "__main__":
    main(tyro.cli(Args))
