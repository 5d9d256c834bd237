"""One-command reproductions of the paper's BSuite study (Section 4, Table 1, Table 2, Fig. 2, Fig. 4).

    python benchmark/reproduce.py --study table2                      # paper budget: 5 seeds x 200k updates
    python benchmark/reproduce.py --study noise --num-seeds 3 --total-steps 10000   # a CPU-sized budget
    python benchmark/reproduce.py --study all --dry-run                # list every run it would do
    python benchmark/reproduce.py --study all --report-only            # tables from the runs finished so far

Studies (each one runs the algorithm scripts with all seeds of a configuration vmapped in one
process, `--num-seeds`):

  table2                   Table 2: all six algorithms x the BSuite tasks, final returns.
  data_fraction            Hypothesis 1 (Fig. 2a): ROSMO vs MZU with 1%, 10%, 100% of the data.
  noise                    Hypothesis 2 (Table 1): ROSMO vs MZU on catch with noise 0, 0.1, 0.3, 0.5.
  model_capacity           Hypothesis 3 (Fig. 2b): dynamics hidden units 32..1024, 10% of the data.
  search_budget            Hypothesis 4 (Fig. 2c): MZU with N simulations x search depth d.
  ablation_sampling        Fig. 4b: sampled ROSMO (N=4) vs MZU (4 simulations) vs MZU-Q (4).
  ablation_unroll          Fig. 4c: ROSMO and MZU with unroll K = 1 and K = 5.
  ablation_regularization  Fig. 4d: ROSMO vs OneStep (no behaviour term) vs Behavior (only it).

Resumable: a run is reused when a finished results.json with the same resolved arguments
exists under runs/ (whatever study or command made it), so an interrupted study picks up where
it stopped and studies share their common runs. For each study it writes, under
benchmark/results/ (stem `{study}_{budget}`): a Markdown table (per configuration the mean and
std of the final return per task and the IQM normalised score with its 95% stratified-bootstrap
interval, then the paper's claims against the measured outcome), the same as JSON with every
run's path, a PNG of the final IQM per configuration and a PNG of the learning curves over
updates and over wall-clock time. The Fig. 4 ablations are Atari experiments in the paper
(MsPacman); here they run on the BSuite tasks. Every table names the budget and the machine.
"""

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional

import aggregate as agg
import numpy as np
import tyro
from common_bench import ROOT, Config, machine_description, run_configs, write_report

sys.path.insert(0, str(ROOT))  # common/ (score tables)

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
]


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
        "all",
    ] = "table2"
    """which reproduction to run ('all' runs them one after another)"""
    envs: Optional[List[str]] = None
    """BSuite tasks (default: the paper's, i.e. all three; catch only for the noise study)"""
    num_seeds: int = 5
    """seeds per configuration, vmapped in one process (paper: 5)"""
    seed: int = 0
    """first seed"""
    total_steps: int = 200_000
    """learner updates per run (paper: 200k)"""
    eval_every: Optional[int] = None
    """updates between evaluations (default total_steps / 10)"""
    eval_episodes: int = 20
    """evaluation episodes per seed"""
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
    bootstrap_reps: int = 2000
    """stratified-bootstrap resamples per confidence interval"""
    workdir: str = str(ROOT)
    """where the runs live (runs/ and datasets/ under it)"""
    out_dir: str = str(ROOT / "benchmark" / "results")
    """where the tables and plots go"""
    dry_run: bool = False
    """list the runs (and which are already finished) without running anything"""
    report_only: bool = False
    """write the tables and plots from the runs already finished (the others show as 'not run'), running nothing"""


def default_envs(study: str) -> List[str]:
    return ["catch"] if study == "noise" else ["cartpole"] if study in ("lr_decay", "cql_sweep") else list(BSUITE)


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
        for depth in args.depths:
            for n in args.simulations:
                depth_flag = {} if depth == 0 else {"max_depth": depth}
                add("mzu", f"d={depth or 'unlimited'}", n, num_simulations=n, **depth_flag)
    elif study == "ablation_sampling":
        add("rosmo", "ROSMO sampled (N=4)", num_samples=4)
        add("mzu", "MZU (N=4)", num_simulations=4)
        add("mzu_q", "MZU-Q (N=4)", num_simulations=4)
    elif study == "ablation_unroll":
        for algo in ("rosmo", "mzu"):
            for k in (1, 5):
                add(algo, algo, k, unroll_steps=k)
    elif study == "ablation_regularization":
        add("rosmo", "ROSMO")
        add("rosmo", "OneStep", behavior_coef=0.0)
        add("rosmo", "Behavior", behavior_only=True)
    return configs


# ---------------------------------------------------------------------------------------------
# The paper's claims, each checked against the measured rows. A claim "holds" when the point
# estimates order as claimed; "(intervals overlap)" says the 95% intervals do not separate them.


