import jax
import numpy as np
import pytest

from common.episodes import Episodes, subset_episode_indices, validate_episodes
from common.errors import DataError
from common.replay import check_batch_size, make_store, sample_windows


def synthetic_episodes(lengths, terminal=None):
    """Episodes whose observation is (episode id, step in episode, 1); rewards encode both too."""
    terminal = terminal if terminal is not None else [True] * len(lengths)
    cols = {k: [] for k in Episodes._fields}
    for e, (T, term) in enumerate(zip(lengths, terminal)):
        for i in range(T + 1):
            last = i == T
            cols["observation"].append([e, i, 1.0])
            cols["action"].append(0 if last else (e + i) % 3)
            cols["reward"].append(0.0 if last else 100.0 * e + i + 1)
            cols["discount"].append(0.0 if last or (term and i == T - 1) else 1.0)
            cols["is_first"].append(i == 0)
            cols["is_last"].append(last)
            cols["is_terminal"].append(last and term)
    ep = Episodes(
        observation=np.asarray(cols["observation"], np.float32),
        action=np.asarray(cols["action"], np.int32),
        reward=np.asarray(cols["reward"], np.float32),
        discount=np.asarray(cols["discount"], np.float32),
        is_first=np.asarray(cols["is_first"]),
        is_last=np.asarray(cols["is_last"]),
        is_terminal=np.asarray(cols["is_terminal"]),
    )
    validate_episodes(ep, "synthetic")
    return ep


def test_windows_never_leak_across_episodes_unmasked():
    lengths = [1, 2, 7, 3, 12, 1, 5]
    ep = synthetic_episodes(lengths, terminal=[True, False, True, True, False, True, True])
    store = make_store(ep)
    L = 9
    w = jax.device_get(sample_windows(store, jax.random.PRNGKey(0), 4096, L, num_actions=3))
    episode, step = w.observation[..., 0], w.observation[..., 1]
    # Every observation in a window comes from the start's episode.
    assert np.all(episode == episode[:, :1])
    T = np.asarray(lengths)[episode[:, 0].astype(int)]
    start = step[:, 0]
    expected_step = np.minimum(start[:, None] + np.arange(L), T[:, None])
    np.testing.assert_array_equal(step, expected_step)
    # Starts are real transitions, spread over every episode and step.
    assert np.all(start < T)
    assert len({(e, s) for e, s in zip(episode[:, 0], start)}) == sum(lengths)
    has_action = start[:, None] + np.arange(L) < T[:, None]
    np.testing.assert_array_equal(w.has_action, has_action)
    # Data fields are the data where a transition exists, neutral padding elsewhere.
    np.testing.assert_array_equal(w.reward, np.where(has_action, 100 * episode + step + 1, 0))
    np.testing.assert_array_equal(w.action[has_action], ((episode + step) % 3)[has_action])
    assert np.all((w.action >= 0) & (w.action < 3))
    assert np.all(w.discount[~has_action] == 1.0)
    # Absorbing: at or past a terminal final step, or past the end of a truncated episode.
    term = np.asarray([True, False, True, True, False, True, True])[episode[:, 0].astype(int)]
    past_end = start[:, None] + np.arange(L) > T[:, None]
    at_end = start[:, None] + np.arange(L) == T[:, None]
    np.testing.assert_array_equal(w.absorbing, past_end | (at_end & term[:, None]))
    # The transition into a terminal state carries discount 0; others 1.
    into_terminal = has_action & (start[:, None] + np.arange(L) == T[:, None] - 1) & term[:, None]
    np.testing.assert_array_equal(w.discount[has_action], np.where(into_terminal, 0.0, 1.0)[has_action])


def test_padding_actions_are_random_not_the_stored_pad():
    ep = synthetic_episodes([1] * 50)
    w = jax.device_get(sample_windows(make_store(ep), jax.random.PRNGKey(1), 512, 6, num_actions=3))
    pad = w.action[~w.has_action]
    assert set(np.unique(pad)) == {0, 1, 2}


def test_batch_larger_than_data_is_a_clear_error():
    store = make_store(synthetic_episodes([3, 4]))
    check_batch_size(store, 7)
    with pytest.raises(DataError, match="--batch-size 8 does not fit the data \\(7 transitions\\)"):
        check_batch_size(store, 8)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_data_fraction_outside_unit_interval_is_an_error(fraction):
    with pytest.raises(DataError, match="--data-fraction must be in \\(0, 1\\]"):
        subset_episode_indices(100, fraction)


def test_data_fraction_keeps_an_even_spread_of_episodes():
    idx = subset_episode_indices(2000, 0.01)
    assert len(idx) == 20 and idx[0] == 0 and idx[-1] == 1999
    assert np.all(np.diff(idx) >= 100) and np.all(np.diff(idx) <= 106)
    np.testing.assert_array_equal(subset_episode_indices(7, 1.0), np.arange(7))
    assert len(subset_episode_indices(3, 0.01)) == 1


def test_validate_rejects_cut_episodes():
    ep = synthetic_episodes([2, 2])
    with pytest.raises(DataError, match="cut"):
        validate_episodes(ep._replace(**{k: v[:-1] for k, v in ep._asdict().items()}), "x")
