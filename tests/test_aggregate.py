"""IQM and stratified-bootstrap intervals (benchmark/aggregate.py) against independent computations."""

import numpy as np
import pytest
import scipy.stats

from benchmark import aggregate as agg


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


# ---------------------------------------------------------------------------------------------
# Comparisons of two configurations, performance profiles and late averages (rliable's definitions).


def test_probability_of_improvement_by_hand():
    # Task 0: x = (1, 3), y = (2, 3); of the 4 pairs, 3 > 2 wins, 3 = 3 ties (counts 1/2), 1 loses twice:
    # (1 + 0.5) / 4 = 0.375. Task 1: every x (5, 5) above every y (1, 1): 1. Averaged over tasks: 0.6875.
    x = np.array([[1.0, 5.0], [3.0, 5.0]])
    y = np.array([[2.0, 1.0], [3.0, 1.0]])
    assert agg.probability_of_improvement(x, y) == pytest.approx((0.375 + 1.0) / 2)
    assert agg.probability_of_improvement(y, x) == pytest.approx((0.625 + 0.0) / 2)  # P(Y > X) = 1 - P(X > Y)
    assert agg.probability_of_improvement(x, x) == pytest.approx(0.5)


def test_probability_of_improvement_is_the_mann_whitney_u_over_the_pairs_per_task_with_unequal_runs():
    # rliable: per task, scipy's U statistic (alternative "greater") / (runs_x * runs_y), then the mean over tasks.
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 4, size=(5, 3)).astype(float), rng.integers(0, 4, size=(3, 3)).astype(float)  # ties likely
    expected = np.mean([scipy.stats.mannwhitneyu(x[:, m], y[:, m], alternative="greater").statistic / 15 for m in range(3)])
    assert agg.probability_of_improvement(x, y) == pytest.approx(expected, rel=1e-12)


def test_probability_of_improvement_rejects_scores_of_other_tasks():
    with pytest.raises(ValueError, match="same tasks"):
        agg.probability_of_improvement(np.zeros((3, 2)), np.zeros((3, 3)))


def test_an_improvement_of_every_run_has_an_interval_at_one_and_a_positive_difference():
    # Every run of x above every run of y on the one task: each resample keeps P(X > Y) = 1, and each resample's
    # mean of x is at least 0.9 and of y at most 0.3, so the difference interval lies within [0.6, 1.0].
    x, y = np.array([[0.9], [1.0], [1.1]]), np.array([[0.1], [0.2], [0.3]])
    assert agg.probability_of_improvement_with_ci(x, y, reps=500) == pytest.approx((1.0, 1.0, 1.0))
    point, low, high = agg.iqm_difference_with_ci(x, y, reps=500)
    assert point == pytest.approx(1.0 - 0.2) and 0.6 <= low < point < high <= 1.0


def test_overlapping_runs_give_a_difference_interval_that_contains_zero():
    # x's mean is above y's (0.6 against 0.5) but its worst run is below all of y's: no effect is in the interval.
    x, y = np.array([[0.0], [0.9], [0.9]]), np.array([[0.5], [0.5], [0.5]])
    point, low, high = agg.iqm_difference_with_ci(x, y, reps=2000)
    assert point == pytest.approx(0.1) and low < 0 < high
    p, p_low, p_high = agg.probability_of_improvement_with_ci(x, y, reps=2000)
    assert p == pytest.approx(2 / 3) and p_low < 0.5 < p_high  # a resample of three copies of the 0.0 run gives 0