def _get(rows, series, x=None):
    for r in rows:
        if r["series"] == series and r["x"] == x and not r["missing"]:
            return r["iqm"]
    return None


def _better(a, b) -> str:
    if a is None or b is None:
        return "not measured"
    if abs(a[0] - b[0]) < 1e-9:
        return "does not hold (tie)"
    if a[0] < b[0]:
        return "does not hold"
    return "holds" if a[1] > b[2] else "holds (intervals overlap)"


def _verdict(checks: List[str]) -> str:
    if any(c == "not measured" for c in checks):
        return "not measured"
    if all(c.startswith("holds") for c in checks):
        return "holds" if all(c == "holds" for c in checks) else "holds (intervals overlap)"
    return "does not hold" if not any(c.startswith("holds") for c in checks) else "partly holds"


def _spread(rows, series):
    """max - min of the series' IQM over the study's axis; None until every point of it is measured."""
    points = [r for r in rows if r["series"] == series]
    if not points or any(r["missing"] for r in points):
        return None
    values = [r["iqm"][0] for r in points]
    return max(values) - min(values)


def _fmt(estimate) -> str:
    return "-" if estimate is None else f"{estimate[0]:.3f}"


def _rosmo_above_mzu(rows, xs, claim: str) -> tuple:
    """(claim, measured, verdict): ROSMO's IQM above MZU's at every x of the study."""
    checks = [_better(_get(rows, "rosmo", x), _get(rows, "mzu", x)) for x in xs]
    measured = "; ".join(f"{x:g}: rosmo {_fmt(_get(rows, 'rosmo', x))} vs mzu {_fmt(_get(rows, 'mzu', x))}" for x in xs)
    return claim, measured, _verdict(checks)


def _rosmo_steadier(rows, claim: str) -> tuple:
    """(claim, measured, verdict): ROSMO's IQM varies less over the study's axis than MZU's (max - min)."""
    sr, sm = _spread(rows, "rosmo"), _spread(rows, "mzu")
    if sr is None or sm is None:
        return claim, "-", "not measured"
    return claim, f"spread rosmo {sr:.3f} vs mzu {sm:.3f}", "holds" if sr < sm else "does not hold"


