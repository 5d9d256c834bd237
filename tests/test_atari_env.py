"""Atari environments under the Dopamine protocol, batched evaluation in a real game, Atari scores."""

import functools

import numpy as np
import pytest

from common.atari.env import (
    evaluate_atari,
    evaluate_atari_vector,
    make_atari_env,
    make_single_frame_env,
    num_actions,
    rom_id,
)
from common.evaluation import make_atari_evaluator
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
    for _ in range(10):  # same seed, same actions: the same frames
        obs, _, terminated, truncated, _ = stacked.step(1)
        frames.append(single.step(1)[0])
        expected = [frames[max(len(frames) - 4 + j, 0)] for j in range(4)]
        np.testing.assert_array_equal(obs, np.stack(expected, axis=-1))
    assert truncated and not terminated  # the agent-step cap
    stacked.close()
    single.close()


@pytest.mark.parametrize("evaluate", [evaluate_atari, evaluate_atari_vector])
def test_evaluate_atari_calls_the_policy_once_per_step_for_every_env(evaluate):
    calls = []
    rng = np.random.default_rng(0)

    def act(observation):
        calls.append(observation.shape)
        assert observation.dtype == np.uint8
        return rng.integers(0, 4, observation.shape[:2])

    episodes = evaluate("Breakout", act, seeds=[0, 1], num_episodes=2, max_episode_steps=25)
    assert episodes.returns.shape == (2, 2) and np.all(np.isfinite(episodes.returns))
    assert calls == [(2, 2, 84, 84, 4)] * 25  # a random Breakout game outlives 25 steps: the cap ends all four
    np.testing.assert_array_equal(episodes.lengths, np.full((2, 2), 25))
    assert episodes.action_counts.shape == (2, 4) and episodes.action_counts.sum(axis=1).tolist() == [50, 50]


def record_episodes(evaluate, game, actions, seeds, num_episodes, sticky, **kwargs):
    """Plays `actions` [T, S, E] (row t at call t) with episodes capped at T steps.

    Returns (the `Episodes`, the observations the policy saw [calls, S, E, 84, 84, 4]).
    """
    seen = []

    def act(observation):
        seen.append(observation.copy())
        return actions[len(seen) - 1]

    episodes = evaluate(game, act, seeds, num_episodes, len(actions), sticky_action_probability=sticky, **kwargs)
    return episodes, np.stack(seen)


def test_vector_evaluation_sees_the_same_pixels_as_the_gymnasium_path_without_sticky_actions():
    # 200 random Breakout actions: three of the 4 games end (all lives lost) at steps 130-178, the cap cuts the fourth.
    actions = np.random.default_rng(7).integers(0, 4, (200, 2, 2))
    ref, ref_obs = record_episodes(evaluate_atari, "Breakout", actions, [0, 1], 2, sticky=0.0)
    episodes, obs = record_episodes(evaluate_atari_vector, "Breakout", actions, [0, 1], 2, sticky=0.0, num_threads=2)
    assert ref_obs.shape == (200, 2, 2, 84, 84, 4) and obs.shape == ref_obs.shape
    np.testing.assert_array_equal(obs, ref_obs)  # every frame of every stack, the padded first stacks included
    for field in ("returns", "lengths", "action_counts"):
        np.testing.assert_array_equal(getattr(episodes, field), getattr(ref, field), err_msg=field)
    assert ref_obs[:, :, :, :, :, -1].std() > 0 and len(np.unique(ref.returns)) > 1  # the games moved and scored
    # Lengths: three games end before the cap, one is cut by it; the actions counted are those of each game's steps.
    assert sorted(ref.lengths.ravel().tolist())[-1] == 200 and sorted(ref.lengths.ravel().tolist())[-2] < 200
    played = np.arange(200)[:, None, None] < ref.lengths[None]  # [T, S, E]: step t belongs to the game
    for s in range(2):
        expected = np.bincount(actions[:, s][played[:, s]], minlength=4)
        np.testing.assert_array_equal(ref.action_counts[s], expected)


def test_a_breakout_policy_that_only_presses_fire_loses_its_lives_fast_and_one_that_never_does_plays_to_the_cap():
    # What the lengths and action counts tell about a score of 0: never serving, or serving and never moving.
    for action, short in ((1, True), (0, False)):
        policy = functools.partial(lambda obs, a: np.full(obs.shape[:2], a), a=action)
        episodes = evaluate_atari_vector("Breakout", policy, [0], 2, 1000, num_threads=1)
        assert episodes.returns.tolist() == [[0.0, 0.0]]
        assert (episodes.lengths < 300).all() if short else (episodes.lengths == 1000).all()
        assert episodes.action_counts[0, action] == episodes.lengths.sum() == episodes.action_counts.sum()