def test_difference_interval_agrees_with_a_naive_independent_bootstrap():
    rng = np.random.default_rng(2)
    x = np.column_stack([rng.normal(m, 0.2, size=5) for m in (0.8, 0.5)])
    y = np.column_stack([rng.normal(m, 0.2, size=4) for m in (0.7, 0.4)])
    naive = []
    draw = np.random.default_rng(9)
    for _ in range(4000):
        rx = np.column_stack([x[draw.integers(5, size=5), t] for t in range(2)])
        ry = np.column_stack([y[draw.integers(4, size=4), t] for t in range(2)])
        naive.append(scipy.stats.trim_mean(rx, 0.25, axis=None) - scipy.stats.trim_mean(ry, 0.25, axis=None))
    point, low, high = agg.iqm_difference_with_ci(x, y, reps=4000, seed=5)
    assert point == pytest.approx(scipy.stats.trim_mean(x, 0.25, axis=None) - scipy.stats.trim_mean(y, 0.25, axis=None))
    assert (low, high) == pytest.approx(tuple(np.percentile(naive, [2.5, 97.5])), abs=0.03)


def test_performance_profile_by_hand():
    # 4 runs x tasks: 0.2, 0.5, 0.8, 1.0. Strictly above tau: all 4 at 0; 0.8 and 1.0 at 0.5 (0.5 itself is not
    # above it); 1.0 alone at 0.9; none at 1.0.
    scores = np.array([[0.2, 0.5], [0.8, 1.0]])
    taus = [0.0, 0.5, 0.9, 1.0]
    assert agg.performance_profile(scores, taus) == pytest.approx([1.0, 0.5, 0.25, 0.0])
    profile = agg.performance_profile_with_ci(scores, taus, reps=300)
    assert profile.shape == (4, 3) and profile[:, 0] == pytest.approx([1.0, 0.5, 0.25, 0.0])
    assert np.all(profile[:, 1] <= profile[:, 0]) and np.all(profile[:, 0] <= profile[:, 2])
    # With every run of a task alike, no resample changes the profile: the band collapses onto it.
    same = np.array([[0.3, 0.9], [0.3, 0.9], [0.3, 0.9]])
    assert agg.performance_profile_with_ci(same, [0.5], reps=200) == pytest.approx(np.array([[0.5, 0.5, 0.5]]))


def test_late_average_is_each_runs_mean_over_its_last_five_evaluations():
    history = np.arange(7 * 2 * 1, dtype=float).reshape(7, 2, 1)  # [evaluations, runs, tasks]
    # Run 0 scores 0, 2, ..., 12; its last five (4, 6, 8, 10, 12) average 8; run 1's (5, ..., 13) average 9.
    assert agg.late_average(history) == pytest.approx(np.array([[8.0], [9.0]]))
    assert agg.late_average(history[:2]) == pytest.approx(np.array([[1.0], [2.0]]))  # fewer evaluations: all of them


@pytest.mark.parametrize("seed", range(6))
def test_three_runs_of_one_task_are_read_back_from_their_iqm_interval(seed):
    # With 3 runs, a resample of three copies of the lowest run has probability 1/27 > 2.5%: the interval's
    # ends are the lowest and the highest run, and the IQM (which trims nothing) gives the middle one.
    runs = np.round(np.random.default_rng(seed).uniform(-1, 1, size=3), 1)
    estimate = agg.iqm_with_ci(runs[:, None], reps=2000)
    assert agg.runs_from_interval(estimate, 3) == pytest.approx(np.sort(runs))
    assert agg.runs_from_interval(agg.iqm_with_ci(runs[:2, None], reps=2000), 2) == pytest.approx(np.sort(runs[:2]))
    assert agg.runs_from_interval(estimate, 4) is None  # 4^-4 < 2.5%: the ends are not the runs any more


def test_plot_profiles_writes_a_png(tmp_path):
    taus = np.linspace(0, 1, 11)
    profile = agg.performance_profile_with_ci(np.array([[0.2], [0.6], [0.9]]), taus, reps=100)
    agg.plot_profiles(tmp_path / "p.png", "profiles", {"a": (taus, profile)})
    assert (tmp_path / "p.png").stat().st_size > 0


def test_fmt_ci_signs_a_difference_and_says_when_there_is_no_interval():
    assert agg.fmt_ci((0.1, -0.02, 0.3), signed=True) == "+0.1000 [-0.0200, +0.3000]"
    assert agg.fmt_ci((0.5, None, None)) == "0.500 [no interval]" and agg.fmt_ci(None) == "-"
