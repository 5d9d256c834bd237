"""MuZero Unplugged (mzu.py) and MZU-Q (mzu_q.py): search targets on a tiny network, end-to-end runs, one-line errors."""

import json

import jax
import jax.numpy as jnp
import mctx
import numpy as np
import pytest

import mzu
import mzu_q
from common.replay import Window
from common.value_transforms import logits_to_scalar
from scripts import SMALL, one_line_error, run_script

NUM_ACTIONS, OBS_DIM = 3, 4


@pytest.fixture(scope="module")
def tiny():
    """A small MuZeroNetwork whose zero-initialised heads are perturbed, so priors, values and rewards differ."""
    network = mzu.MuZeroNetwork(num_actions=NUM_ACTIONS, num_bins=20, representation_layers=(16, 8),
                                dynamics_layers=(8, 16, 8), prediction_layers=(8,))

    @jax.jit
    def init(key):
        init_key, noise_key = jax.random.split(key)
        params = network.init(init_key, jnp.zeros((1, OBS_DIM)), jnp.zeros((1,), jnp.int32))
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(noise_key, len(leaves))
        return jax.tree.unflatten(treedef, [x + 0.5 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])

    return network, init(jax.random.PRNGKey(0))


def direct_muzero_policy(network, params, observation, key, args, dirichlet_fraction):
    """mctx.muzero_policy called by hand on observations [N, D]: the reference for mzu.mcts."""
    state = network.apply(params, observation, method=network.represent)
    prior_logits, value_logits, _ = network.apply(params, state, method=network.predict)
    root = mctx.RootFnOutput(prior_logits=prior_logits, value=logits_to_scalar(value_logits), embedding=state)

    def recurrent_fn(params, rng, action, embedding):
        next_state = network.apply(params, embedding, action, method=network.dynamics)
        logits, v_logits, r_logits = network.apply(params, next_state, method=network.predict)
        value = logits_to_scalar(v_logits)
        out = mctx.RecurrentFnOutput(reward=logits_to_scalar(r_logits), discount=jnp.full_like(value, args.discount),
                                     prior_logits=logits, value=value)
        return out, next_state

    return mctx.muzero_policy(params, key, root, recurrent_fn, args.num_simulations, dirichlet_fraction=dirichlet_fraction,
                              dirichlet_alpha=0.3, pb_c_init=1.25, pb_c_base=19652)


