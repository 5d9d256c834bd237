"""benchmark/probe.py: the returns, epsilons and statistics it reports, and that it measures what rosmo.py computes.

The probe's model quantities must be the agent's own: the advantages of Eq. 7 (rosmo.one_step_advantage), the
acting policy pi exp(adv) / Z (rosmo.exact_policy_target, what make_act samples from) and the two advantages
Eq. 11 can be read with. They are checked here on a small MLP model with perturbed parameters (distinct
advantages), the rest on hand-made arrays.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rosmo
from benchmark import probe
from common.networks import logits_to_scalar
from common.replay import Window

A, BINS, D, B = 3, 20, 5, 4
NETWORK = rosmo.networks.MuZeroNetwork(
    num_actions=A, num_bins=BINS, representation_layers=(8, 6), dynamics_layers=(8, 6), prediction_layers=(8,)
)


def test_discounted_returns_restart_at_every_episode():
    reward = np.array([1.0, 0.0, 2.0, 0.0, 5.0, 1.0, 0.0])
    is_last = np.array([False, False, False, True, False, False, True])
    g = probe.discounted_returns(reward, is_last, 0.5)
    # episode 1: steps 0..3 (the last step holds no reward), episode 2: steps 4..6
    np.testing.assert_allclose(g, [1 + 0.5 * 0 + 0.25 * 2, 0 + 0.5 * 2, 2, 0, 5 + 0.5 * 1, 1, 0])


def test_episode_epsilons_follow_the_summary_only_when_its_episodes_are_these(tmp_path):
    (tmp_path / "Pong").mkdir()
    shards = [{"epsilon": 1.0, "steps": [3, 4]}, {"epsilon": 0.5, "steps": [2]}]
    (tmp_path / "Pong" / "behaviour_run_1.json").write_text(json.dumps({"shards": shards}))
    # observations per episode = agent steps + 1
    np.testing.assert_array_equal(probe.episode_epsilons(tmp_path, "Pong", 1, np.array([4, 5, 3])), [1.0, 1.0, 0.5])
    assert probe.episode_epsilons(tmp_path, "Pong", 1, np.array([4, 5])) is None  # a fraction of the data
    assert probe.episode_epsilons(tmp_path, "Pong", 1, np.array([4, 6, 3])) is None  # other episodes
    assert probe.episode_epsilons(tmp_path, "Pong", 2, np.array([4, 5, 3])) is None  # no summary of run 2


def test_summarise_counts_filters_shares_and_accuracy():
    m = {
        "state": np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 3.0], [1.0, 3.0]]),
        "value": np.array([0.0, 1.0, 2.0, 3.0]),
        "policy": np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.5, 0.5]]),
        "acting": np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.9], [0.6, 0.4]]),
        "adv": np.array([[0.1, -0.1], [-0.2, 0.3], [0.0, 0.5], [0.2, 0.1]]),
        "reward_model": np.array([0.9, 0.1, -0.1, 0.0]),
        "behavior_adv_model": np.array([0.1, 0.3, 0.5, -0.1]),
        "behavior_adv_data": np.array([-0.5, 0.2, -0.1, -0.3]),
    }
    action, reward, ret = np.array([0, 1, 1, 1]), np.array([1.0, 0.0, 0.0, 0.0]), np.array([0.0, 1.0, 2.0, 3.0])
    s = probe.summarise(m, action, reward, ret)
    assert s["states"] == 4 and s["value_return_corr"] == pytest.approx(1.0)
    assert s["state_spread"] == pytest.approx((0 + 1) / 2 / 1.5)  # unit stds 0 and 1 over a mean magnitude of 1.5
    assert s["reward_pred_where_reward_nonzero"] == pytest.approx(0.9)
    assert s["reward_pred_where_reward_zero"] == pytest.approx(0.0)
    assert s["filter_rate_model"] == pytest.approx(0.75) and s["filter_rate_data"] == pytest.approx(0.25)
    np.testing.assert_allclose(s["adv_best_share_per_action"], [0.5, 0.5])
    assert s["adv_accuracy"] == pytest.approx(0.75)  # argmax 0, 1, 1, 0 against 0, 1, 1, 1
    assert s["adv_accuracy_chance"] == pytest.approx(0.5 * 0.25 + 0.5 * 0.75)  # shares of the argmax x the data's
    np.testing.assert_allclose(s["data_action_share"], [0.25, 0.75])
    assert s["policy_accuracy"] == pytest.approx(0.5)  # argmax 0, 0, 1, 0 against 0, 1, 1, 1
    assert s["acting_accuracy"] == pytest.approx(0.75)  # argmax 0, 1, 1, 0 against 0, 1, 1, 1
    np.testing.assert_allclose(s["acting_mean"], [0.45, 0.55])


def test_measure_reads_the_agents_own_advantages_and_both_readings_of_eq_11():
    params = NETWORK.init(jax.random.PRNGKey(0), jnp.zeros((1, D)), jnp.zeros((1,), jnp.int32))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda p: p + jnp.asarray(rng.normal(0.0, 0.3, p.shape), p.dtype), params)
    observation = jnp.asarray(rng.normal(size=(B, 2, D)), jnp.float32)
    action = jnp.array([0, 2, 1, 2])
    discount = jnp.array([1.0, 1.0, 0.0, 1.0])  # row 2: a_t ended the episode in a terminal state
    window = Window(
        observation=observation,
        action=jnp.stack([action, action], 1),
        reward=jnp.zeros((B, 2)),
        discount=jnp.stack([discount, jnp.ones(B)], 1),
        has_action=jnp.ones((B, 2), bool),
        absorbing=jnp.array([[False, False], [False, False], [False, True], [False, False]]),
    )
    gamma = 0.9
    m = probe.make_measure(NETWORK, gamma)(params, window)

    def heads(obs):
        policy_logits, value_logits, reward_logits = NETWORK.apply(
            params, NETWORK.apply(params, obs, method=NETWORK.represent), method=NETWORK.predict
        )
        return policy_logits, logits_to_scalar(value_logits), logits_to_scalar(reward_logits)

    state = NETWORK.apply(params, observation[:, 0], method=NETWORK.represent)
    policy_logits, value, _ = heads(observation[:, 0])
    adv = rosmo.one_step_advantage(NETWORK, params, state, value, jnp.broadcast_to(jnp.arange(A), (B, A)), gamma)
    assert float(jnp.std(adv)) > 1e-3  # distinct advantages: the comparisons below can fail
    np.testing.assert_allclose(m["adv"], adv, atol=1e-6)
    np.testing.assert_allclose(m["acting"], jax.nn.softmax(jax.nn.log_softmax(policy_logits) + adv), atol=1e-6)
    np.testing.assert_allclose(m["behavior_adv_model"], adv[jnp.arange(B), action], atol=1e-6)
    # r_g(s, a_t): the reward head after the dynamics
    one = NETWORK.apply(params, state, action, method=NETWORK.dynamics)
    np.testing.assert_allclose(
        m["reward_model"], logits_to_scalar(NETWORK.apply(params, one, method=NETWORK.predict)[2]), atol=1e-6
    )
    # --behavior-advantage data: reward and value heads at h(o_{t+1}); no value after a terminal state
    _, next_value, next_reward = heads(observation[:, 1])
    expected = next_reward + gamma * discount * jnp.where(jnp.arange(B) == 2, 0.0, next_value) - value
    np.testing.assert_allclose(m["behavior_adv_data"], expected, atol=1e-6)
    assert abs(float(m["behavior_adv_data"][2] - (next_reward[2] - value[2]))) < 1e-6


def test_probe_refuses_agents_without_a_model_and_several_checkpoints_without_out(tmp_path, capsys):
    from common import runs
    from common.errors import UsageError

    path = tmp_path / "checkpoint.msgpack"
    runs.save_checkpoint(path, {"params": {"w": np.zeros((1, 2))}}, {"algo": "bc", "args": {"env_id": "Pong"}})
    with pytest.raises(UsageError, match="bc agent; the probe reads rosmo, mzu, mzu_q"):
        probe.probe(path)
    with pytest.raises(SystemExit):
        probe.main([str(path), str(path)])
    assert "pass --out FILE" in capsys.readouterr().err
