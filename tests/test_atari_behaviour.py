"""The behaviour data generator (common/atari/behaviour.py): epsilon across shards, the planner leaving the emulator
as it found it, the files read back by the project's RL Unplugged reader, resuming, and refusing other settings."""

import json

import numpy as np
import pytest

from common.atari.behaviour import TRACKERS, Args, check_args, generate, plan, record_behaviour_episode, shard_epsilon, track
from common.atari.env import make_single_frame_env
from common.atari.loader import load_atari

GAME = "Breakout"


def test_epsilon_falls_linearly_from_the_first_shard_to_the_last():
    assert [shard_epsilon(i, 5, 1.0, 0.0) for i in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert shard_epsilon(0, 1, 1.0, 0.2) == 0.2  # a single shard takes the final epsilon
    assert shard_epsilon(3, 4, 0.5, 0.5) == 0.5


def test_the_planner_leaves_the_game_where_it_was():
    """After planning, the game goes on as in a twin emulator that never planned (sticky actions off, so both are
    deterministic): the RAM, the lives and the next observations are the same."""
    planned, twin = (make_single_frame_env(GAME, 0, max_episode_steps=50, sticky_action_probability=0) for _ in range(2))
    for env in (planned, twin):
        env.reset()
        for action in (1, 1, 2, 2):  # fire, then move: the ball is in play
            env.step(action)
    ale, action_set = planned.unwrapped.ale, planned.unwrapped._action_set
    action = plan(ale, action_set, np.random.default_rng(0), depth=5, life_penalty=10.0)
    assert 0 <= action < len(action_set)
    np.testing.assert_array_equal(ale.getRAM(), twin.unwrapped.ale.getRAM())
    assert ale.lives() == twin.unwrapped.ale.lives()
    for step_action in (action, 3, 0):
        np.testing.assert_array_equal(planned.step(step_action)[0], twin.step(step_action)[0])
    for env in (planned, twin):
        env.close()


def test_ties_go_to_the_first_action_unless_asked_to_be_random():
    """At the start of Breakout nothing happens within 3 steps whatever the action, so every action ties: "first"
    takes NOOP (action 0) every time, "random" spreads over the action set."""
    env = make_single_frame_env(GAME, 0, max_episode_steps=50, sticky_action_probability=0)
    env.reset()
    ale, action_set = env.unwrapped.ale, env.unwrapped._action_set
    rng = np.random.default_rng(0)
    assert {plan(ale, action_set, rng, depth=3, life_penalty=10.0) for _ in range(8)} == {0}
    assert len({plan(ale, action_set, rng, depth=3, life_penalty=10.0, ties="random") for _ in range(16)}) > 1
    env.close()


def test_the_tracker_moves_the_paddle_towards_the_ball_and_serves_when_none_is_in_play():
    """Hand-made RAM: Breakout's paddle x at RAM 72, ball x at 99, ball y at 101 (0: no ball); aim = ball - 8."""
    tracker = TRACKERS["Breakout"]
    ram = np.zeros(128, np.uint8)
    ram[101] = 0
    assert track(ram, tracker) == 1  # FIRE serves
    ram[101], ram[99] = 120, 100  # aim 92
    for paddle, action in ((80, 2), (87, 2), (88, 0), (96, 0), (97, 3), (150, 3)):  # RIGHT, NOOP within 4, LEFT
        ram[72] = paddle
        assert track(ram, tracker) == action, paddle
    pong = TRACKERS["Pong"]  # Pong's RIGHT (2) moves up, lowering the paddle's y: the moves are the other way round
    ram = np.zeros(128, np.uint8)
    ram[49], ram[54], ram[51] = 100, 120, 60  # ball below the paddle: move down (LEFT, 3)
    assert track(ram, pong) == 3
    ram[51] = 180
    assert track(ram, pong) == 2


@pytest.mark.parametrize("game", sorted(TRACKERS))
def test_the_tracker_outscores_the_random_policy(game):
    """Deterministic play (sticky actions off) for 400 agent steps: the tracker alone (epsilon 0) scores more than
    the uniform random policy (epsilon 1). A tracker that moved the paddle away from the ball would not."""
    scores = {}
    for epsilon in (0.0, 1.0):
        env = make_single_frame_env(game, 0, max_episode_steps=400, sticky_action_probability=0)
        episode = record_behaviour_episode(env, np.random.default_rng(0), epsilon, 1, 0.0, tracker=TRACKERS[game])
        scores[epsilon] = float(np.sum(episode.reward))
        env.close()
    assert scores[0.0] > scores[1.0] + 2, scores


def test_the_tracker_is_refused_for_a_game_it_does_not_know(tmp_path):
    with pytest.raises(ValueError, match="--controller tracker knows"):
        check_args(Args(out=str(tmp_path), game="MsPacman", controller="tracker"))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("behaviour")
    args = Args(out=str(out), game=GAME, num_shards=3, episodes_per_shard=1, max_steps=60, depth=3)
    return args, generate(args)


def test_summary_has_every_shard_with_its_epsilon(generated):
    args, summary = generated
    assert summary["complete"] and summary["episodes"] == 3
    assert [s["epsilon"] for s in summary["shards"]] == [1.0, 0.5, 0.0]
    assert summary["steps"] == sum(n for s in summary["shards"] for n in s["steps"])
    assert all(n <= args.max_steps for s in summary["shards"] for n in s["steps"])
    returns = [r for s in summary["shards"] for r in s["returns"]]
    assert summary["mean_return"] == pytest.approx(np.mean(returns))


def test_the_rl_unplugged_reader_loads_the_shards_as_recorded(generated, tmp_path):
    args, summary = generated
    episodes, _ = load_atari(GAME, 1, args.out, 1.0, cache_dir=tmp_path, progress=False)
    assert episodes.observation.shape[1:] == (84, 84)
    lengths = [n for s in summary["shards"] for n in s["steps"]]
    assert int(np.sum(episodes.is_first)) == 3
    assert len(episodes.action) == sum(lengths) + 3  # T transitions are stored as T + 1 steps
    clipped = [float(np.clip(r, -1, 1)) for s in summary["shards"] for r in s["returns"]]  # Breakout: +1 per brick here
    assert np.all(np.asarray(episodes.episode_returns()) <= np.asarray(clipped) + 1e-6)


def test_a_second_generation_resumes_and_writes_nothing(generated):
    args, summary = generated
    shard = f"{args.out}/{GAME}/run_1-00001-of-00003"
    before = open(shard, "rb").read()
    again = generate(args)
    assert again == summary
    assert open(shard, "rb").read() == before


def test_other_settings_in_the_same_directory_are_refused(generated):
    args, _ = generated
    other = Args(out=args.out, game=GAME, num_shards=3, episodes_per_shard=1, max_steps=60, depth=4)
    with pytest.raises(ValueError, match="other settings"):
        generate(other)
    summary = json.loads(open(f"{args.out}/{GAME}/behaviour_run_1.json").read())
    assert summary["settings"]["depth"] == 3
