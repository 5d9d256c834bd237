"""Atari environments under the Dopamine protocol, batched evaluation in a real game, Atari scores."""

import numpy as np
import pytest

from common.atari_env import evaluate_atari, make_atari_env, make_single_frame_env, num_actions
from common.scores import ATARI_SCORES, has_reference_scores, normalized_score, reference_scores


def test_num_actions_is_the_minimal_action_set():
    assert [num_actions(game) for game in ("Pong", "Breakout", "MsPacman", "Seaquest")] == [6, 4, 9, 18]


def test_stacked_env_repeats_the_first_frame_and_puts_the_newest_frame_last():
    stacked, single = make_atari_env("Breakout", 3, 10), make_single_frame_env("Breakout", 3, 10)
    obs, _ = stacked.reset()
    frame, _ = single.reset()
    assert obs.shape == (84, 84, 4) and obs.dtype == np.uint8
    assert all(np.array_equal(obs[..., j], frame) for j in range(4))
    frames = [frame]
    for step in range(10):  # same seed, same actions: the same frames
        obs, _, terminated, truncated, _ = stacked.step(1)
        frames.append(single.step(1)[0])
        expected = [frames[max(len(frames) - 4 + j, 0)] for j in range(4)]
        np.testing.assert_array_equal(obs, np.stack(expected, axis=-1))
    assert truncated and not terminated  # the agent-step cap
    stacked.close()
    single.close()


def test_evaluate_atari_calls_the_policy_once_per_step_for_every_env():
    calls = []
    rng = np.random.default_rng(0)

    def act(observation):
        calls.append(observation.shape)
        assert observation.dtype == np.uint8
        return rng.integers(0, 4, observation.shape[:2])

    returns = evaluate_atari("Breakout", act, seeds=[0, 1], num_episodes=2, max_episode_steps=25)
    assert returns.shape == (2, 2) and np.all(np.isfinite(returns))
    assert calls == [(2, 2, 84, 84, 4)] * 25  # a random Breakout game outlives 25 steps: the cap ends all four


def test_atari_scores_cover_the_papers_12_games_and_bsuite_is_unchanged():
    assert len(ATARI_SCORES) == 12
    assert normalized_score("Pong", 18.25) == pytest.approx(1.0)
    assert normalized_score("Pong", -20.30) == pytest.approx(0.0)
    assert normalized_score("MsPacman", 4171.53) == pytest.approx(1.0)
    assert normalized_score("catch", 1.0) == pytest.approx(1.0)
    assert has_reference_scores("Breakout") and not has_reference_scores("Alien")
    with pytest.raises(KeyError, match="no reference scores for 'Alien'.*the paper's 12 games only"):
        reference_scores("Alien")


def test_atari_evaluator_passes_params_stacked_frames_and_one_key_per_seed():
    import jax

    from common.atari_env import make_atari_evaluator

    seen = []

    def act(params, observation, keys):
        seen.append((observation.shape, keys.shape[0]))
        return np.full(observation.shape[:2], params, np.int32)

    key = jax.random.PRNGKey(0)
    evaluate = make_atari_evaluator("Pong", act, seeds=[0], num_episodes=2, key=key, max_episode_steps=5)
    mean_returns = evaluate(0)
    assert mean_returns.shape == (1,) and np.all(np.isfinite(mean_returns))
    assert seen == [((1, 2, 84, 84, 4), 1)] * 5