def claims(study: str, rows: List[Dict], args: Args) -> List[tuple]:
    """(paper's claim, what was measured, verdict) for the study."""
    out = []
    f = _fmt
    if study == "table2":
        # Every requested row, finished or not: a claim over the table is "not measured" until all of it is in.
        algos = list(dict.fromkeys(r["series"] for r in rows))
        if "rosmo" in algos:
            others = [a for a in algos if a not in ("rosmo", "rosmo-data")]  # rosmo-data is ROSMO, read differently
            checks = [_better(_get(rows, "rosmo"), _get(rows, a)) for a in others]
            out.append(
                (
                    "ROSMO has the best overall result (IQM over the tasks)",
                    ", ".join(f"{a} {f(_get(rows, a))}" for a in algos),
                    _verdict(checks),
                )
            )
        for bc in ("bc", "bc-greedy"):
            if bc in algos:
                rl = [a for a in algos if not a.startswith("bc")]
                checks = [_better(_get(rows, a), _get(rows, bc)) for a in rl] or ["not measured"]
                out.append(
                    (
                        f"every offline RL method beats behaviour cloning ({bc})",
                        ", ".join(f"{a} {f(_get(rows, a))}" for a in rl) + f" vs {bc} {f(_get(rows, bc))}",
                        _verdict(checks),
                    )
                )
        if "rosmo-data" in algos and "rosmo" in algos:
            out.append(
                (
                    "Eq. 11 read with the model's advantage (default) vs the data's (official release)",
                    f"rosmo {f(_get(rows, 'rosmo'))} vs rosmo-data {f(_get(rows, 'rosmo-data'))}",
                    _better(_get(rows, "rosmo"), _get(rows, "rosmo-data")),
                )
            )
    elif study == "lr_decay":
        a, b = _get(rows, "decay x0.1 at half"), _get(rows, "no decay")
        out.append(
            (
                "the paper's schedule (x0.1 at half the budget) is at least as good as none at this budget",
                f"decay {f(a)} vs none {f(b)}",
                "holds"
                if a is not None and b is not None and a[0] >= b[0]
                else ("not measured" if a is None or b is None else "does not hold"),
            )
        )
    elif study == "cql_sweep":
        best = max((r for r in rows if not r["missing"]), key=lambda r: r["iqm"][0], default=None)
        if best is not None:
            out.append(
                (
                    "(choice) the best CQL setting on this task",
                    f"{best['series']} @ alpha {best['x']}: {f(best['iqm'])}",
                    "measured",
                )
            )
    elif study == "data_fraction":
        lo, hi = min(args.fractions), max(args.fractions)
        out.append(
            (
                f"MZU degrades as coverage falls and is poor at {lo:g} of the data",
                f"mzu {f(_get(rows, 'mzu', lo))} at {lo:g} vs {f(_get(rows, 'mzu', hi))} at {hi:g}",
                _better(_get(rows, "mzu", hi), _get(rows, "mzu", lo)),
            )
        )
        out.append(_rosmo_above_mzu(rows, args.fractions, "ROSMO outperforms MZU at every data fraction"))
    elif study == "noise":
        out.append(
            _rosmo_steadier(
                rows, "ROSMO is much less sensitive to the dataset noise than MZU (spread of the score over noise levels)"
            )
        )
        out.append(_rosmo_above_mzu(rows, args.noises, "ROSMO scores above MZU at every noise level"))
    elif study == "model_capacity":
        lo, hi = min(args.hidden_units), max(args.hidden_units)
        out.append(
            (
                f"MZU degrades with less dynamics capacity ({lo} vs {hi} hidden units)",
                f"mzu {f(_get(rows, 'mzu', lo))} at {lo} vs {f(_get(rows, 'mzu', hi))} at {hi}",
                _better(_get(rows, "mzu", hi), _get(rows, "mzu", lo)),
            )
        )
        out.append(_rosmo_steadier(rows, "ROSMO is stable across capacities (smaller spread than MZU)"))
        out.append(_rosmo_above_mzu(rows, args.hidden_units, "ROSMO outperforms MZU at every capacity"))
    elif study == "search_budget":
        lo, hi = min(args.simulations), max(args.simulations)
        unlimited = "d=unlimited"
        out.append(
            (
                f"MZU fails to learn with a low simulation budget (N={lo} vs N={hi}, unlimited depth)",
                f"N={lo} {f(_get(rows, unlimited, lo))} vs N={hi} {f(_get(rows, unlimited, hi))}",
                _better(_get(rows, unlimited, hi), _get(rows, unlimited, lo)),
            )
        )
        shallow = f"d={min(d for d in args.depths if d > 0)}" if any(d > 0 for d in args.depths) else None
        out.append(
            (
                f"with many simulations (N={hi}) a deep search is worse than a limited depth",
                f"{shallow} {f(_get(rows, shallow, hi))} vs unlimited {f(_get(rows, unlimited, hi))}",
                _better(_get(rows, shallow, hi), _get(rows, unlimited, hi)),
            )
        )
    elif study == "ablation_sampling":
        s, m, q = (_get(rows, n) for n in ("ROSMO sampled (N=4)", "MZU (N=4)", "MZU-Q (N=4)"))
        out.append(("MZU-Q alleviates MZU's failure at 4 simulations", f"mzu_q {f(q)} vs mzu {f(m)}", _better(q, m)))
        out.append(
            (
                "sampled ROSMO performs well with 4 samples (above both)",
                f"rosmo {f(s)} vs mzu_q {f(q)}, mzu {f(m)}",
                _verdict([_better(s, q), _better(s, m)]),
            )
        )
    elif study == "ablation_unroll":
        r1, r5, m1, m5 = _get(rows, "rosmo", 1), _get(rows, "rosmo", 5), _get(rows, "mzu", 1), _get(rows, "mzu", 5)
        out.append(("MZU drops significantly with a single-step unroll", f"mzu K=1 {f(m1)} vs K=5 {f(m5)}", _better(m5, m1)))
        if None not in (r1, r5, m1, m5):
            out.append(
                (
                    "ROSMO is not sensitive to the unroll length (a smaller change than MZU's)",
                    f"rosmo K=1 {f(r1)} vs K=5 {f(r5)}; mzu K=1 {f(m1)} vs K=5 {f(m5)}",
                    "holds" if abs(r5[0] - r1[0]) < abs(m5[0] - m1[0]) else "does not hold",
                )
            )
    elif study == "ablation_regularization":
        full, one, beh = (_get(rows, n) for n in ("ROSMO", "OneStep", "Behavior"))
        out.append(
            (
                "the full ROSMO is best at the end",
                f"ROSMO {f(full)}, OneStep {f(one)}, Behavior {f(beh)}",
                _verdict([_better(full, one), _better(full, beh)]),
            )
        )
        out.append(("OneStep ends above Behavior", f"OneStep {f(one)} vs Behavior {f(beh)}", _better(one, beh)))
        curves = {r["series"]: r["curve"]["iqm"] for r in rows if not r["missing"]}
        if "OneStep" in curves and "Behavior" in curves:
            b, o = curves["Behavior"][0], curves["OneStep"][0]
            out.append(
                (
                    "Behavior learns faster than OneStep early on (first evaluation)",
                    f"Behavior {b[0]:.3f} vs OneStep {o[0]:.3f}",
                    _better(b, o),
                )
            )
    return out