def test_vector_evaluation_with_sticky_actions_is_reproducible_from_the_seeds():
    # The same random actions in the 3 environments: only their seeded sticky-action draws differ.
    actions = np.repeat(np.random.default_rng(1).integers(0, 4, (60, 1, 1)), 3, axis=2)
    first = record_episodes(evaluate_atari_vector, "Breakout", actions, [4], 3, sticky=0.25, num_threads=1)
    again = record_episodes(evaluate_atari_vector, "Breakout", actions, [4], 3, sticky=0.25, num_threads=2)
    np.testing.assert_array_equal(first[1], again[1])
    np.testing.assert_array_equal(first[0].returns, again[0].returns)
    final = first[1][-1, 0]  # [3, 84, 84, 4]: episodes of one seed use different environment seeds
    assert not (np.array_equal(final[0], final[1]) and np.array_equal(final[1], final[2]))


def test_rom_id_maps_game_names_to_ale_roms():
    assert [rom_id(game) for game in ("MsPacman", "Pong", "Jamesbond")] == ["ms_pacman", "pong", "jamesbond"]
    with pytest.raises(ValueError, match="no ALE ROM for the game 'Catch'"):
        rom_id("Catch")


def test_atari_scores_cover_the_papers_12_games_and_bsuite_is_unchanged():
    assert len(ATARI_SCORES) == 12
    assert normalized_score("Pong", 18.25) == pytest.approx(1.0)
    assert normalized_score("Pong", -20.30) == pytest.approx(0.0)
    assert normalized_score("MsPacman", 4171.53) == pytest.approx(1.0)
    assert normalized_score("catch", 1.0) == pytest.approx(1.0)
    assert has_reference_scores("Breakout") and not has_reference_scores("Alien")
    with pytest.raises(KeyError, match="no reference scores for 'Alien'.*the paper's 12 games only"):
        reference_scores("Alien")


@pytest.mark.parametrize("backend", ["vector", "gymnasium"])
def test_atari_evaluator_passes_params_stacked_frames_and_one_key_per_seed_and_records_seconds(backend):
    import jax

    seen = []

    def act(params, observation, keys):
        seen.append((observation.shape, keys.shape[0]))
        return np.full(observation.shape[:2], params, np.int32)

    key = jax.random.PRNGKey(0)
    evaluate = make_atari_evaluator("Pong", act, seeds=[0], num_episodes=2, key=key, max_episode_steps=5, backend=backend)
    assert evaluate.seconds == []
    mean_returns = evaluate(0)
    assert mean_returns.shape == (1,) and np.all(np.isfinite(mean_returns))
    assert seen == [((1, 2, 84, 84, 4), 1)] * 5
    assert evaluate.episodes == [{"lengths": [5.0], "action_shares": [[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]]}]  # NOOP only
    evaluate(2)
    assert len(evaluate.seconds) == 2 and all(0 < t < 60 for t in evaluate.seconds)
    assert evaluate.episodes[1]["action_shares"] == [[0.0, 0.0, 1.0, 0.0, 0.0, 0.0]]


def test_atari_evaluator_rejects_an_unknown_backend():
    with pytest.raises(ValueError, match="unknown Atari evaluation backend 'envpool'"):
        make_atari_evaluator("Pong", None, seeds=[0], num_episodes=1, key=None, backend="envpool")


def test_make_evaluator_runs_atari_in_the_vector_env_and_records_seconds_of_every_evaluation(monkeypatch):
    import jax

    import common.atari.env
    from common.evaluation import make_evaluator

    def gymnasium_path(*args, **kwargs):
        raise AssertionError("Atari evaluation took the gymnasium path")

    monkeypatch.setattr(common.atari.env, "evaluate_atari", gymnasium_path)

    seen = []

    def act(params, observation, keys):
        seen.append(observation.shape)
        return np.zeros(observation.shape[:2], np.int32)

    evaluate = make_evaluator("Pong", act, seeds=[0, 1], num_episodes=1, max_episode_steps=3)
    for i in range(2):
        assert evaluate(jax.numpy.zeros(2), jax.random.PRNGKey(i)).shape == (2,)
    assert seen == [(2, 1, 84, 84, 4)] * 6
    assert len(evaluate.seconds) == 2 and all(0 < t < 60 for t in evaluate.seconds)
    assert [e["lengths"] for e in evaluate.episodes] == [[3.0, 3.0]] * 2  # one summary per call, per seed
