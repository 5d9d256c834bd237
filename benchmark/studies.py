"""The reproduction studies of benchmark/reproduce.py: STUDIES, one `Study` (benchmark/study.py) per study.

Each section below is one study, readable on its own: the configurations it runs, the paper's claims it checks,
and the `Study` that names them with its tasks, budget and report options (what is not given is the default of
benchmark/study.py: the three BSuite tasks, the paper's budget, a report without an x axis). reproduce.py keeps
the command line, the running and the report writing, and reads every study-specific choice from here. A new
study is one more section and one more entry in STUDIES, the table at the end (docs/architecture.md).
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from benchmark import aggregate as agg
from benchmark.claims import (
    NOT_MEASURED,
    above_the_data,
    combine,
    compare,
    comparer,
    effect_of,
    fmt_iqm,
    from_interval,
    rosmo_above_mzu,
    rosmo_steadier,
    row_of,
    scores_of,
)
from benchmark.common_bench import ROOT
from benchmark.study import Budget, Study, mean_data_return

ALGOS = ["rosmo", "mzu", "mzu_q", "crr", "cql", "bc"]
# Table 2's rows: the six algorithms, plus ROSMO with Eq. 11's data reading of the behaviour advantage (the
# official release's choice) and BC acting greedily (argmax pi) beside BC sampling from pi; CQL at alpha 0.1, the
# setting its sweep chose on seeds 5-7 (cql_sweep_seeds5-7_50k.md; alpha 0.01, the default, was chosen on 0-2).
VARIANTS = {
    "rosmo-data": ("rosmo", {"behavior_advantage": "data"}),
    "bc-greedy": ("bc", {"eval_greedy": True}),
    "cql-alpha0.1": ("cql", {"alpha": 0.1}),
}
ROWS = ["rosmo", "rosmo-data", "mzu", "mzu_q", "crr", "cql", "bc", "bc-greedy"]


# ---------------------------------------------------------------------------------------------
# table2 -- Table 2: all six algorithms (and ROSMO's and BC's variants, --algos) x the BSuite tasks.


def _table2_configs(args, add) -> None:
    for row in args.algos:
        algo, flags = VARIANTS.get(row, (row, {}))
        add(algo, row, **flags)


def _table2_claims(rows, args, measure) -> List[tuple]:
    compare = comparer(rows, measure, args.bootstrap_reps)
    out = []
    # Every requested row, finished or not: a claim over the table is "not measured" until all of it is in.
    algos = list(dict.fromkeys(r["series"] for r in rows))
    if "rosmo" in algos:
        others = [a for a in algos if a not in ("rosmo", "rosmo-data")]  # rosmo-data is ROSMO, read differently
        checks = [compare(("rosmo", None), (a, None)) for a in others]
        claim = "ROSMO has the best overall result (IQM over the tasks)"
        out.append((claim, "; ".join(text for _, text in checks), combine([v for v, _ in checks])))
    for bc in ("bc", "bc-greedy"):
        if bc in algos:
            rl = [a for a in algos if not a.startswith("bc")]
            checks = [compare((a, None), (bc, None)) for a in rl]
            claim = f"every offline RL method beats behaviour cloning ({bc})"
            out.append((claim, "; ".join(text for _, text in checks) or "-", combine([v for v, _ in checks])))
    if "rosmo-data" in algos and "rosmo" in algos:
        verdict, text = compare(("rosmo", None), ("rosmo-data", None))
        out.append(("Eq. 11 read with the model's advantage (default) vs the data's (official release)", text, verdict))
    return out


TABLE2 = Study(
    "table2",
    _table2_configs,
    _table2_claims,
    command_flags=lambda args: f" --algos {' '.join(args.algos)}" if args.algos != ROWS else "",
    data_lines=mean_data_return,
)


# ---------------------------------------------------------------------------------------------
# lr_decay -- ROSMO with the paper's learning-rate decay (x0.1 at half the budget) and without, on cartpole.


def _lr_decay_configs(args, add) -> None:
    add("rosmo", "decay x0.1 at half", lr_decay_steps=max(args.total_steps // 2, 1))
    add("rosmo", "no decay", lr_decay_steps=max(args.total_steps, 1))  # the first decay would fall after the last update


def _lr_decay_claims(rows, args, measure) -> List[tuple]:
    compare = comparer(rows, measure, args.bootstrap_reps)
    verdict, text = compare(("decay x0.1 at half", None), ("no decay", None), at_least=True, names=("decay", "none"))
    claim = "the paper's schedule (x0.1 at half the budget) is at least as good as none at this budget (difference >= 0)"
    return [(claim, text, verdict)]


LR_DECAY = Study(
    "lr_decay",
    _lr_decay_configs,
    _lr_decay_claims,
    envs=("cartpole",),
    schedule="the learning-rate schedule its row names",
    data_lines=mean_data_return,
)


# ---------------------------------------------------------------------------------------------
# cql_sweep -- CQL's penalty weight alpha (--alphas) with 10-, 3- and 1-step targets and two optimisers, on cartpole.


def _cql_sweep_configs(args, add) -> None:
    # The penalty weight with 10-step and 3-step targets (3: ROSMO's BSuite TD steps), then with 1-step targets
    # (the official CQL backup), all with the shared optimiser of the ROSMO paper's Table 4 (learning rate 7e-4,
    # target copy every 200 updates); and 1-step with the CQL paper's discrete (QR-DQN/Dopamine) one (5e-5, 2000).
    for n_step in (10, 3):
        for alpha in (a for a in args.alphas if a <= 0.1):
            add("cql", f"{n_step}-step, shared optimiser", alpha, alpha=alpha, n_step=n_step)
    for alpha in args.alphas:
        add("cql", "1-step, shared optimiser", alpha, alpha=alpha, n_step=1)
    for alpha in (a for a in args.alphas if a >= 0.1):
        paper = dict(learning_rate=5e-5, target_update_interval=2000)
        add("cql", "1-step, CQL-paper optimiser", alpha, alpha=alpha, n_step=1, **paper)


CQL_SWEEP = Study(
    "cql_sweep",
    _cql_sweep_configs,
    lambda rows, args, measure: [],  # a sweep to choose a setting from: no claim of the paper
    envs=("cartpole",),
    xlabel="alpha",
    data_lines=mean_data_return,
    best_setting=True,
)


# ---------------------------------------------------------------------------------------------
# data_fraction -- Hypothesis 1 (Fig. 2a): ROSMO vs MZU with 1%, 10%, 100% of the data (--fractions).


def _data_fraction_configs(args, add) -> None:
    for algo in ("rosmo", "mzu"):
        for fraction in args.fractions:
            add(algo, algo, fraction, data_fraction=fraction)


def _data_fraction_claims(rows, args, measure) -> List[tuple]:
    compare = comparer(rows, measure, args.bootstrap_reps)
    lo, hi = min(args.fractions), max(args.fractions)
    verdict, text = compare(("mzu", hi), ("mzu", lo), names=(f"mzu[{hi:g}]", f"mzu[{lo:g}]"))
    claim = "ROSMO outperforms MZU at every data fraction"
    return [
        (f"MZU degrades as coverage falls and is poor at {lo:g} of the data", text, verdict),
        rosmo_above_mzu(rows, args.fractions, claim, measure, args.bootstrap_reps),
    ]


DATA_FRACTION = Study(
    "data_fraction",
    _data_fraction_configs,
    _data_fraction_claims,
    xlabel="data fraction",
    categorical=True,
)


# ---------------------------------------------------------------------------------------------
# noise -- Hypothesis 2 (Table 1): ROSMO vs MZU on catch with data of noise 0, 0.1, 0.3, 0.5 (--noises), the
# noise acting in the environment (the paper's) or, with --noise-in behaviour, in the behaviour agent.


def _noise_configs(args, add) -> None:
    for algo in ("rosmo", "mzu"):
        for noise in args.noises:
            add(algo, algo, noise, noise=noise, noise_in=args.noise_in)


def _noise_claims(rows, args, measure) -> List[tuple]:
    reps = args.bootstrap_reps
    claim = "ROSMO is much less sensitive to the dataset noise than MZU (spread of the score over noise levels)"
    return [
        rosmo_steadier(rows, args.noises, claim, measure, reps),
        rosmo_above_mzu(rows, args.noises, "ROSMO scores above MZU at every noise level", measure, reps),
    ]


def _noise_note(args) -> List[str]:
    where = (
        "the behaviour agent replaced its action at random and the executed action was recorded, so the "
        "recorded transitions are deterministic (noisier behaviour, not the paper's stochastic dynamics)."
        if args.noise_in == "behaviour"
        else "the environment replaced the agent's action at random and the agent's action was recorded, "
        "so the recorded transitions are stochastic (the paper's Appendix E)."
    )
    return ["The data's noise: " + where + " Evaluation runs in the noise-free task, as in the official release."]


NOISE = Study(
    "noise",
    _noise_configs,
    _noise_claims,
    envs=("catch",),
    xlabel="dataset noise epsilon",
    name_suffix=lambda args: "_behaviournoise" if args.noise_in == "behaviour" else "",
    command_flags=lambda args: " --noise-in behaviour" if args.noise_in == "behaviour" else "",
    notes=_noise_note,
)


# ---------------------------------------------------------------------------------------------
# model_capacity -- Hypothesis 3 (Fig. 2b): the dynamics' hidden units 32..1024 (--hidden-units), 10% of the data.


def _model_capacity_configs(args, add) -> None:
    for algo in ("rosmo", "mzu"):
        for width in args.hidden_units:
            add(algo, algo, width, dynamics_hidden=width, data_fraction=args.capacity_fraction)


def _model_capacity_claims(rows, args, measure) -> List[tuple]:
    compare = comparer(rows, measure, args.bootstrap_reps)
    reps = args.bootstrap_reps
    lo, hi = min(args.hidden_units), max(args.hidden_units)
    verdict, text = compare(("mzu", hi), ("mzu", lo), names=(f"mzu[{hi}]", f"mzu[{lo}]"))
    steadier = "ROSMO is stable across capacities (smaller spread than MZU)"
    return [
        (f"MZU degrades with less dynamics capacity ({lo} vs {hi} hidden units)", text, verdict),
        rosmo_steadier(rows, args.hidden_units, steadier, measure, reps),
        rosmo_above_mzu(rows, args.hidden_units, "ROSMO outperforms MZU at every capacity", measure, reps),
    ]


MODEL_CAPACITY = Study(
    "model_capacity",
    _model_capacity_configs,
    _model_capacity_claims,
    xlabel="dynamics hidden units",
    categorical=True,
)


# ---------------------------------------------------------------------------------------------
# search_budget -- Hypothesis 4 (Fig. 2c): MZU with N simulations (--simulations) x search depth d (--depths); with
# --searches muzero gumbel also Gumbel MuZero's search, and ROSMO as the reference.


def search_series(search: str, depth: int) -> str:
    """The search_budget series of MZU with `search` at maximum depth `depth` (0: unlimited): "d=1", "gumbel d=1"."""
    return ("" if search == "muzero" else f"{search} ") + f"d={depth or 'unlimited'}"


def _compares_searches(args) -> bool:
    """Whether the study compares MZU's searches (and ROSMO beside them), not MuZero's search alone."""
    return args.searches != ["muzero"]


def _search_budget_configs(args, add) -> None:
    # The lowest budget first, each search at it, so an unfinished study has the comparison the claims rest on.
    for depth in args.depths:
        for n in args.simulations:
            for search in args.searches:
                search_flag = {} if search == "muzero" else {"search": search}  # muzero: runs made before the flag
                depth_flag = {} if depth == 0 else {"max_depth": depth}
                add("mzu", search_series(search, depth), n, num_simulations=n, **search_flag, **depth_flag)
    if "gumbel" in args.searches:
        add("rosmo", "rosmo")  # the reference: Table 2's ROSMO runs at the same budget


def _rosmo_above_search(rows, search: str, simulations: List[int], measure: str, reps: int) -> tuple:
    """(claim, measured, verdict): the ROSMO reference's IQM above MZU's with `search` at unlimited depth at every
    budget N of `simulations`."""
    label = {"muzero": "MuZero", "gumbel": "Gumbel"}[search]
    series = search_series(search, 0)
    checks = [compare(rows, ("rosmo", None), (series, n), measure, reps, names=("rosmo", search)) for n in simulations]
    claim = f"ROSMO beats MCTS at a low budget ({label} search, unlimited depth, N={', '.join(map(str, simulations))})"
    return claim, "; ".join(f"N={n}: {text}" for n, (_, text) in zip(simulations, checks)), combine([v for v, _ in checks])


def _search_budget_claims(rows, args, measure) -> List[tuple]:
    compare = comparer(rows, measure, args.bootstrap_reps)
    out = []
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
            out.append(_rosmo_above_search(rows, search, args.simulations, measure, args.bootstrap_reps))
        if "muzero" in args.searches:
            verdict, text = compare((search_series("gumbel", 0), lo), (unlimited, lo), names=("gumbel", "muzero"))
            out.append((f"Gumbel's search beats MuZero's at N={lo} (unlimited depth)", text, verdict))
    return out


def _search_budget_flags(args) -> str:
    if not _compares_searches(args):
        return ""
    return (
        f" --searches {' '.join(args.searches)} --simulations {' '.join(map(str, args.simulations))} "
        f"--depths {' '.join(map(str, args.depths))}"
    )


SEARCHES_NOTE = (
    "Searches: `d=...` is MZU with MuZero's search (pUCT, the visit distribution as the policy target), "
    "`gumbel d=...` MZU with `--search gumbel` (Gumbel MuZero: Sequential Halving, the improved policy of "
    "completed Q-values as the target), each with N simulations (`@ N`) and maximum depth d; `rosmo` is "
    "ROSMO with the same settings, the reference. Updates/s: the mean over the configuration's runs (one "
    "per task) of each run's training-loop rate (every vmapped seed advances; compilation and evaluation "
    "excluded), and its inverse."
)

SEARCH_BUDGET = Study(
    "search_budget",
    _search_budget_configs,
    _search_budget_claims,
    xlabel="simulations N",
    categorical=True,
    command_flags=_search_budget_flags,
    notes=lambda args: [SEARCHES_NOTE] if _compares_searches(args) else [],
    speed_column=_compares_searches,
)


# ---------------------------------------------------------------------------------------------
# ablation_sampling -- Fig. 4b: sampled ROSMO (N=4) vs MZU (4 simulations) vs MZU-Q (4). The Fig. 4 ablations are
# Atari experiments in the paper (MsPacman); here they run on the BSuite tasks.


def _ablation_sampling_configs(args, add) -> None:
    add("rosmo", "ROSMO sampled (N=4)", num_samples=4)
    add("mzu", "MZU (N=4)", num_simulations=4)
    add("mzu_q", "MZU-Q (N=4)", num_simulations=4)


def _ablation_sampling_claims(rows, args, measure) -> List[tuple]:
    compare = comparer(rows, measure, args.bootstrap_reps)
    s, m, q = ("ROSMO sampled (N=4)", None), ("MZU (N=4)", None), ("MZU-Q (N=4)", None)
    verdict, text = compare(q, m, names=("mzu_q", "mzu"))
    checks = [compare(s, q, names=("rosmo", "mzu_q")), compare(s, m, names=("rosmo", "mzu"))]
    sampled = "sampled ROSMO performs well with 4 samples (above both)"
    return [
        ("MZU-Q alleviates MZU's failure at 4 simulations", text, verdict),
        (sampled, "; ".join(text for _, text in checks), combine([v for v, _ in checks])),
    ]


ABLATION_SAMPLING = Study(
    "ablation_sampling",
    _ablation_sampling_configs,
    _ablation_sampling_claims,
    data_lines=mean_data_return,
)


# ---------------------------------------------------------------------------------------------
# ablation_unroll -- Fig. 4c: ROSMO and MZU with unroll K = 1 and K = 5.


def _ablation_unroll_configs(args, add) -> None:
    for algo in ("rosmo", "mzu"):
        for k in (1, 5):
            add(algo, algo, k, unroll_steps=k)


def _ablation_unroll_claims(rows, args, measure) -> List[tuple]:
    compare = comparer(rows, measure, args.bootstrap_reps)
    verdict, text = compare(("mzu", 5), ("mzu", 1), names=("mzu K=5", "mzu K=1"))
    out = [("MZU drops significantly with a single-step unroll", text, verdict)]
    keys = [("rosmo", 1), ("rosmo", 5), ("mzu", 1), ("mzu", 5)]

    def change(r1, r5, m1, m5):  # abs(MZU's change) - abs(ROSMO's change) from K=1 to K=5
        return abs(agg.iqm(m5) - agg.iqm(m1)) - abs(agg.iqm(r5) - agg.iqm(r1))

    effect = effect_of(rows, keys, change, measure, args.bootstrap_reps)
    claim = "ROSMO is not sensitive to the unroll length (a smaller change than MZU's)"
    if effect is None:
        return out + [(claim, "-", NOT_MEASURED)]
    r1, r5, m1, m5 = (fmt_iqm(scores_of(rows, *k, measure)) for k in keys)
    measured = f"rosmo K=1 {r1} vs K=5 {r5}; mzu K=1 {m1} vs K=5 {m5}: abs(mzu change) - abs(rosmo change) "
    return out + [(claim, measured + agg.fmt_ci(effect, signed=True), from_interval(effect))]


ABLATION_UNROLL = Study(
    "ablation_unroll",
    _ablation_unroll_configs,
    _ablation_unroll_claims,
    xlabel="unroll steps K",
    categorical=True,
    data_lines=mean_data_return,
)


# ---------------------------------------------------------------------------------------------
# ablation_regularization -- Fig. 4d: ROSMO vs OneStep (no behaviour term) vs Behavior (the behaviour term only).


def _ablation_regularization_configs(args, add) -> None:
    add("rosmo", "ROSMO")
    add("rosmo", "OneStep", behavior_coef=0.0)
    add("rosmo", "Behavior", behavior_only=True)


def _ablation_regularization_claims(rows, args, measure) -> List[tuple]:
    compare = comparer(rows, measure, args.bootstrap_reps)
    full, one, beh = ("ROSMO", None), ("OneStep", None), ("Behavior", None)
    checks = [compare(full, one), compare(full, beh)]
    out = [("the full ROSMO is best at the end", "; ".join(text for _, text in checks), combine([v for v, _ in checks]))]
    verdict, text = compare(one, beh)
    out.append(("OneStep ends above Behavior", text, verdict))
    verdict, text = compare(beh, one, measure="first")
    out.append(("Behavior learns faster than OneStep early on (first evaluation)", text, verdict))
    return out


ABLATION_REGULARIZATION = Study(
    "ablation_regularization",
    _ablation_regularization_configs,
    _ablation_regularization_claims,
    data_lines=mean_data_return,
)


# ---------------------------------------------------------------------------------------------
# atari_small -- the six methods on two games of this project's behaviour data (common/atari/behaviour.py
# --controller tracker: the paddle follows the ball, a function of the screen, mixed with random actions as epsilon
# falls from 1 to 0 across the shards). ATARI_SMALL_GAMES: the games and episodes per shard of their data;
# ATARI_SMALL_FLAGS: the settings every run shares (the small networks at batch 32, episodes cut at 2,000 agent
# steps in the data and in evaluation alike, a 200-update warm-up). The budget, 3 seeds x 10,000 updates, the scale
# of the 60-minute ROSMO check (docs/atari.md): one seed's update of the small networks at batch 32 takes 0.14 s
# (ROSMO), 0.26 s (MZU, 20 simulations) and 0.04 s (BC) of an idle 2-core CPU, so the study is about 14 hours
# of that CPU, MZU and MZU-Q two thirds of it (about 45 hours at 30,000 updates; 2,000 updates leave every method
# at the random policy's level). The runs go in the order of what they decide: ROSMO and BC game by game (ROSMO against
# the data and BC), then MZU (the wall-clock comparison), then the rest. Not part of `--study all`.

ATARI_SMALL_GAMES = {"Breakout": 2, "Pong": 1}
ATARI_SMALL_ORDER = ["rosmo", "bc", "mzu", "crr", "cql", "mzu_q"]  # ALGOS, in the order the runs go
ATARI_SMALL_FLAGS = {"network_size": "small", "batch_size": 32, "eval_max_steps": 2000, "warmup_steps": 200}


def _atari_small_configs(args, add) -> None:
    for algo in ATARI_SMALL_ORDER:
        add(algo, algo, data_dir=args.atari_data_dir, **ATARI_SMALL_FLAGS)


def _atari_small_run_order(config) -> tuple:
    """ROSMO and BC game by game first (each game's "ROSMO above BC" complete before the next game starts), then
    the others in ATARI_SMALL_ORDER, each game's seeds together."""
    stage = 0 if config.algo in ("rosmo", "bc") else ATARI_SMALL_ORDER.index(config.algo)
    game = list(ATARI_SMALL_GAMES).index(config.env_id) if config.env_id in ATARI_SMALL_GAMES else len(ATARI_SMALL_GAMES)
    return stage, game, ATARI_SMALL_ORDER.index(config.algo)


def behaviour_summary(args, game: str) -> Optional[dict]:
    """The behaviour data generator's summary of `game` (common/atari/behaviour.py), if it is there."""
    path = Path(args.workdir) / args.atari_data_dir / game / "behaviour_run_1.json"
    return json.loads(path.read_text()) if path.is_file() else None


def behaviour_mean_return(args, game: str) -> Optional[float]:
    """The raw (unclipped) mean episode return of `game`'s behaviour data, None without its summary."""
    summary = behaviour_summary(args, game)
    return None if summary is None else summary["mean_return"]


def _atari_small_claims(rows, args, measure) -> List[tuple]:
    compare = comparer(rows, measure, args.bootstrap_reps)
    # The claim compares with the data's mean game score (raw rewards, as evaluation returns are), taken from
    # the generator's summary: a run that streamed its data, or read an older cache, has not counted it.
    games = list(ATARI_SMALL_GAMES) + list(args.envs or [])
    raw = {g: m for g in games if (m := behaviour_mean_return(args, g)) is not None}
    out = above_the_data(rows, [a for a in ALGOS if row_of(rows, a) is not None], measure, args.bootstrap_reps, raw)
    verdict, text = compare(("rosmo", None), ("bc", None))
    out.append(("ROSMO ends above behaviour cloning", text, verdict))
    verdict, text = compare(("rosmo", None), ("mzu", None))
    out.append(("ROSMO ends above MuZero Unplugged at the same number of updates", text, verdict))
    return out


def atari_data_lines(args, games: List[str], data_returns: Optional[Dict[str, float]]) -> List[str]:
    """The atari_small report's description of its data: per game the mean return (game score) of all its episodes,
    of the uniformly random policy (the first shard) and of the controller alone (the last), from the generator's
    summary (`data_returns`, the runs' count of the same, is not needed: the scripts count game scores too)."""
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
        "| game | episodes | transitions | data's mean return | random policy (shard 0) | "
        "controller with epsilon <= 0.08 (shards 45-49) | best shard |",
        "|---|---|---|---|---|---|---|",
    ]
    for game in games:
        summary = behaviour_summary(args, game)
        if summary is None:
            lines.append(f"| {game} | - | - | - | - | - | - |")
            continue
        shards = summary["shards"]
        best = max(shards, key=lambda s: np.mean(s["returns"]))
        lines.append(
            f"| {game} | {summary['episodes']} | {summary['steps']} | {summary['mean_return']:.2f} | "
            f"{np.mean(shards[0]['returns']):.2f} | {np.mean([r for s in shards[-5:] for r in s['returns']]):.2f} | "
            f"{np.mean(best['returns']):.2f} (shard {best['shard']}) |"
        )
    return lines


