"""benchmark/precision.py's comparison of two sets of policy targets, on hand-made distributions."""

import numpy as np
import pytest

from benchmark.precision import divergence


def test_identical_targets_have_no_divergence():
    p = np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]])
    d = divergence(p, p)
    assert d["kl_max"] == pytest.approx(0.0, abs=1e-12) and d["tv_mean"] == pytest.approx(0.0, abs=1e-12)
    assert d["argmax_agree"] == 1.0


def test_divergence_matches_hand_computed_kl_tv_and_argmax():
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    q = np.array([[0.5, 0.5], [0.25, 0.75]])
    kl = [np.log(2.0), 0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75)]
    d = divergence(p, q)
    assert d["kl_mean"] == pytest.approx(np.mean(kl), rel=1e-9) and d["kl_max"] == pytest.approx(max(kl), rel=1e-9)
    assert d["tv_mean"] == pytest.approx((0.5 + 0.25) / 2, rel=1e-9)
    assert d["argmax_agree"] == 0.5  # row 0 agrees (action 0 vs a tie read as action 0); row 1 does not


def test_a_zero_visit_count_gives_a_finite_kl_from_the_floor():
    p, q = np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]])
    d = divergence(p, q)
    floor = 1e-6 / (1 + 1e-6)
    expected = 0.5 * np.log(0.5 / (1 / (1 + 1e-6))) + 0.5 * np.log(0.5 / floor)
    assert np.isfinite(d["kl_max"]) and d["kl_max"] == pytest.approx(expected, rel=1e-9)
