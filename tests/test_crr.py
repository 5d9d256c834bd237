"""CRR's weights, advantages, critic target and losses on hand-made input, its update, and crr.py run as a user runs it."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scripts import SMALL, one_line_error, optimizer_of, run_script

import crr


def test_binary_weights_are_the_positive_advantage_indicator():
    w = crr.crr_weights(jnp.array([-1.0, 0.0, 1e-3, 2.5]), "binary", beta=1.0, max_weight=20.0)
    np.testing.assert_array_equal(w, [0.0, 0.0, 1.0, 1.0])


def test_exp_weights_are_exp_of_advantage_over_beta():
    w = crr.crr_weights(jnp.array([-1.0, 0.0, 1.0, 2.0, 5.0]), "exp", beta=2.0, max_weight=20.0)
    # exp(-0.5), exp(0), exp(0.5), exp(1), exp(2.5): all below 20.
    np.testing.assert_allclose(w, [0.606531, 1.0, 1.648721, 2.718282, 12.182494], rtol=1e-5)


def test_exp_weights_are_clipped_at_max_weight():
    w = crr.crr_weights(jnp.array([2.9, 3.0, 5.0, 1e4, jnp.inf]), "exp", beta=1.0, max_weight=20.0)
    # exp(2.9) = 18.174 stays; exp(3) = 20.086, exp(5) = 148.4 and beyond are clipped to 20.
    np.testing.assert_allclose(w, [18.174145, 20.0, 20.0, 20.0, 20.0], rtol=1e-5)
    assert np.all(np.isfinite(w))


def test_advantage_with_the_mean_baseline_subtracts_the_policy_expectation():
    q = jnp.array([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0], [-1.0, 0.0, 3.0]])
    probs = jnp.array([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.0, 1.0, 0.0]])
    # V = 0.5 + 0.5 + 1 = 2 for the first two rows, V = 0 for the last.
    adv = crr.advantage(q, probs, jnp.array([2, 0, 2]), "mean")
    np.testing.assert_allclose(adv, [4.0 - 2.0, 1.0 - 2.0, 3.0 - 0.0], rtol=1e-6)


def test_advantage_with_the_max_baseline_is_never_positive():
    q = jnp.array([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0], [-1.0, 0.0, 3.0]])
    probs = jnp.full((3, 3), 1.0 / 3.0)  # ignored by the max baseline
    adv = crr.advantage(q, probs, jnp.array([2, 0, 1]), "max")
    np.testing.assert_allclose(adv, [0.0, -3.0, -3.0], rtol=1e-6)


def test_critic_target_bootstraps_from_the_target_policy_expectation_except_at_termination():
    gamma = 0.9
    reward = jnp.array([1.0, -1.0, 0.5])
    discount = jnp.array([1.0, 0.0, 1.0])  # the second transition terminated the episode
    next_q = jnp.array([[1.0, 2.0, 3.0], [10.0, 10.0, 10.0], [-2.0, 0.0, 2.0]])
    next_probs = jnp.array([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5], [0.5, 0.0, 0.5]])
    y = crr.critic_target(reward, discount, next_q, next_probs, gamma)
    # Row 0: 1 + 0.9 * (0.2 + 0.6 + 1.5) = 3.07; row 1: -1 (no bootstrap); row 2: 0.5 + 0.9 * 0 = 0.5.
    np.testing.assert_allclose(y, [3.07, -1.0, 0.5], rtol=1e-6)


def test_critic_loss_is_cross_entropy_at_the_data_action_against_the_two_hot_target():
    logits = jnp.stack([jnp.zeros(20), jnp.arange(20.0) / 10.0])[None]  # [B=1, A=2, N=20]
    # y = 0: h(0) = 0 lies halfway between bins 9 and 10 of the support -9.5..9.5.
    loss = crr.critic_loss(logits, jnp.array([1]), jnp.array([0.0]), 20)
    log_p = jax.nn.log_softmax(np.arange(20.0) / 10.0)
    np.testing.assert_allclose(loss, -0.5 * (log_p[9] + log_p[10]), rtol=1e-6)
    uniform = crr.critic_loss(logits, jnp.array([0]), jnp.array([0.0]), 20)  # action 0: uniform logits
    np.testing.assert_allclose(uniform, np.log(20.0), rtol=1e-6)


def test_policy_loss_is_the_weighted_negative_log_likelihood():
    logits = jnp.log(jnp.array([[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]))
    loss = crr.policy_loss(logits, jnp.array([0, 1, 1]), jnp.array([2.0, 1.0, 0.0]))
    np.testing.assert_allclose(loss, (-2.0 * np.log(0.5) - np.log(0.75) + 0.0) / 3, rtol=1e-6)


def small_networks():
    policy_net = crr.networks.PolicyNetwork(num_actions=3, representation_layers=(16, 8), prediction_layers=(8,))
    critic_net = crr.networks.QNetwork(
        num_actions=3, num_bins=20, representation_layers=(16, 8), dynamics_layers=(8, 16, 8), prediction_layers=(8,)
    )
    return policy_net, critic_net


@pytest.fixture(scope="module")
def small_setup():
    """Small networks, two seeds' training states and a store of synthetic episodes (3 actions, 3-dim observations)."""
    from test_replay import synthetic_episodes

    from common.replay import make_store

    policy_net, critic_net = small_networks()
    args = crr.apply_env_defaults(crr.Args(batch_size=8, warmup_steps=1, target_update_interval=3))
    state = crr.init_train_states(policy_net, critic_net, optimizer_of(crr, args), jnp.zeros((1, 3)), [0, 1])
    return policy_net, critic_net, args, state, make_store(synthetic_episodes([4, 7, 3, 9]))


