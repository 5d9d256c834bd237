"""IQM and stratified-bootstrap intervals (benchmark/aggregate.py) against independent computations."""

import sys

import numpy as np
import pytest
import scipy.stats
from scripts import ROOT

sys.path.append(str(ROOT / "benchmark"))
import aggregate as agg  # noqa: E402


@pytest.mark.parametrize("n", [1, 3, 4, 5, 8, 15, 60])
def test_iqm_equals_scipy_trimmed_mean_at_25_percent(n):
    x = np.random.default_rng(n).normal(size=n) * 10
    assert agg.iqm(x) == pytest.approx(scipy.stats.trim_mean(x, 0.25, axis=None), rel=1e-12)


def test_iqm_by_hand():
    # 8 values: drop the 2 lowest and the 2 highest, average 3, 4, 5, 100.
    assert agg.iqm([[1, 2, 3, 4], [5, 100, 200, 300]]) == pytest.approx((3 + 4 + 5 + 100) / 4)


def test_stratified_bootstrap_resamples_runs_within_each_task_only():
    scores = np.array([[0.0, 10.0, 20.0], [1.0, 11.0, 21.0], [2.0, 12.0, 22.0]])  # [runs, tasks]
    samples = agg.stratified_bootstrap(scores, reps=500, seed=1)
    assert samples.shape == (500, 3, 3)
    for task in range(3):
        assert set(np.unique(samples[:, :, task])) == set(scores[:, task])
    # Tasks are resampled independently: the run drawn for task 0 does not fix the run of task 1.
    assert np.mean(samples[:, :, 0] + 10 == samples[:, :, 1]) < 0.6


def test_interval_collapses_when_every_run_of_a_task_agrees():
    scores = np.array([[0.2, 1.0], [0.2, 1.0], [0.2, 1.0]])
    assert agg.iqm_with_ci(scores, reps=200) == pytest.approx((0.6, 0.6, 0.6))


def naive_interval(scores, reps, rng):
    """The rliable recipe written out with loops: per task draw runs with replacement, pool, IQM."""
    runs, tasks = scores.shape
    values = []
    for _ in range(reps):
        resample = np.empty_like(scores)
        for t in range(tasks):
            for r in range(runs):
                resample[r, t] = scores[rng.integers(runs), t]
        values.append(scipy.stats.trim_mean(resample, 0.25, axis=None))
    return np.percentile(values, [2.5, 97.5])


def test_interval_agrees_with_a_naive_bootstrap_on_run_like_data():
    rng = np.random.default_rng(0)
    scores = np.column_stack([rng.normal(m, s, size=5) for m, s in [(0.9, 0.1), (0.5, 0.3), (1.2, 0.2)]])
    point, low, high = agg.iqm_with_ci(scores, reps=4000, seed=3)
    naive_low, naive_high = naive_interval(scores, 4000, np.random.default_rng(11))
    assert point == pytest.approx(scipy.stats.trim_mean(scores, 0.25, axis=None))
    assert low < point < high
    assert low == pytest.approx(naive_low, abs=0.03) and high == pytest.approx(naive_high, abs=0.03)
