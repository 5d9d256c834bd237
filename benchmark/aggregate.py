"""Aggregate metrics of many runs: IQM with stratified-bootstrap confidence intervals, curves, plots.

The paper reports the interquartile mean (IQM) of normalised scores (Agarwal et al., 2021,
"Deep RL at the Edge of the Statistical Precipice"): pool the scores of all runs x tasks, drop
the lowest and the highest 25%, average the rest. Its 95% confidence interval comes from the
stratified bootstrap: resample the runs with replacement independently within each task, take
the IQM of every resample, and read the 2.5th and 97.5th percentiles (the percentile interval).

Scores are arrays [num_runs, num_tasks] (seeds x environments), the layout of the `rliable`
package. With fewer than 4 values (one task, 3 seeds) the IQM trims nothing and is the mean.
Comparisons of two configurations X and Y, as the paper's claims need them: the difference of their
IQMs and the probability of improvement P(X > Y), each with the percentile interval of a stratified
bootstrap that resamples X's and Y's runs independently (rliable's StratifiedIndependentBootstrap).
Performance profiles: the fraction of runs whose score exceeds tau, over a grid of tau, with intervals.
Learning curves are the IQM at each evaluation over updates and over wall-clock time, read from the
`eval_history` of each run's results.json; the late average of a run is the mean of its last
LATE_EVALUATIONS evaluations. No run is launched here.
"""

import json
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

LATE_EVALUATIONS = 5  # the late average of a run: the mean of its last five evaluations (fewer if it has fewer)


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all values: the mean of what is left after removing the lowest and the
    highest floor(n / 4) values (n = number of values), as scipy.stats.trim_mean(x, 0.25, axis=None)."""
    x = np.sort(np.asarray(scores, np.float64).ravel())
    cut = int(0.25 * x.size)
    return float(x[cut : x.size - cut].mean())


def stratified_bootstrap(scores: np.ndarray, reps: int, seed: Union[int, Sequence[int]] = 0) -> np.ndarray:
    """`reps` resamples of `scores` [runs, tasks]: within each task the runs are drawn with replacement,
    independently of the other tasks. Returns [reps, runs, tasks]. `seed`: numpy's default_rng seed."""
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [num_runs, num_tasks], got shape {scores.shape}")
    runs, tasks = scores.shape
    rows = np.random.default_rng(seed).integers(0, runs, size=(reps, runs, tasks))
    return scores[rows, np.arange(tasks)[None, None, :]]


def _percentiles(values: np.ndarray, confidence: float) -> Tuple[np.ndarray, np.ndarray]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail], axis=0)
    return low, high


def iqm_with_ci(
    scores: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0, statistic: Callable = iqm
) -> Tuple[float, float, float]:
    """(point estimate, lower, upper): the statistic of `scores` [runs, tasks] and its percentile
    interval over `reps` stratified-bootstrap resamples."""
    samples = stratified_bootstrap(scores, reps, seed)
    values = np.array([statistic(s) for s in samples])
    low, high = _percentiles(values, confidence)
    return statistic(scores), float(low), float(high)