def atari_games_only(envs: List[str]) -> None:
    """Stop with an error when --envs names anything but RL Unplugged Atari games."""
    from common.atari.games import GAMES

    unknown = [e for e in envs if e not in GAMES]
    if unknown:
        raise SystemExit(f"error: --envs {' '.join(unknown)} are not RL Unplugged Atari games (e.g. Breakout, Pong)")


def ensure_atari_data(args, games: List[str]) -> None:
    """Generate (or finish generating) the atari_small study's behaviour data of `games`; a game whose data is
    complete is left as it is (the generator skips the shards already written)."""
    for game in games:
        cmd = [sys.executable, "-m", "common.atari.behaviour", "--game", game, "--out", args.atari_data_dir]
        cmd += ["--controller", "tracker"]
        cmd += ["--episodes-per-shard", str(ATARI_SMALL_GAMES.get(game, 1))]
        print(f"data: {' '.join(cmd[1:])}", flush=True)
        subprocess.run(cmd, cwd=args.workdir, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


ATARI_SMALL = Study(
    "atari_small",
    _atari_small_configs,
    _atari_small_claims,
    envs=tuple(ATARI_SMALL_GAMES),
    budget=Budget(num_seeds=3, total_steps=10_000, eval_episodes=5),
    in_all=False,  # 'all' is the BSuite reproduction; this study has its own budget and is run by name
    check_envs=atari_games_only,
    seed_per_run=True,  # a configuration's 3 seeds take 1-4 hours on 2 cores: each seed's run fits in a sitting
    run_order=_atari_small_run_order,
    prepare=ensure_atari_data,
    data_lines=atari_data_lines,
)


# ---------------------------------------------------------------------------------------------
# The table, in the order `--study all` runs them.

STUDIES: Dict[str, Study] = {
    study.name: study
    for study in (
        TABLE2,
        LR_DECAY,
        CQL_SWEEP,
        DATA_FRACTION,
        NOISE,
        MODEL_CAPACITY,
        SEARCH_BUDGET,
        ABLATION_SAMPLING,
        ABLATION_UNROLL,
        ABLATION_REGULARIZATION,
        ATARI_SMALL,
    )
}
