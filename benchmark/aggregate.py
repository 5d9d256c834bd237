"""Aggregate metrics of many runs: IQM with stratified-bootstrap confidence intervals, curves, plots.

The paper reports the interquartile mean (IQM) of normalised scores (Agarwal et al., 2021,
"Deep RL at the Edge of the Statistical Precipice"): pool the scores of all runs x tasks, drop
the lowest and the highest 25%, average the rest. Its 95% confidence interval comes from the
stratified bootstrap: resample the runs with replacement independently within each task, take
the IQM of every resample, and read the 2.5th and 97.5th percentiles (the percentile interval).

Scores are arrays [num_runs, num_tasks] (seeds x environments), the layout of the `rliable`
package. Learning curves are the IQM at each evaluation over updates and over wall-clock time,
read from the `eval_history` of each run's results.json. No run is launched here.
"""

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all values: the mean of what is left after removing the lowest and the
    highest floor(n / 4) values (n = number of values), as scipy.stats.trim_mean(x, 0.25, axis=None)."""
    x = np.sort(np.asarray(scores, np.float64).ravel())
    cut = int(0.25 * x.size)
    return float(x[cut : x.size - cut].mean())


def stratified_bootstrap(scores: np.ndarray, reps: int, seed: int = 0) -> np.ndarray:
    """`reps` resamples of `scores` [runs, tasks]: within each task the runs are drawn with replacement,
    independently of the other tasks. Returns [reps, runs, tasks]."""
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [num_runs, num_tasks], got shape {scores.shape}")
    runs, tasks = scores.shape
    rows = np.random.default_rng(seed).integers(0, runs, size=(reps, runs, tasks))
    return scores[rows, np.arange(tasks)[None, None, :]]


def iqm_with_ci(
    scores: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0, statistic: Callable = iqm
) -> Tuple[float, float, float]:
    """(point estimate, lower, upper): the statistic of `scores` [runs, tasks] and its percentile
    interval over `reps` stratified-bootstrap resamples."""
    samples = stratified_bootstrap(scores, reps, seed)
    values = np.array([statistic(s) for s in samples])
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return statistic(scores), float(low), float(high)


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


def summarise(configs: Sequence, results: Sequence[Optional[dict]], reps: int) -> List[Dict]:
    """One row per (series, x) of the configurations (common_bench.Config, in order) and their results
    (None: not run): mean and std of the final return per task, the final IQM with its interval, and
    the IQM curve over updates and wall-clock time."""
    rows = []
    keys = list(dict.fromkeys((c.series, c.x) for c in configs))
    for series, x in keys:
        runs = [r for c, r in zip(configs, results) if (c.series, c.x) == (series, x)]
        if any(r is None for r in runs):  # the tasks that finished are shown; the IQM needs them all
            done = [r for r in runs if r is not None]
            rows.append(
                {
                    "series": series,
                    "x": x,
                    "missing": True,
                    "returns": {
                        r["env_id"]: (float(np.mean(r["final_returns"])), float(np.std(r["final_returns"]))) for r in done
                    },
                    "data_returns": data_returns(done),
                    "runs": [r["run_dir"] for r in done],
                }
            )
            continue
        curve = curves(runs)
        rows.append(
            {
                "series": series,
                "x": x,
                "missing": False,
                "returns": {
                    r["env_id"]: (float(np.mean(r["final_returns"])), float(np.std(r["final_returns"]))) for r in runs
                },
                "data_returns": data_returns(runs),
                "iqm": iqm_with_ci(final_scores(runs), reps),
                "curve": {
                    "steps": curve["steps"].tolist(),
                    "wall_clock_s": curve["wall_clock_s"].tolist(),
                    "iqm": curve_iqm(curve["scores"], reps).tolist(),
                },
                "wall_clock_s": float(sum(r["wall_clock_s"] for r in runs)),
                "runs": [r["run_dir"] for r in runs],
            }
        )
    return rows


def plot_lines(
    path,
    title: str,
    xlabel: str,
    lines: Dict[str, Tuple[List, np.ndarray]],
    categorical: bool = False,
    ylabel: str = "IQM normalised score",
) -> None:
    """One line (with its confidence band) per series: lines[name] = (x values, [len(x), 3] of point, low, high)."""
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


def fmt_ci(estimate: Optional[Sequence[float]]) -> str:
    if estimate is None:
        return "-"
    point, low, high = estimate
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"