def interval_of(
    arrays: Sequence[np.ndarray], statistic: Callable[..., float], reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Tuple[float, float, float]:
    """(statistic(*arrays), lower, upper): the percentile interval of a statistic of several configurations'
    scores (each [runs, tasks], the same tasks), each array resampled by the stratified bootstrap independently
    of the others (array i with the seed [seed, i])."""
    samples = [stratified_bootstrap(a, reps, [seed, i]) for i, a in enumerate(arrays)]
    values = np.array([statistic(*resample) for resample in zip(*samples)])
    low, high = _percentiles(values, confidence)
    return float(statistic(*[np.asarray(a, np.float64) for a in arrays])), float(low), float(high)


def iqm_difference_with_ci(
    x: np.ndarray, y: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Tuple[float, float, float]:
    """IQM(x) - IQM(y) of two configurations' scores [runs, tasks] and its stratified-bootstrap interval."""
    return interval_of([x, y], lambda a, b: iqm(a) - iqm(b), reps, confidence, seed)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) as rliable defines it: for each task m, the probability that a run of X scores above a run
    of Y, a tie counting one half (P(X_m > Y_m) + 0.5 P(X_m = Y_m) over all pairs of runs: the Mann-Whitney
    U statistic over runs_x * runs_y), averaged over the tasks. x [runs_x, tasks], y [runs_y, tasks]."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"scores must be [runs, tasks] with the same tasks, got shapes {x.shape} and {y.shape}")
    pairs_x, pairs_y = x[:, None, :], y[None, :, :]  # [runs_x, runs_y, tasks]
    per_task = np.mean(pairs_x > pairs_y, axis=(0, 1)) + 0.5 * np.mean(pairs_x == pairs_y, axis=(0, 1))  # [tasks]
    return float(np.mean(per_task))


def probability_of_improvement_with_ci(
    x: np.ndarray, y: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Tuple[float, float, float]:
    """P(X > Y) and its stratified-bootstrap interval (X's and Y's runs resampled independently)."""
    return interval_of([x, y], probability_of_improvement, reps, confidence, seed)


def performance_profile(scores: np.ndarray, taus: Sequence[float]) -> np.ndarray:
    """The score distribution of rliable: for each tau, the fraction of all runs x tasks whose score is
    above tau (strictly). scores [runs, tasks] -> [len(taus)]."""
    scores = np.asarray(scores, np.float64)
    return np.mean(scores[..., None] > np.asarray(taus, np.float64), axis=tuple(range(scores.ndim)))


def performance_profile_with_ci(
    scores: np.ndarray, taus: Sequence[float], reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> np.ndarray:
    """The performance profile and its pointwise stratified-bootstrap percentile interval: [len(taus), 3]
    of (fraction above tau, lower, upper)."""
    samples = stratified_bootstrap(scores, reps, seed)  # [reps, runs, tasks]
    values = np.mean(samples[..., None] > np.asarray(taus, np.float64), axis=(1, 2))  # [reps, len(taus)]
    low, high = _percentiles(values, confidence)
    return np.stack([performance_profile(scores, taus), low, high], axis=1)


def late_average(history: np.ndarray, last: int = LATE_EVALUATIONS) -> np.ndarray:
    """Each run's mean over its last `last` evaluations: history [E, runs, tasks] -> [runs, tasks]."""
    history = np.asarray(history, np.float64)
    return history[-min(last, history.shape[0]) :].mean(axis=0)


def runs_from_interval(estimate: Sequence[float], num_runs: int) -> Optional[np.ndarray]:
    """The runs' scores of ONE task, sorted, read back from the IQM (their mean: with n <= 3 nothing is
    trimmed) and its 95% percentile interval, or None where they cannot be: the resample that repeats the
    lowest run n times has probability n^-n, above 2.5% for n <= 3, so the interval's ends are the lowest
    and the highest run, and the middle one of three is 3 x mean - lowest - highest. The caller checks the
    result by recomputing the interval."""
    point, low, high = (float(v) for v in estimate)
    if num_runs == 1:
        return np.array([point])
    if num_runs == 2:
        return np.array([low, high])
    if num_runs == 3:
        return np.array([low, 3 * point - low - high, high])
    return None


def final_scores(results: Sequence[dict]) -> np.ndarray:
    """Normalised final scores [seeds, tasks] of one configuration's runs (one results.json per task)."""
    return np.stack([np.asarray(r["normalized_scores"], np.float64) for r in results], axis=1)


def curves(results: Sequence[dict]) -> Dict[str, np.ndarray]:
    """Normalised scores at every evaluation: steps [E], scores [E, seeds, tasks], and the mean over
    tasks of the wall-clock seconds at each evaluation [E] (NaN for runs that did not record it)."""
    from common.scores import normalized_score

    steps = [tuple(r["eval_history"]["steps"]) for r in results]
    if len(set(steps)) != 1:
        raise ValueError(f"runs of one configuration were evaluated at different steps: {sorted(set(steps))}")
    scores = np.stack(
        [np.array([[normalized_score(r["env_id"], v) for v in row] for row in r["eval_history"]["returns"]]) for r in results],
        axis=2,
    )
    times = [r["eval_history"].get("wall_clock_s") or [np.nan] * len(steps[0]) for r in results]
    return {"steps": np.asarray(steps[0]), "scores": scores, "wall_clock_s": np.mean(np.asarray(times, np.float64), axis=0)}


def curve_iqm(scores: np.ndarray, reps: int, seed: int = 0) -> np.ndarray:
    """IQM and its interval at each evaluation: scores [E, runs, tasks] -> [E, 3]."""
    return np.array([iqm_with_ci(s, reps, seed=seed) for s in scores])


def data_returns(runs) -> dict:
    """{env_id: mean return of its data} of the runs that counted their data (a stream run counts nothing)."""
    return {r["env_id"]: r["data"]["mean_return"] for r in runs if "mean_return" in r["data"]}


# The flags that pick a run's dataset (with its task): runs with equal values should have read the same data.
DATA_FLAGS = ("noise", "noise_in", "data_fraction", "run")


def data_settings(runs) -> dict:
    """{env_id: the flags that picked its dataset, as one string} of the runs (noise_in only where there is noise)."""
    out = {}
    for r in runs:
        flags = {k: r["args"].get(k) for k in DATA_FLAGS if k in r.get("args", {})}
        if not flags.get("noise"):
            flags.pop("noise_in", None)
        out[r["env_id"]] = json.dumps(flags, sort_keys=True)
    return out


def per_seed(results: Sequence[dict]) -> dict:
    """Every run's return per seed at every evaluation and at the end, one configuration's runs (one
    results.json per task): {"steps": [E], "returns": {env_id: [E][seeds]}, "final_returns": {env_id: [seeds]},
    "aligned": True} (aligned: seed i is the same run at every evaluation, so per-seed averages over
    evaluations can be taken)."""
    steps = [tuple(r["eval_history"]["steps"]) for r in results]
    if len(set(steps)) != 1:
        raise ValueError(f"runs of one configuration were evaluated at different steps: {sorted(set(steps))}")
    return {
        "steps": list(steps[0]),
        "returns": {r["env_id"]: [list(map(float, row)) for row in r["eval_history"]["returns"]] for r in results},
        "final_returns": {r["env_id"]: list(map(float, r["final_returns"])) for r in results},
        "aligned": True,
    }


def seed_scores(seeds: dict, which: str = "final") -> Optional[np.ndarray]:
    """Normalised scores [seeds, tasks] of a configuration's `per_seed` record: at the end ("final"), at the
    first evaluation ("first"), or each seed's late average ("late"; None where the evaluations of a seed
    cannot be told apart, i.e. not `aligned`)."""
    from common.scores import normalized_score

    envs = list(seeds["returns"])
    if which == "final":
        return np.array([[normalized_score(e, v) for v in seeds["final_returns"][e]] for e in envs]).T
    if which == "late" and not seeds["aligned"]:
        return None
    history = np.array([[[normalized_score(e, v) for v in row] for row in seeds["returns"][e]] for e in envs])
    history = history.transpose(1, 2, 0)  # [tasks, evaluations, seeds] -> [evaluations, seeds, tasks]
    if which == "first":
        return history[0]
    if which == "late":
        return late_average(history)
    raise ValueError(f"which must be 'final', 'first' or 'late', got {which!r}")


def late_mean_std(returns) -> tuple:
    """(mean, std) over seeds of each seed's mean return over its last LATE_EVALUATIONS evaluations, from one task's
    returns at every evaluation ([E][seeds], seed i the same run at every evaluation)."""
    per_seed_late = np.asarray(returns, np.float64)[-LATE_EVALUATIONS:].mean(axis=0)
    return float(per_seed_late.mean()), float(per_seed_late.std())


def late_summary(seeds: dict, reps: int) -> dict:
    """The late average of a configuration: its evaluations ([first, last] step), per task the mean and std
    over seeds of each seed's mean return over them (std None where the seeds are not `aligned`), and the IQM
    of the normalised late averages with its interval (no interval where the seeds are not aligned: then
    only the mean over seeds of the IQM curve's last points, which is the IQM when it trims nothing)."""
    from common.scores import normalized_score

    steps = seeds["steps"][-min(LATE_EVALUATIONS, len(seeds["steps"])) :]
    late = {e: np.asarray(v, np.float64)[-len(steps) :] for e, v in seeds["returns"].items()}  # [L, seeds]
    if seeds["aligned"]:
        returns = {e: late_mean_std(v) for e, v in late.items()}
        estimate = iqm_with_ci(seed_scores(seeds, "late"), reps)
    else:
        returns = {e: (float(v.mean()), None) for e, v in late.items()}
        scores = np.array([[[normalized_score(e, x) for x in row] for row in v] for e, v in late.items()])
        if scores.shape[0] * scores.shape[2] >= 4:  # the IQM of the late averages would trim: not the mean
            return {"steps": [steps[0], steps[-1]], "returns": returns, "iqm": None}
        estimate = (float(scores.mean()), None, None)
    return {"steps": [steps[0], steps[-1]], "returns": returns, "iqm": list(estimate)}


def _summed(values: List[Optional[List[float]]]) -> Optional[List[float]]:
    """The element-wise sum of lists of one length, None where any of them is missing or has a gap."""
    if any(v is None or None in v for v in values):
        return None
    return np.sum(np.asarray(values, np.float64), axis=0).tolist()


def usual_data_return(means: Sequence[float]) -> float:
    """The data's mean return most runs read (to 6 places; the first one's on a tie)."""
    values = [round(float(m), 6) for m in means]
    return max(dict.fromkeys(values), key=values.count)


def other_data(rows: Sequence[dict]) -> Dict[Tuple[str, object], Dict[str, Tuple[float, float]]]:
    """The rows that trained on other data than the rest of their report: {(series, x): {task: (its data's mean
    return, the others')}}. Rows whose flags pick the same dataset of a task (`data_settings`) should have read the
    same data; where their data's mean returns differ (a dataset generated on another machine: the behaviour DQN is
    not bit-reproducible across CPUs), the value most rows have is the report's, and the others are flagged (a tie
    goes to the first row's). Rows without `data_settings` or `data_returns` (older kept reports) are not checked."""
    groups: Dict[Tuple[str, str], List[Tuple[Tuple[str, object], float]]] = {}
    for r in rows:
        for task, mean in r.get("data_returns", {}).items():
            setting = r.get("data_settings", {}).get(task)
            if setting is not None:
                groups.setdefault((task, setting), []).append(((r["series"], r["x"]), float(mean)))
    flagged: Dict[Tuple[str, object], Dict[str, Tuple[float, float]]] = {}
    for (task, _), members in groups.items():
        usual = usual_data_return([mean for _, mean in members])
        for key, mean in members:
            if round(mean, 6) != usual:
                flagged.setdefault(key, {})[task] = (mean, usual)
    return flagged


def join_seed_runs(runs: Sequence[dict]) -> List[dict]:
    """One results per task, in the tasks' order: the runs of a task that each trained some of its seeds (a study
    with `seed_per_run`, so that each piece fits in a sitting) joined into one with all its seeds, in the order of
    their --seed. Per seed: the final returns and scores and each evaluation's returns; the wall-clock and
    evaluation seconds at each evaluation, the run's wall-clock time and its training-loop rate are those of all
    the seeds, one run after another (what one process training them vmapped would spend on a CPU)."""
    by_task: Dict[str, List[dict]] = {}
    for r in runs:
        by_task.setdefault(r["env_id"], []).append(r)
    joined = []
    for task, group in by_task.items():
        if len(group) == 1:
            joined.append(group[0])
            continue
        group = sorted(group, key=lambda r: r["args"]["seed"])
        seeds = [list(range(r["args"]["seed"], r["args"]["seed"] + r["args"]["num_seeds"])) for r in group]
        flat = [s for run_seeds in seeds for s in run_seeds]
        if len(set(flat)) != len(flat):
            raise ValueError(f"runs of {task} to join share seeds: {seeds}")
        steps = {tuple(r["eval_history"]["steps"]) for r in group}
        if len(steps) != 1:
            raise ValueError(f"runs of {task} to join were evaluated at different steps: {sorted(steps)}")
        evaluations = range(len(group[0]["eval_history"]["steps"]))
        history = {
            "steps": list(group[0]["eval_history"]["steps"]),
            "returns": [[float(v) for r in group for v in r["eval_history"]["returns"][e]] for e in evaluations],
            "wall_clock_s": _summed([r["eval_history"].get("wall_clock_s") for r in group]),
            "eval_seconds": _summed([r["eval_history"].get("eval_seconds") for r in group]),
        }
        rates = [r.get("updates_per_s") for r in group]
        joined.append(
            {
                **group[0],
                "args": {**group[0]["args"], "num_seeds": len(flat)},
                "final_returns": [float(v) for r in group for v in r["final_returns"]],
                "normalized_scores": [float(v) for r in group for v in r["normalized_scores"]],
                "eval_history": history,
                "wall_clock_s": float(sum(r["wall_clock_s"] for r in group)),
                "updates_per_s": None if None in rates else float(1.0 / sum(1.0 / v for v in rates)),
                "devices": list(dict.fromkeys(d for r in group for d in r.get("devices", []))),
            }
        )
    return joined


def final_returns(runs: Sequence[dict]) -> Dict[str, Tuple[float, float]]:
    """{env_id: (mean, std) over seeds of the final return} of one configuration's runs (one per task)."""
    return {r["env_id"]: (float(np.mean(r["final_returns"])), float(np.std(r["final_returns"]))) for r in runs}


def summarise_runs(series, x, runs: Sequence[dict], reps: int) -> Dict:
    """The row of one configuration (series, x) from its finished runs (one results.json per task): mean and
    std of the final return per task, the final IQM with its interval, every seed's returns, the late average,
    the IQM curve over updates and wall-clock time, and the mean over the runs of their training-loop updates
    per second (`updates_per_s` of results.json, every vmapped seed advancing; None where a run lacks it)."""
    names = [r["run_dir"] for r in runs]
    runs = join_seed_runs(runs)
    curve = curves(runs)
    seeds = per_seed(runs)
    speeds = [r.get("updates_per_s") for r in runs]
    return {
        "series": series,
        "x": x,
        "missing": False,
        "returns": final_returns(runs),
        "data_returns": data_returns(runs),
        "data_settings": data_settings(runs),
        "iqm": iqm_with_ci(final_scores(runs), reps),
        "late": late_summary(seeds, reps),
        "per_seed": seeds,
        "curve": {
            "steps": curve["steps"].tolist(),
            "wall_clock_s": curve["wall_clock_s"].tolist(),
            "iqm": curve_iqm(curve["scores"], reps).tolist(),
        },
        "wall_clock_s": float(sum(r["wall_clock_s"] for r in runs)),
        "updates_per_s": None if None in speeds else float(np.mean(speeds)),
        "devices": list(dict.fromkeys(d for r in runs for d in r.get("devices", []))),
        "runs": names,
    }


def summarise(configs: Sequence, results: Sequence[Optional[dict]], reps: int) -> List[Dict]:
    """One row per (series, x) of the configurations (runner.Config, in order) and their results
    (None: not run), as `summarise_runs` makes it; a configuration with a task not run has the finished
    tasks' returns only."""
    rows = []
    keys = list(dict.fromkeys((c.series, c.x) for c in configs))
    for series, x in keys:
        runs = [r for c, r in zip(configs, results) if (c.series, c.x) == (series, x)]
        if any(r is None for r in runs):  # the tasks and seeds that finished are shown; the IQM needs them all
            done = [r for r in runs if r is not None]
            joined = join_seed_runs(done)
            late_steps = joined[0]["eval_history"]["steps"][-LATE_EVALUATIONS:] if joined else None
            rows.append(
                {
                    "series": series,
                    "x": x,
                    "missing": True,
                    "returns": final_returns(joined),
                    "late_returns": {r["env_id"]: late_mean_std(r["eval_history"]["returns"]) for r in joined},
                    "late_steps": [late_steps[0], late_steps[-1]] if late_steps else None,  # as late_summary's
                    "seeds_done": {r["env_id"]: len(r["final_returns"]) for r in joined},
                    "wall_clock_s": float(sum(r["wall_clock_s"] for r in joined)),
                    "data_returns": data_returns(joined),
                    "data_settings": data_settings(joined),
                    "runs": [r["run_dir"] for r in done],
                }
            )
            continue
        rows.append(summarise_runs(series, x, runs, reps))
    return rows


def plot_lines(
    path,
    title: str,
    xlabel: str,
    lines: Dict[str, Tuple[List, np.ndarray]],
    categorical: bool = False,
    ylabel: str = "IQM normalised score",
    references: Optional[Dict[str, Sequence[float]]] = None,
) -> None:
    """One line (with its confidence band) per series: lines[name] = (x values, [len(x), 3] of point, low, high);
    a configuration off the x axis as a dashed horizontal line with its band: references[name] = (point, low, high)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, (xs, est) in lines.items():
        est = np.asarray(est)
        pos = np.arange(len(xs)) if categorical else np.asarray(xs, np.float64)
        ax.plot(pos, est[:, 0], marker="o", label=name)
        ax.fill_between(pos, est[:, 1], est[:, 2], alpha=0.2)
        if categorical:
            ax.set_xticks(pos, [str(x) for x in xs])
    for name, (point, low, high) in (references or {}).items():
        ax.axhline(point, color="0.3", linestyle="--", label=name)
        ax.axhspan(low, high, color="0.3", alpha=0.1)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(path, title: str, series: Dict[str, Dict[str, np.ndarray]]) -> None:
    """Learning curves side by side: IQM normalised score over updates (left) and wall-clock minutes (right).
    series[name] = {"steps": [E], "wall_clock_s": [E], "iqm": [E, 3]}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for name, c in series.items():
        for ax, x in zip(axes, (c["steps"], np.asarray(c["wall_clock_s"]) / 60)):
            if np.all(np.isnan(x)):
                continue
            ax.plot(x, c["iqm"][:, 0], label=name)
            ax.fill_between(x, c["iqm"][:, 1], c["iqm"][:, 2], alpha=0.15)
    axes[0].set_xlabel("learner updates")
    axes[1].set_xlabel("wall-clock minutes (this machine, including evaluation)")
    axes[0].set_ylabel("IQM normalised score")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_profiles(
    path, title: str, profiles: Dict[str, Tuple[Sequence[float], np.ndarray]], xlabel: str = "normalised score tau"
) -> None:
    """Performance profiles (score distributions) with their bands: profiles[name] = (taus, [len(taus), 3] of
    the fraction of runs above tau, lower, upper), as performance_profile_with_ci returns them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, (taus, est) in profiles.items():
        est = np.asarray(est)
        ax.step(taus, est[:, 0], where="post", label=name)
        ax.fill_between(taus, est[:, 1], est[:, 2], step="post", alpha=0.15)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fmt_ci(estimate: Optional[Sequence[float]], signed: bool = False) -> str:
    """'point [low, high]' (signed: with signs and 4 decimals, for a difference); '-' for no estimate,
    'point [no interval]' for one without."""
    if estimate is None:
        return "-"
    point, low, high = estimate
    f = "{:+.4f}" if signed else "{:.3f}"
    if low is None:
        return f"{f.format(point)} [no interval]"
    return f"{f.format(point)} [{f.format(low)}, {f.format(high)}]"
