import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from common.networks import h, h_inv, logits_to_scalar, scalar_to_probs, support, two_hot

finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(finite)
def test_h_inverse_round_trip(x):
    assert np.isclose(float(h_inv(h(jnp.float32(x)))), x, rtol=1e-3, atol=1e-3)


def test_h_matches_closed_form_on_known_points():
    x = jnp.array([0.0, 3.0, -8.0, 99.0])
    expected = np.sign(x) * (np.sqrt(np.abs(x) + 1) - 1) + 1e-3 * np.asarray(x)
    np.testing.assert_allclose(h(x), expected, rtol=1e-6)
    np.testing.assert_allclose(h(x)[:3], [0.0, 1.003, -2.008], atol=1e-6)


def test_support_is_unit_spaced_and_symmetric():
    np.testing.assert_array_equal(np.asarray(support(601))[[0, 300, 600]], [-300, 0, 300])
    np.testing.assert_array_equal(np.asarray(support(20))[[0, 19]], [-9.5, 9.5])


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-12, max_value=12, allow_nan=False), st.sampled_from([20, 21, 601]))
def test_two_hot_is_a_distribution_on_two_adjacent_bins_with_the_right_mean(y, num_bins):
    probs = np.asarray(two_hot(jnp.float32(y), num_bins))
    half = (num_bins - 1) / 2
    assert probs.shape == (num_bins,)
    assert np.all(probs >= 0) and np.isclose(probs.sum(), 1.0, atol=1e-5)
    nonzero = np.flatnonzero(probs > 1e-6)
    assert len(nonzero) <= 2 and (len(nonzero) < 2 or nonzero[1] == nonzero[0] + 1)
    assert np.isclose(probs @ np.asarray(support(num_bins)), np.clip(y, -half, half), atol=1e-4)


def test_two_hot_hand_example():
    # 20 bins: support -9.5 .. 9.5; y = 0.25 lies between bins 9 (-0.5) and 10 (0.5) at 3/4.
    probs = np.asarray(two_hot(jnp.float32(0.25), 20))
    assert np.isclose(probs[9], 0.25) and np.isclose(probs[10], 0.75)


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=-90, max_value=90, allow_nan=False))
def test_encode_then_decode_returns_the_scalar(x):
    probs = scalar_to_probs(jnp.float32(x), 20)
    decoded = logits_to_scalar(jnp.log(probs + 1e-30))
    assert np.isclose(float(decoded), x, rtol=1e-3, atol=1e-3)


def test_zero_logits_decode_to_zero():
    # A fresh network (zero output layers) predicts value and reward 0, up to float rounding.
    assert abs(float(logits_to_scalar(jnp.zeros(20)))) < 1e-4
    assert abs(float(logits_to_scalar(jnp.zeros(601)))) < 1e-4