def test_mzu_policy_target_is_mctx_action_weights(tiny):
    network, params = tiny
    args = mzu.apply_env_defaults(mzu.Args(num_simulations=7))
    observation = jax.random.normal(jax.random.PRNGKey(1), (2, 5, OBS_DIM))  # [B, L, D]
    key = jax.random.PRNGKey(42)

    @jax.jit
    def both(params, observation, key):
        return (mzu.mcts(args, network, params, observation, 2, key, args.dirichlet_fraction),
                direct_muzero_policy(network, params, observation.reshape(10, OBS_DIM), key, args, 0.25))

    search, reference = both(params, observation, key)

    assert search.action_weights.shape == (2, 5, NUM_ACTIONS) and search.root_value.shape == (2, 5)
    np.testing.assert_allclose(search.action_weights, reference.action_weights.reshape(2, 5, NUM_ACTIONS), atol=1e-6)
    np.testing.assert_allclose(search.root_value, reference.search_tree.node_values[:, 0].reshape(2, 5), rtol=1e-5)
    summary = reference.search_tree.summary()
    np.testing.assert_allclose(search.qvalues, summary.qvalues.reshape(2, 5, NUM_ACTIONS), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(search.visit_counts, summary.visit_counts.reshape(2, 5, NUM_ACTIONS))
    # A distribution over actions made of visit counts: sums to 1, in steps of 1 / num_simulations.
    np.testing.assert_allclose(search.action_weights.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(search.action_weights * 7, np.round(search.action_weights * 7), atol=1e-5)
    np.testing.assert_allclose(search.visit_counts.sum(-1), 7.0)
    # The root prior is the network's, before the Dirichlet noise mixed into the search.
    state = network.apply(params, observation, method=network.represent)
    np.testing.assert_allclose(search.prior_logits, network.apply(params, state, method=network.predict)[0], rtol=1e-5)


def online_policy_logits(network, params, window):
    """f(s^k) of the online unroll for K = 1: s^0 = h(o_t), s^1 = g(s^0, a_t); [B, 2, A]."""
    state = network.apply(params, window.observation[:, 0], method=network.represent)
    next_state = network.apply(params, state, window.action[:, 0], method=network.dynamics)
    return network.apply(params, jnp.stack([state, next_state], axis=1), method=network.predict)[0]


def fake_mcts(search, calls):
    """Stands in for a script's `mcts`: records its inputs and returns the made-up root statistics `search`."""

    def mcts(args, network, params, observation, batch_ndim, key, dirichlet_fraction):
        calls.append({"params": params, "observation": observation, "dirichlet_fraction": dirichlet_fraction})
        return search

    return mcts


def made_up_search(root_value, **fields):
    """Root statistics [1, L, A] for a window of L = len(root_value) steps; unspecified fields are zeros."""
    zeros = jnp.zeros((1, len(root_value), NUM_ACTIONS))
    return mzu.Search(**{name: jnp.asarray(fields.get(name, zeros), jnp.float32) for name in
                         ("prior_logits", "action_weights", "visit_counts", "qvalues")}, root_value=jnp.array([root_value]))


def test_value_target_bootstraps_from_the_search_root_value(tiny, monkeypatch):
    network, params = tiny
    g = 0.5
    # One window, K = 1, n = 2 (L = 4): three transitions, then the episode is truncated at step 3.
    window = Window(
        observation=jax.random.normal(jax.random.PRNGKey(3), (1, 4, OBS_DIM)),
        action=jnp.array([[0, 2, 1, 0]]),
        reward=jnp.array([[1.0, 2.0, 3.0, 0.0]]),
        discount=jnp.ones((1, 4)),
        has_action=jnp.array([[True, True, True, False]]),
        absorbing=jnp.zeros((1, 4), bool),
    )
    calls = []
    monkeypatch.setattr(mzu, "mcts", fake_mcts(made_up_search([5.0, 6.0, 7.0, 8.0]), calls))  # search value at s_0..s_3
    target_params = jax.tree.map(lambda x: x + 1.0, params)
    args = mzu.apply_env_defaults(mzu.Args(unroll_steps=1, td_steps=2, discount=g))
    _, metrics = mzu.make_loss_fn(args, network, NUM_ACTIONS)(params, target_params, window, jax.random.PRNGKey(0))
    z = [1 + g * 2 + g * g * 7, 2 + g * 3 + g * g * 8]  # 3.75 and 5.5: bootstrapped from the root values of s_2, s_3
    np.testing.assert_allclose(metrics["value_target"], np.mean(z), rtol=1e-6)
    np.testing.assert_allclose(metrics["root_value"], 6.5, rtol=1e-6)
    # One search over the window's real observations, with the target network and the learner's root noise.
    (call,) = calls
    assert call["params"] is target_params and call["dirichlet_fraction"] == 0.25
    assert call["observation"] is window.observation


def terminal_window():
    """K = 1, n = 2 (L = 4): one transition that terminates (discount 0); steps 1-3 are absorbing."""
    return Window(
        observation=jax.random.normal(jax.random.PRNGKey(5), (1, 4, OBS_DIM)),
        action=jnp.array([[1, 0, 2, 0]]),
        reward=jnp.array([[1.0, 0.0, 0.0, 0.0]]),
        discount=jnp.array([[0.0, 1.0, 1.0, 1.0]]),
        has_action=jnp.array([[True, False, False, False]]),
        absorbing=jnp.array([[False, True, True, True]]),
    )


def test_mzu_policy_target_is_the_visit_distribution_and_uniform_when_absorbing(tiny, monkeypatch):
    network, params = tiny
    window = terminal_window()
    weights = [[[0.25, 0.5, 0.25], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]
    monkeypatch.setattr(mzu, "mcts", fake_mcts(made_up_search([0.3, 0.2, 0.1, 0.0], action_weights=weights), []))
    args = mzu.apply_env_defaults(mzu.Args(unroll_steps=1, td_steps=2))
    _, metrics = mzu.make_loss_fn(args, network, NUM_ACTIONS)(params, params, window, jax.random.PRNGKey(0))
    target = np.array([[[0.25, 0.5, 0.25], [1 / 3, 1 / 3, 1 / 3]]])  # s_1 is terminal: uniform
    log_pi = jax.nn.log_softmax(online_policy_logits(network, params, window))
    np.testing.assert_allclose(metrics["policy_loss"], np.mean(-np.sum(target * log_pi, -1)), rtol=1e-5)
    np.testing.assert_allclose(metrics["value_target"], np.mean([1.0, 0.0]), rtol=1e-6)  # terminal: no bootstrap


def test_mzu_q_policy_target_is_prior_times_exp_q_over_tau_with_unvisited_actions_at_the_root_value():
    prior = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
    qvalues = np.array([[0.4, 0.0, -0.1], [0.2, 0.5, 0.1]])  # mctx reports Q = 0 for the unvisited action 1 of row 0
    visits = np.array([[3.0, 0.0, 1.0], [1.0, 2.0, 1.0]])
    root_value = np.array([0.25, 0.3])
    tau = 0.1
    completed = np.array([[0.4, 0.25, -0.1], [0.2, 0.5, 0.1]])
    unnormalised = prior * np.exp(completed / tau)
    expected = unnormalised / unnormalised.sum(-1, keepdims=True)
    target = mzu_q.mzu_q_policy_target(jnp.log(jnp.asarray(prior)) - 3.0, jnp.asarray(qvalues), jnp.asarray(visits),
                                       jnp.asarray(root_value), tau)
    np.testing.assert_allclose(target, expected, rtol=1e-5)
    # Row 0 by hand: 0.5 e^4 = 27.29908, 0.3 e^2.5 = 3.65475, 0.2 e^-1 = 0.07358; Z = 31.02740.
    np.testing.assert_allclose(target[0], [0.879838, 0.117791, 0.002371], atol=2e-6)
    # Left at mctx's Q = 0, the unvisited action would get less mass than with its completed value.
    raw = prior[0] * np.exp(qvalues[0] / tau)
    assert float(target[0, 1]) > raw[1] / raw.sum()


def test_mzu_q_loss_uses_the_noise_free_prior_and_completed_root_q(tiny, monkeypatch):
    network, params = tiny
    window = terminal_window()
    prior_logits = np.log([[[0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [1 / 3, 1 / 3, 1 / 3], [1 / 3, 1 / 3, 1 / 3]]])
    qvalues = [[[0.4, 0.0, -0.1], [0.1, 0.2, 0.3], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]
    visits = [[[3.0, 0.0, 1.0], [1.0, 1.0, 2.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]
    search = made_up_search([0.25, 0.2, 0.0, 0.0], prior_logits=prior_logits, qvalues=qvalues, visit_counts=visits)
    monkeypatch.setattr(mzu_q, "mcts", fake_mcts(search, []))
    args = mzu_q.apply_env_defaults(mzu_q.Args(unroll_steps=1, td_steps=2))
    _, metrics = mzu_q.make_loss_fn(args, network, NUM_ACTIONS)(params, params, window, jax.random.PRNGKey(0))
    first = np.array([0.5, 0.3, 0.2]) * np.exp(np.array([0.4, 0.25, -0.1]) / 0.1)  # action 1 unvisited: Q = root value
    target = np.array([[first / first.sum(), [1 / 3, 1 / 3, 1 / 3]]])  # s_1 is terminal: uniform
    log_pi = jax.nn.log_softmax(online_policy_logits(network, params, window))
    np.testing.assert_allclose(metrics["policy_loss"], np.mean(-np.sum(target * log_pi, -1)), rtol=1e-5)


@pytest.mark.parametrize("script", ["mzu", "mzu_q"])
def test_script_trains_and_evaluates_two_seeds_end_to_end(script, catch_data, tmp_path):
    out = run_script(["--data-dir", str(catch_data), "--num-seeds", "2", *SMALL], tmp_path, script=f"{script}.py")
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith(f"catch__{script}__0__")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["algo"] == script and results["status"] == "finished"
    assert results["seeds"] == [0, 1] and results["total_steps"] == 300
    assert len(results["final_returns"]) == 2 and all(-1.0 <= r <= 1.0 for r in results["final_returns"])
    assert results["eval_history"]["steps"] == [150, 300]
    assert results["updates_per_s"] > 0 and "final mean return" in out.stdout


@pytest.mark.parametrize("script, flags, message", [
    ("mzu.py", ["--num-simulations", "0"], "--num-simulations must be at least 1, got 0"),
    ("mzu_q.py", ["--temperature", "0"], "--temperature must be positive, got 0.0"),
])
def test_bad_search_flags_give_a_one_line_error(tmp_path, script, flags, message):
    line = one_line_error(run_script(flags, tmp_path, script=script))
    assert message in line