def write_study(study: str, args: Args, envs: List[str], configs: List[Config], results: List[dict]) -> None:
    rows = agg.summarise(configs, results, args.bootstrap_reps)
    budget = f"{args.total_steps // 1000}k" if args.total_steps >= 1000 else f"{args.total_steps}"
    name = study if envs == default_envs(study) else f"{study}_{'_'.join(envs)}"
    behaviour_noise = study == "noise" and args.noise_in == "behaviour"
    name += "_behaviournoise" if behaviour_noise else ""
    stem = Path(args.out_dir) / f"{name}_{budget}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    machine = machine_description()
    has_x = any(r["x"] is not None for r in rows)
    command = (
        f"python benchmark/reproduce.py --study {study} --envs {' '.join(envs)} --num-seeds {args.num_seeds} "
        f"--total-steps {args.total_steps} --eval-every {args.eval_every}"
        + (f" --lr-decay-steps {args.lr_decay_steps}" if args.lr_decay_steps is not None else "")
        + (f" --algos {' '.join(args.algos)}" if study == "table2" and args.algos != ROWS else "")
        + (" --noise-in behaviour" if behaviour_noise else "")
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
    head = "| configuration | " + " | ".join(f"{e} return (mean +- std)" for e in envs) + " | IQM normalised score [95% CI] |"
    lines = [
        f"# {study}: {args.num_seeds} seeds x {args.total_steps} updates",
        "",
        f"Budget: {args.num_seeds} seeds per configuration, {args.total_steps} learner updates (paper: 5 seeds, 200k), "
        f"{args.eval_episodes} evaluation episodes per seed every {args.eval_every} updates, {decay}. Machine: {machine}.",
        f"Command: `{command}` (it reuses finished runs and continues unfinished ones). "
        f"The runs took {sum(r.get('wall_clock_s', 0) for r in rows) / 60:.1f} min of wall-clock time in all.",
        "IQM over seeds x tasks of the normalised final score, 95% stratified-bootstrap percentile interval "
        f"({args.bootstrap_reps} resamples).",
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
        "",
        head,
        "|---|" + "---|" * (len(envs) + 1),
    ]
    for r in rows:
        name = r["series"] + (f" @ {r['x']}" if r["x"] is not None else "")
        if r["missing"]:
            partial = r.get("returns", {})
            cells = [f"{partial[e][0]:.2f} +- {partial[e][1]:.2f}" if e in partial else "not run" for e in envs]
            lines.append(f"| {name} | " + " | ".join(cells) + " | - |")
            continue
        cells = [f"{r['returns'][e][0]:.2f} +- {r['returns'][e][1]:.2f}" for e in envs]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {agg.fmt_ci(r['iqm'])} |")
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
    lines += [
        "",
        "## The paper's claims against this run",
        "",
        "| claim (paper) | measured (IQM) | verdict |",
        "|---|---|---|",
    ]
    lines += [f"| {c} | {m} | {v} |" for c, m, v in claims(study, rows, args)]
    lines += ["", f"![final]({stem.name}.png)", "", f"![curves]({stem.name}_curves.png)", ""]
    data = {"study": study, "settings": vars(args), "envs": envs, "machine": machine, "rows": rows}
    write_report(stem.with_suffix(".md"), lines, data)

    done = [r for r in rows if not r["missing"]]
    if not done:
        return
    title = f"{study} ({', '.join(envs)}; {args.num_seeds} seeds, {budget} updates)"
    if has_x:
        lines_by_series: Dict[str, tuple] = {}
        for r in done:
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
    print(f"wrote {stem}.md")


def main(args: Args) -> None:
    if args.eval_every is None:
        args.eval_every = max(args.total_steps // 10, 1)
    unknown = [e for e in (args.envs or []) if e not in BSUITE]
    if unknown:
        raise SystemExit(f"error: --envs {' '.join(unknown)} are not BSuite tasks; use some of {', '.join(BSUITE)}")
    bad = [a for a in args.algos if a not in ROWS]
    if bad:
        raise SystemExit(f"error: --algos {' '.join(bad)} are not Table 2 rows; use some of {', '.join(ROWS)}")
    start = time.time()
    for study in STUDIES if args.study == "all" else [args.study]:
        envs = args.envs or default_envs(study)
        study_start = time.time()
        configs = study_configs(study, args, envs)
        print(f"== {study}: {len(configs)} runs ({args.num_seeds} seeds each) ==", flush=True)
        results = run_configs(configs, f"repro_{study}", args.dry_run or args.report_only, Path(args.workdir))
        if args.dry_run:
            continue
        write_study(study, args, envs, configs, results)
        print(f"{study}: {(time.time() - study_start) / 60:.1f} min", flush=True)
    print(f"total wall-clock time: {(time.time() - start) / 60:.1f} min")


if __name__ == "__main__":
    main(tyro.cli(Args))