def test_each_loss_reaches_only_its_own_network_and_the_advantage_is_a_constant(small_setup):
    from common.replay import sample_windows

    policy_net, critic_net, _, state, store = small_setup
    params = jax.tree.map(lambda x: x[0], state.params)
    # A target critic with non-zero Q values (a fresh one predicts Q = 0 everywhere).
    leaves, tree = jax.tree.flatten(params)
    noise = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    target_params = jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, noise)])
    window = sample_windows(store, jax.random.PRNGKey(2), 16, 2, 3)

    loss_fn = crr.make_loss_fn(crr.apply_env_defaults(crr.Args()), policy_net, critic_net)

    @jax.jit
    def gradients(params, target_params, window):
        def two_losses(p):
            _, metrics = loss_fn(p, target_params, window)
            return jnp.stack([metrics["policy_loss"], metrics["critic_loss"]])

        # The policy gradient expected from -mean f(A) log pi(a|s) with f(A) held fixed.
        obs, action = window.observation[:, 0], window.action[:, 0]
        q_target = crr.logits_to_scalar(critic_net.apply(target_params["critic"], obs))
        adv = crr.advantage(q_target, jax.nn.softmax(policy_net.apply(params["policy"], obs)), action, "mean")
        weights = crr.crr_weights(adv, "exp", 1.0, 20.0)
        expected = jax.grad(lambda p: crr.policy_loss(policy_net.apply(p, obs), action, weights))(params["policy"])
        both = jax.jacrev(two_losses)(params)  # leaves [2, ...]: d policy_loss, d critic_loss
        return jax.tree.map(lambda g: g[0], both), jax.tree.map(lambda g: g[1], both), expected, adv

    of_policy_loss, of_critic_loss, expected, adv = gradients(params, target_params, window)

    def size(tree):
        return sum(float(jnp.sum(jnp.abs(x))) for x in jax.tree.leaves(tree))

    assert size(of_policy_loss["critic"]) == 0.0 and size(of_policy_loss["policy"]) > 0.0
    assert size(of_critic_loss["policy"]) == 0.0 and size(of_critic_loss["critic"]) > 0.0
    # No gradient flows through V's pi: the policy gradient is the fixed-weight one.
    assert float(jnp.std(adv)) > 1e-3  # the advantages differ, so the check is not vacuous
    for got, want in zip(jax.tree.leaves(of_policy_loss["policy"]), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6)


def test_target_networks_are_hard_copies_every_interval(small_setup):
    policy_net, critic_net, args, state, store = small_setup
    state = jax.tree.map(jnp.copy, state)  # the update donates its input; keep the fixture's
    optimizer = optimizer_of(crr, args)
    update = crr.make_train_chunk(args, policy_net, critic_net, optimizer, 3, 1)  # one update per call
    online = [jax.device_get(state.params)]
    for step in range(1, 8):
        state, metrics = update(state, store)
        assert bool(np.all(metrics["finite"]))
        online.append(jax.device_get(state.params))
        copied = online[3 * (step // 3)]  # the online network of the last multiple of 3 (the initial one before)
        for t, p in zip(jax.tree.leaves(state.target_params), jax.tree.leaves(copied)):
            np.testing.assert_array_equal(t, p)
    assert int(state.step[0]) == 7
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(online[7]), jax.tree.leaves(online[6])))


@pytest.mark.e2e
def test_crr_trains_two_seeds_on_catch_and_writes_results(catch_data, tmp_path):
    out = run_script(["--data-dir", str(catch_data), "--num-seeds", "2", *SMALL], tmp_path, script="crr.py")
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("catch__crr__0__")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["algo"] == "crr" and results["env_id"] == "catch" and results["status"] == "finished"
    assert results["seeds"] == [0, 1] and results["total_steps"] == 300
    assert len(results["final_returns"]) == 2 and results["final_returns"] == results["eval_history"]["returns"][-1]
    # Catch pays +1 or -1 per episode: the mean of 3 evaluation episodes is -1, -1/3, 1/3 or 1.
    assert all(round(3 * r) in (-3, -1, 1, 3) and abs(3 * r - round(3 * r)) < 1e-9 for r in results["final_returns"])
    expected = [(r + 0.667) / (1.0 + 0.667) for r in results["final_returns"]]
    np.testing.assert_allclose(results["normalized_scores"], expected, rtol=1e-6)
    assert results["eval_history"]["steps"] == [150, 300]
    # Measured over the training dispatches, a part of the wall-clock time: at least the overall rate.
    assert results["updates_per_s"] >= results["total_steps"] / results["wall_clock_s"]
    assert "final mean return" in out.stdout


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--env-id", "pong"], "unknown --env-id 'pong'; valid ids: catch, cartpole, mountain_car"),
        (["--beta", "0"], "--beta must be positive, got 0.0"),
    ],
)
def test_crr_bad_input_gives_a_one_line_error(tmp_path, flags, message):
    line = one_line_error(run_script(flags, tmp_path, script="crr.py"))
    assert message in line
