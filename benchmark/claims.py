"""Checking the paper's claims against a study's measured rows, with intervals: the pieces the studies share.

A comparison "X above Y" holds when the 95% stratified-bootstrap interval of IQM(X) - IQM(Y) lies above 0, does
not hold when it lies below 0, and is inconclusive when it contains 0. The scores compared are each seed's late
average (its last five evaluations) where every run kept its per-seed history, else its final score. A claim
made of several comparisons holds when all of them hold and does not hold when any does not. Every verdict is
one of VERDICTS, or NOT_MEASURED while a configuration it needs has not run.

A row is one configuration of a study as aggregate.summarise_runs makes it; a configuration is named by its
(series, x). Each study's own claims are in benchmark/studies.py; a claim is a tuple (claim, measured, verdict).
"""

import functools
from typing import Dict, List, Optional

import numpy as np

from benchmark import aggregate as agg

VERDICTS = ("holds", "inconclusive", "does not hold")
NOT_MEASURED = "not measured"


def row_of(rows, series, x=None) -> Optional[dict]:
    """The measured row of configuration (series, x), None while it has not run."""
    for r in rows:
        if r["series"] == series and r["x"] == x and not r["missing"]:
            return r
    return None


def verdict_measure(rows: List[Dict]) -> str:
    """'late' when every measured row has each seed's history (so each seed's late average), else 'final'."""
    done = [r for r in rows if not r["missing"]]
    return "late" if done and all(r.get("per_seed", {}).get("aligned") for r in done) else "final"


def scores_of(rows, series, x, measure: str) -> Optional[np.ndarray]:
    """Normalised scores [seeds, tasks] of a configuration under `measure`, None if not run or not kept per seed."""
    row = row_of(rows, series, x)
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


def fmt_iqm(scores: Optional[np.ndarray]) -> str:
    """The IQM of `scores` to 3 places, '-' for a configuration not measured."""
    return "-" if scores is None else f"{agg.iqm(scores):.3f}"


def compare(rows, a, b, measure: str, reps: int, at_least: bool = False, names=None) -> tuple:
    """(verdict, measured text) of "configuration a scores above configuration b"; a and b are (series, x),
    `names` their names in the text (default their series)."""
    na, nb = names or (a[0], b[0])
    xa, xb = scores_of(rows, *a, measure), scores_of(rows, *b, measure)
    if xa is None or xb is None:
        return NOT_MEASURED, f"{na} {fmt_iqm(xa)} vs {nb} {fmt_iqm(xb)}"
    diff = agg.iqm_difference_with_ci(xa, xb, reps)
    better = agg.probability_of_improvement_with_ci(xa, xb, reps)
    text = (
        f"{na} {fmt_iqm(xa)} vs {nb} {fmt_iqm(xb)}: difference {agg.fmt_ci(diff, signed=True)}, "
        f"P({na} > {nb}) {agg.fmt_ci(better)}"
    )
    return from_interval(diff, at_least), text


def comparer(rows, measure: str, reps: int):
    """`compare` bound to these rows, this measure and these resamples: compare(a, b, at_least=False, names=None)."""
    return functools.partial(compare, rows, measure=measure, reps=reps)


def effect_of(rows, keys, statistic, measure: str, reps: int) -> Optional[tuple]:
    """statistic(*scores of the configurations `keys`) with its stratified-bootstrap interval, each
    configuration's runs resampled independently; None until all of them are measured."""
    scores = [scores_of(rows, series, x, measure) for series, x in keys]
    if any(s is None for s in scores):
        return None
    return agg.interval_of(scores, statistic, reps)


def rosmo_above_mzu(rows, xs, claim: str, measure: str, reps: int) -> tuple:
    """(claim, measured, verdict): ROSMO's IQM above MZU's at every x of the study (series 'rosmo', 'mzu')."""
    checks = [compare(rows, ("rosmo", x), ("mzu", x), measure, reps) for x in xs]
    return claim, "; ".join(f"{x:g}: {text}" for x, (_, text) in zip(xs, checks)), combine([v for v, _ in checks])


def spread(*scores) -> float:
    """max - min of the IQMs of `scores`."""
    values = [agg.iqm(s) for s in scores]
    return max(values) - min(values)


def rosmo_steadier(rows, xs, claim: str, measure: str, reps: int) -> tuple:
    """(claim, measured, verdict): ROSMO's IQM varies less over the study's axis than MZU's: the interval of
    spread(MZU) - spread(ROSMO), spread = max - min of the IQM over the axis."""
    keys = [("rosmo", x) for x in xs] + [("mzu", x) for x in xs]
    n = len(xs)
    effect = effect_of(rows, keys, lambda *s: spread(*s[n:]) - spread(*s[:n]), measure, reps)
    if effect is None:
        return claim, "-", NOT_MEASURED
    sr = spread(*[scores_of(rows, *k, measure) for k in keys[:n]])
    sm = spread(*[scores_of(rows, *k, measure) for k in keys[n:]])
    measured = f"spread rosmo {sr:.3f} vs mzu {sm:.3f}: mzu - rosmo {agg.fmt_ci(effect, signed=True)}"
    return claim, measured, from_interval(effect)


def above_the_data(rows, algos: List[str], measure: str, reps: int, data_returns: Dict[str, float]) -> List[tuple]:
    """(claim, measured, verdict) per algorithm: its IQM of (score - the data's mean score, per task) above 0;
    `data_returns`: the data's mean return per task (else the run's own count of it)."""
    from common.scores import normalized_score

    out = []
    for algo in algos:
        row, scores = row_of(rows, algo), scores_of(rows, algo, None, measure)
        envs = list(row["per_seed"]["returns"]) if row is not None and "per_seed" in row else []
        means = {**(row or {}).get("data_returns", {}), **data_returns}
        if scores is None or any(e not in means for e in envs):
            out.append((f"{algo} ends above the data's mean return", "-", NOT_MEASURED))
            continue
        data = np.array([normalized_score(e, means[e]) for e in envs])
        effect = agg.interval_of([scores], lambda x, data=data: agg.iqm(x - data), reps)
        measured = f"{algo} {fmt_iqm(scores)} vs data {', '.join(f'{e} {d:.3f}' for e, d in zip(envs, data))}: "
        out.append(
            (f"{algo} ends above the data's mean return", measured + agg.fmt_ci(effect, signed=True), from_interval(effect))
        )
    return out


def best_setting(rows: List[Dict]) -> Optional[str]:
    """The configuration with the highest final IQM, and the one with the highest late IQM (each seed's mean over
    its last evaluations) where every row has it: a choice made from a sweep, not a claim of the paper."""
    done = [r for r in rows if not r["missing"]]
    if not done:
        return None
    best = max(done, key=lambda r: r["iqm"][0])
    choice = f"by the highest final IQM, {best['series']} @ {best['x']}: final IQM {agg.fmt_ci(best['iqm'])}"
    if all(r.get("late", {}).get("iqm") for r in done):
        late = max(done, key=lambda r: r["late"]["iqm"][0])
        choice += f"; by the highest late IQM, {late['series']} @ {late['x']}: late IQM {agg.fmt_ci(late['late']['iqm'])}"
    return choice
