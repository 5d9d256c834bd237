"""CQL's TD target and penalty on hand-made input, the penalty's gradient, the assembled loss, and cql.py end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scripts import SMALL, one_line_error, run_script

import cql
from common.networks import QNetwork, logits_to_scalar, scalar_to_probs
from common.replay import Window


def random_params(network, obs_dim, seed, zero_head=False):
    """Parameters of `network` drawn with numpy (no compilation); the output layer zero if `zero_head`, as after init."""
    shapes = jax.eval_shape(network.init, jax.random.PRNGKey(0), jnp.zeros((1, obs_dim)))
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda x: (0.5 * rng.standard_normal(x.shape)).astype(np.float32), shapes)
    if zero_head:
        params["params"]["Dense_0"] = jax.tree.map(np.zeros_like, params["params"]["Dense_0"])
    return params


def test_cql_penalty_is_mean_logsumexp_minus_data_q_by_hand():
    q = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    action = jnp.array([0, 2])
    # Row 0: logsumexp(1, 2, 3) = 3 + log(1 + e^-1 + e^-2) = 3 + log(1.503214) = 3.407606; minus Q(a=0) = 1 -> 2.407606.
    # Row 1: logsumexp(0, 0, 0) = log 3 = 1.098612; minus Q(a=2) = 0 -> 1.098612. Mean: 1.753109.
    np.testing.assert_allclose(cql.cql_penalty(q, action), 1.753109, rtol=1e-6)
    # The data taking the best action of row 0 gives the smallest penalty there: 3.407606 - 3.
    np.testing.assert_allclose(cql.cql_penalty(q[:1], jnp.array([2])), 0.407606, rtol=1e-5)


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(np.float32, (5, 4), elements=st.floats(-50, 50, width=32)), st.lists(st.integers(0, 3), min_size=5, max_size=5)
)
def test_cql_penalty_is_never_negative(q, action):
    # logsumexp_a Q(s, a) >= max_a Q(s, a) >= Q(s, a_data), with equality only in the limit.
    assert float(cql.cql_penalty(jnp.asarray(q), jnp.asarray(action))) >= 0.0


def test_td_target_by_hand_with_a_terminal_transition_and_double_q():
    g = 0.5
    reward = jnp.array([1.0, 0.5, -1.0])
    discount = jnp.array([1.0, 0.0, 1.0])  # the second transition ended the episode: no bootstrap
    target_next_q = jnp.array([[0.2, 0.8], [5.0, 3.0], [-2.0, -0.5]])
    y = cql.td_target(reward[:, None], discount[:, None], target_next_q, g)  # one step: [B, n = 1]
    # 1 + 0.5 * max(0.2, 0.8) = 1.4;  0.5 + 0 = 0.5;  -1 + 0.5 * max(-2, -0.5) = -1.25
    np.testing.assert_allclose(y, [1.4, 0.5, -1.25], rtol=1e-6)
    # Double DQN: the online network picks a* = 0, 1, 0; the target network values it.
    online_next_q = jnp.array([[1.0, 0.0], [0.0, 1.0], [3.0, 2.0]])
    y_double = cql.td_target(reward[:, None], discount[:, None], target_next_q, g, online_next_q)
    # 1 + 0.5 * Q'(s', 0) = 1.1;  0.5 (terminal);  -1 + 0.5 * Q'(s', 0) = -2
    np.testing.assert_allclose(y_double, [1.1, 0.5, -2.0], rtol=1e-6)


def test_penalty_gradient_step_raises_data_q_above_the_mean_of_other_actions():
    network = QNetwork(
        num_actions=3, num_bins=20, representation_layers=(16, 8), dynamics_layers=(8, 16, 8), prediction_layers=(8,)
    )
    observation = jnp.asarray(np.random.default_rng(1).standard_normal((4, 5)), jnp.float32)
    action = jnp.array([0, 2, 1, 2])

    def penalty(p):
        return cql.cql_penalty(logits_to_scalar(network.apply(p, observation)), action)

    def gap(p):  # Q(s, a_data) - mean of Q(s, a) over the other actions, per state
        q = logits_to_scalar(network.apply(p, observation))
        q_data = jnp.take_along_axis(q, action[:, None], axis=-1)[:, 0]
        return q_data - (q.sum(-1) - q_data) / 2

    @jax.jit
    def before_and_after(params):
        grads = jax.grad(penalty)(params)
        stepped = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)  # one SGD step on the penalty alone
        return gap(params), penalty(params), gap(stepped), penalty(stepped)

    gap0, penalty0, gap1, penalty1 = before_and_after(random_params(network, 5, seed=0, zero_head=True))
    # The zero output layer gives Q = 0 everywhere: no gap, penalty log 3.
    np.testing.assert_allclose(gap0, 0.0, atol=1e-6)
    np.testing.assert_allclose(penalty0, np.log(3.0), rtol=1e-6)
    # At equal Q the penalty changes by -(A - 1) / A times the batch-mean gap change, so a small step
    # must widen the mean gap (single states may not: they share the parameters).
    assert float(jnp.mean(gap1)) > 1e-4
    assert float(penalty1) < np.log(3.0)


def test_loss_is_categorical_td_loss_plus_alpha_times_penalty_on_a_hand_window():
    network = QNetwork(num_actions=3, num_bins=20, representation_layers=(8,), dynamics_layers=(8,), prediction_layers=(8,))
    obs = jnp.asarray(
        np.random.default_rng(2).standard_normal((2, 2, 4)), jnp.float32
    )  # [B, L = 2, D]: s = obs[:, 0], s' = obs[:, 1]
    window = Window(
        observation=obs,
        action=jnp.array([[2, 0], [1, 1]]),
        reward=jnp.array([[1.0, 0.0], [-1.0, 0.0]]),
        discount=jnp.array([[1.0, 1.0], [0.0, 1.0]]),  # the second transition is terminal
        has_action=jnp.array([[True, True], [True, False]]),
        absorbing=jnp.array([[False, False], [False, True]]),
    )
    params, target_params = random_params(network, 4, seed=3), random_params(network, 4, seed=4)

    @jax.jit
    def networks_and_losses(params, target_params):
        q_logits = network.apply(params, obs[:, 0])
        nets = (
            q_logits,
            logits_to_scalar(q_logits),
            logits_to_scalar(network.apply(target_params, obs[:, 1])),
            logits_to_scalar(network.apply(params, obs[:, 1])),
        )
        losses = {
            double_q: cql.make_loss_fn(
                cql.apply_env_defaults(cql.Args(alpha=0.5, discount=0.9, double_q=double_q, n_step=1)), network
            )(params, target_params, window)
            for double_q in (False, True)
        }
        return nets, losses

    (q_logits, q, next_q_target, next_q_online), losses = jax.device_get(networks_and_losses(params, target_params))
    g = 0.9
    for double_q in (False, True):
        loss, metrics = losses[double_q]
        # The same loss written out step by step.
        select = next_q_online if double_q else next_q_target
        y = np.array([1.0 + g * next_q_target[0, select[0].argmax()], -1.0])  # no bootstrap after the terminal step
        log_probs = np.asarray(jax.nn.log_softmax(q_logits[[0, 1], [2, 1]]))
        td = -np.mean(np.sum(np.asarray(scalar_to_probs(jnp.asarray(y), 20)) * log_probs, axis=-1))
        # The penalty on h-space values: the expected bin value (bins -9.5..9.5), not decoded by h^-1.
        probs = np.exp(q_logits - q_logits.max(-1, keepdims=True))
        z = (probs / probs.sum(-1, keepdims=True) * (np.arange(20) - 9.5)).sum(-1)  # [B, A]
        penalty = np.mean(np.log(np.exp(z).sum(-1)) - z[[0, 1], [2, 1]])
        np.testing.assert_allclose(metrics["td_target"], y.mean(), rtol=1e-5)
        np.testing.assert_allclose(metrics["td_loss"], td, rtol=1e-5)
        np.testing.assert_allclose(metrics["cql_penalty"], penalty, rtol=1e-5)
        np.testing.assert_allclose(loss, td + 0.5 * penalty, rtol=1e-5)
    # The two target rules pick different next actions here, so the double-Q branch is exercised.
    assert next_q_online[0].argmax() != next_q_target[0].argmax()


@pytest.mark.e2e
def test_cql_trains_on_catch_and_writes_results(catch_data, tmp_path):
    out = run_script(["--data-dir", str(catch_data), "--num-seeds", "2", *SMALL], tmp_path, script="cql.py")
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("catch__cql__0__")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["algo"] == "cql" and results["env_id"] == "catch" and results["status"] == "finished"
    assert results["seeds"] == [0, 1] and results["total_steps"] == 300
    assert len(results["final_returns"]) == 2 and results["final_returns"] == results["eval_history"]["returns"][-1]
    # Catch pays +1 or -1 per episode: the mean of 3 evaluation episodes is -1, -1/3, 1/3 or 1.
    assert all(round(3 * r) in (-3, -1, 1, 3) and abs(3 * r - round(3 * r)) < 1e-9 for r in results["final_returns"])
    expected = [(r + 0.667) / (1.0 + 0.667) for r in results["final_returns"]]
    np.testing.assert_allclose(results["normalized_scores"], expected, rtol=1e-6)
    assert results["eval_history"]["steps"] == [150, 300]
    assert results["args"]["alpha"] == 0.01 and results["args"]["n_step"] == 10  # the BSuite defaults
    assert results["args"]["target_update_interval"] == 200
    assert "final mean return" in out.stdout


def test_negative_alpha_is_a_one_line_error(tmp_path):
    line = one_line_error(run_script(["--alpha", "-1"], tmp_path, script="cql.py"))
    assert "--alpha must be 0 or positive, got -1.0" in line


def test_penalty_in_h_space_has_a_gradient_comparable_to_the_td_loss_unlike_raw_returns():
    # A hand-made categorical critic with cartpole-scale values: per action a Gaussian bump of logits over the 20
    # h-space bins, centred on h(60) (action 0) and h(40) (action 1); the TD target is 70 for the data action.
    from common.networks import h, logits_to_transformed, support

    bins = support(20)
    target = jnp.array([70.0])
    for width in (3.0, 1.0, 0.5):  # a diffuse to a nearly converged critic
        logits = (-0.5 * ((bins[None] - h(jnp.array([60.0, 40.0]))[:, None]) / width) ** 2)[None]  # [B=1, A=2, 20]
        for data_action in (0, 1):
            action = jnp.array([data_action])

            def td(lg, action=action):
                data_logits = jnp.take_along_axis(lg, action[:, None, None], axis=1)[:, 0]
                return jnp.mean(cql.categorical_cross_entropy(scalar_to_probs(target, 20), data_logits))

            def norm(f, logits=logits):
                return float(jnp.linalg.norm(jax.grad(f)(logits)))

            td_norm = norm(td)
            in_h_space = norm(lambda lg, action=action: cql.cql_penalty(logits_to_transformed(lg), action)) / td_norm
            in_returns = norm(lambda lg, action=action: cql.cql_penalty(logits_to_scalar(lg), action)) / td_norm
            # In h-space the penalty's gradient is within an order of magnitude of the TD loss's, whichever action
            # the data took.
            assert 0.05 < in_h_space < 2.0, (width, data_action, in_h_space)
            if data_action == 1:
                # In return units the soft maximum over Q values 20 apart is a hard one: when the data took the
                # worse action the penalty's gradient is 4-15x the TD loss's ...
                assert in_returns > 3.0, (width, in_returns)
            else:
                # ... and when it took the better one the penalty has no gradient at all.
                assert in_returns < 1e-3, (width, in_returns)


def test_penalty_space_flag_selects_the_values_the_penalty_acts_on():
    network = QNetwork(
        num_actions=3, num_bins=20, representation_layers=(8,), dynamics_layers=(8, 8, 8), prediction_layers=(8,)
    )
    params = random_params(network, 4, seed=3)
    rng = np.random.default_rng(0)
    window = Window(
        observation=jnp.asarray(rng.standard_normal((6, 2, 4)), jnp.float32),
        action=jnp.asarray(rng.integers(0, 3, (6, 2))),
        reward=jnp.asarray(rng.standard_normal((6, 2)), jnp.float32),
        discount=jnp.ones((6, 2)),
        has_action=jnp.ones((6, 2), bool),
        absorbing=jnp.zeros((6, 2), bool),
    )
    from common.networks import logits_to_transformed

    logits = network.apply(params, window.observation[:, 0])
    action = window.action[:, 0]
    for space, values in (("transformed", logits_to_transformed(logits)), ("raw", logits_to_scalar(logits))):
        args = cql.apply_env_defaults(cql.Args(penalty_space=space, n_step=1))
        _, metrics = cql.make_loss_fn(args, network)(params, params, window)
        np.testing.assert_allclose(metrics["cql_penalty"], cql.cql_penalty(values, action), rtol=1e-5)
