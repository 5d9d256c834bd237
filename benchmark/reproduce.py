"""One-command reproductions of the paper's BSuite study (Section 4, Table 1, Table 2, Fig. 2, Fig. 4).

    python -m benchmark.reproduce --study table2                      # paper budget: 5 seeds x 200k updates
    python -m benchmark.reproduce --study noise --num-seeds 3 --total-steps 10000   # a CPU-sized budget
    python -m benchmark.reproduce --study all --dry-run                # list every run it would do
    python -m benchmark.reproduce --study all --report-only            # tables from the runs finished so far
    python -m benchmark.reproduce --from-json benchmark/results/table2_50k.json   # rewrite a kept report from its JSON

Studies (each one entry of STUDIES in benchmark/studies.py, which holds everything that differs between
them; each runs the algorithm scripts with all seeds of a configuration vmapped in one process, `--num-seeds`):

  table2                   Table 2: all six algorithms x the BSuite tasks, final returns.
  lr_decay                 ROSMO with the paper's learning-rate decay (x0.1 at half the budget) and without.
  cql_sweep                CQL's penalty weight alpha with 10-, 3- and 1-step targets and two optimisers.
  data_fraction            Hypothesis 1 (Fig. 2a): ROSMO vs MZU with 1%, 10%, 100% of the data.
  noise                    Hypothesis 2 (Table 1): ROSMO vs MZU on catch with noise 0, 0.1, 0.3, 0.5.
  model_capacity           Hypothesis 3 (Fig. 2b): dynamics hidden units 32..1024, 10% of the data.
  search_budget            Hypothesis 4 (Fig. 2c): MZU with N simulations x search depth d; with
                           --searches muzero gumbel also Gumbel MuZero's search, and ROSMO as the reference.
  ablation_sampling        Fig. 4b: sampled ROSMO (N=4) vs MZU (4 simulations) vs MZU-Q (4).
  ablation_unroll          Fig. 4c: ROSMO and MZU with unroll K = 1 and K = 5.
  ablation_regularization  Fig. 4d: ROSMO vs OneStep (no behaviour term) vs Behavior (only it).
  atari_small              The six methods on Breakout and Pong of this project's behaviour data (not in 'all').

This file keeps the command line, the running (benchmark/runner.py) and the report writing, the same for
every study.

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

import dataclasses
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional

import numpy as np
import tyro

from benchmark import aggregate as agg
from benchmark.claims import best_setting, verdict_measure
from benchmark.common_bench import ROOT, machine_description, write_report
from benchmark.runner import RECORDS, Config, run_configs
from benchmark.studies import ROWS, STUDIES, VARIANTS

# --study: a study's name (an entry of STUDIES) or 'all'.
StudyName = Literal[(*STUDIES, "all")]  # type: ignore[valid-type]


@dataclass
class Args:
    study: StudyName = "table2"
    """which reproduction to run ('all' runs them one after another)"""
    envs: Optional[List[str]] = None
    """BSuite tasks (default: the paper's, i.e. all three; catch only for the noise study); atari_small: games
    (default Breakout and Pong)"""
    num_seeds: Optional[int] = None
    """seeds per configuration, vmapped in one process (default 5, the paper's; atari_small 3)"""
    seed: int = 0
    """first seed"""
    total_steps: Optional[int] = None
    """learner updates per run (default 200k, the paper's; atari_small 10k)"""
    eval_every: Optional[int] = None
    """updates between evaluations (default total_steps / 10)"""
    eval_episodes: Optional[int] = None
    """evaluation episodes per seed (default 20; atari_small 5)"""
    atari_data_dir: str = "datasets/atari_tracker"
    """atari_small: where its behaviour data is generated (python -m common.atari.behaviour) and read, under --workdir;
    its own directory, as finished runs and kept records are reused by their flags (--data-dir among them)"""
    algos: List[str] = field(default_factory=lambda: list(ROWS))
    """table2: the rows (the algorithms, 'rosmo-data', 'bc-greedy' and 'cql-alpha0.1'), run in this order"""
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


def study_configs(study: str, args: Args, envs: List[str]) -> List[Config]:
    """The runs of one study: algorithm, task, flags, and where each goes in the table."""
    configs = []

    # (first seed, seeds) of each run of a configuration: all seeds vmapped in one, or one run per seed
    pieces = [(args.seed, args.num_seeds)]
    if STUDIES[study].seed_per_run:
        pieces = [(seed, 1) for seed in range(args.seed, args.seed + args.num_seeds)]

    def add(algo: str, series: str, x=None, **flags) -> None:
        for env_id, (seed, num_seeds) in itertools.product(envs, pieces):
            cli = [
                "--env-id",
                env_id,
                "--num-seeds",
                str(num_seeds),
                "--seed",
                str(seed),
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

    STUDIES[study].configs(args, add)
    order = STUDIES[study].run_order
    return configs if order is None else sorted(configs, key=order)


def claims(study: str, rows: List[Dict], args: Args, measure: Optional[str] = None) -> List[tuple]:
    """(paper's claim, what was measured, verdict) for the study (benchmark/claims.py says how a verdict is read);
    `measure`: the scores compared ('late' or 'final'; by default the late averages where every row has them)."""
    return STUDIES[study].claims(rows, args, measure or verdict_measure(rows))


def report_stem(study: str, args: Args, envs: List[str]) -> Path:
    """Where a study's report goes: benchmark/results/{study}[_{envs}][{suffix}][_seeds{first}-{last}]_{budget} (no
    file suffix; the tasks are named when they are not the study's default, the study's `name_suffix` names its own
    settings, e.g. noise's _behaviournoise, and the seeds are named when they do not start at 0, so a check on other
    seeds keeps its own report)."""
    budget = f"{args.total_steps // 1000}k" if args.total_steps >= 1000 else f"{args.total_steps}"
    name = study if envs == list(STUDIES[study].envs) else f"{study}_{'_'.join(envs)}"
    name += STUDIES[study].name_suffix(args)
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
    if runs and None not in runs and list(dict.fromkeys(r["env_id"] for r in runs)) == envs:
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
        names = ", ".join(config_name(s, x) for s, x in sorted(lost, key=str))
        raise SystemExit(
            f"error: {path} measures {len(lost)} configuration(s) this report would leave out or show as not run "
            f"({names}); nothing written. Run them, regenerate it with --from-json {path}, or pass another --out-dir"
        )
    return rows


def config_name(series: str, x=None) -> str:
    """A configuration's name in the reports: its series, and its position on the study's axis ("mzu @ 2")."""
    return series + (f" @ {x}" if x is not None else "")


def _key(row: Dict) -> tuple:
    """A row's configuration, (series, x)."""
    return row["series"], row["x"]


def _seeds_note(done: Optional[int], num_seeds: int) -> str:
    """' (2 of 3 seeds)' for a task whose seeds have not all finished (a study with one run per seed), else ''."""
    return f" ({done} of {num_seeds} seeds)" if done is not None and done < num_seeds else ""


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
    options = STUDIES[study]
    speeds = options.speed_column(args)
    has_x = any(r["x"] is not None for r in rows)
    command = (
        f"python -m benchmark.reproduce --study {study} --envs {' '.join(envs)} --num-seeds {args.num_seeds} "
        f"--total-steps {args.total_steps} --eval-every {args.eval_every}"
        + (f" --seed {args.seed}" if args.seed else "")
        + (f" --lr-decay-steps {args.lr_decay_steps}" if args.lr_decay_steps is not None else "")
        + options.command_flags(args)
    )
    decay = options.schedule or (
        "no learning-rate decay within the budget"
        if (args.lr_decay_steps or 100_000) >= args.total_steps
        else f"learning rate x0.1 every {args.lr_decay_steps} updates"
    )
    done = [r for r in rows if not r["missing"]]
    other = agg.other_data(rows)  # rows that trained on another dataset than the rest: shown, left out of the claims
    comparable = [r for r in rows if _key(r) not in other]
    measure = verdict_measure(rows)
    late = next((r["late"]["steps"] for r in done if "late" in r), None)
    late = late or next((r["late_steps"] for r in rows if r.get("late_steps")), None)  # a study's first sittings
    window = f"updates {late[0]}-{late[1]}" if late else "-"
    read_back = [r for r in done if r.get("per_seed", {}).get("source", "").startswith("read back")]
    unkept = [r for r in done if "per_seed" not in r]
    devices: Dict[str, List[str]] = {}  # the devices a configuration's runs trained on: its configurations
    for r in done:
        where = " then ".join(r.get("devices") or ["not recorded"])
        devices.setdefault(where, []).append(config_name(*_key(r)))
    values = args.num_seeds * len(envs)
    head = (
        "| configuration | "
        + " | ".join(f"{e} final return | {e} last {agg.LATE_EVALUATIONS} evaluations" for e in envs)
        + f" | IQM final [95% CI] | IQM last {agg.LATE_EVALUATIONS} [95% CI] |"
        + (" updates/s (ms per update) |" if speeds else "")
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
        *options.notes(args),
        "",
        head,
        "|---|" + "---|---|" * len(envs) + "---|---|" + ("---|" if speeds else ""),
    ]
    for r in rows:
        name = config_name(*_key(r)) + (" (other data)" if _key(r) in other else "")
        if r["missing"]:
            partial, seeds, partial_late = r.get("returns", {}), r.get("seeds_done", {}), r.get("late_returns", {})
            cells = [
                f"{_cell(partial[e])}{_seeds_note(seeds.get(e), args.num_seeds)} | {_cell(partial_late.get(e))}"
                if e in partial
                else "not run | -"
                for e in envs
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " | - | - |" + (" - |" if speeds else ""))
            continue
        row_late = r.get("late", {})
        cells = [f"{_cell(r['returns'][e])} | {_cell(row_late.get('returns', {}).get(e))}" for e in envs]
        speed = r.get("updates_per_s")
        speed = "-" if speed is None else f"{speed:.1f} ({1000 / speed:.1f})"
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + (  # an IQM over tasks of which one read other data compares with no other row
                " | - | - |" if _key(r) in other else f" | {agg.fmt_ci(r['iqm'])} | {agg.fmt_ci(row_late.get('iqm'))} |"
            )
            + (f" {speed} |" if speeds else "")
        )
    data = next(
        (r["data_returns"] for r in comparable if not r["missing"] and r["x"] in (None, 1.0, 0.0, max(args.hidden_units))),
        None,
    ) or next((r["data_returns"] for r in comparable if r.get("data_returns")), None)  # a study's first sittings
    about_data = options.data_lines(args, envs, data)
    if about_data:
        lines += ["", *about_data]
    if other:
        cases = "; ".join(
            f"{config_name(*key)} on {task} (data's mean return {mine:.3f}, the others' {usual:.3f})"
            for key, tasks in other.items()
            for task, (mine, usual) in tasks.items()
        )
        lines += [
            "",
            "(other data): trained on another dataset of the task than the rest of this table, under the same flags "
            f"(generated on another machine: the behaviour DQN is not bit-reproducible across CPUs, docs/data.md): "
            f"{cases}. Its returns are shown; its IQM over the tasks and the claims below leave it out.",
        ]
    if unkept:
        lines += ["", "Kept without per-seed scores (no claim can use them): " + ", ".join(r["series"] for r in unkept) + "."]
    found = claims(study, comparable, args, measure)
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
    choice = best_setting(comparable) if options.best_setting else None
    if choice:
        lines += ["", f"The setting chosen from this sweep (a choice, not a claim): {choice}."]
    done = [r for r in done if _key(r) not in other]  # the plots compare like with like
    profiles = [r for r in done if "per_seed" in r]
    plot_profiles = 0 < len(profiles) <= 8
    lines += ["", f"![final]({stem.name}.png)", "", f"![curves]({stem.name}_curves.png)", ""] if done else [""]
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
        agg.plot_lines(
            stem.with_suffix(".png"),
            title,
            options.xlabel,
            {k: (xs, np.array(e)) for k, (xs, e) in lines_by_series.items()},
            categorical=options.categorical,
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
        {config_name(*_key(r)): {k: np.asarray(v) for k, v in r["curve"].items()} for r in done},
    )
    if plot_profiles:
        scores = {config_name(*_key(r)): agg.seed_scores(r["per_seed"], measure) for r in profiles}
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


def main(args: Args) -> None:
    if args.from_json:
        return rewrite_from_json(args.from_json)
    # 'all' (not a study) runs the studies of the BSuite reproduction, in the table's order; they share the paper's
    # budget. A study outside it (atari_small) has its own budget and is run by name.
    studies = [s for s in STUDIES.values() if s.in_all] if args.study == "all" else [STUDIES[args.study]]
    for name, value in dataclasses.asdict(studies[0].budget).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.eval_every is None:
        args.eval_every = max(args.total_steps // 10, 1)
    for study in studies:
        study.check_envs(args.envs or [])
        if study.prepare is not None and not (args.dry_run or args.report_only):
            study.prepare(args, args.envs or list(study.envs))
    known = list(dict.fromkeys([*ROWS, *VARIANTS]))
    bad = [a for a in args.algos if a not in known]
    if bad:
        raise SystemExit(f"error: --algos {' '.join(bad)} are not Table 2 rows; use some of {', '.join(known)}")
    start = time.time()
    for study in studies:
        envs = args.envs or list(study.envs)
        study_start = time.time()
        configs = study_configs(study.name, args, envs)
        each = 1 if study.seed_per_run else args.num_seeds
        print(f"== {study.name}: {len(configs)} runs ({each} seed{'s' * (each > 1)} each) ==", flush=True)
        results = run_configs(configs, f"repro_{study.name}", args.dry_run or args.report_only, Path(args.workdir))
        if args.dry_run:
            continue
        stem = report_stem(study.name, args, envs)
        rows = keep_measured(agg.summarise(configs, results, args.bootstrap_reps), stem, args, envs)
        # A report with the tasks and seeds finished so far, where any finished (a study's first sittings).
        if all(r["missing"] and not r["returns"] for r in rows):
            print(f"{study.name}: no finished run at this budget and no kept report at {stem}.json; nothing written")
            continue
        write_study(study.name, args, envs, rows)
        print(f"{study.name}: {(time.time() - study_start) / 60:.1f} min", flush=True)
    print(f"total wall-clock time: {(time.time() - start) / 60:.1f} min")


if __name__ == "__main__":
    main(tyro.cli(Args))
