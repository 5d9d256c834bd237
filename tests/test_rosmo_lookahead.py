"""ROSMO's exact one-step look-ahead evaluates each action once (no duplicate column for the data action).

The exact policy target (Eq. 6) needs adv_g(s, a) for all A actions, and Eq. 11's model advantage
needs it for the data action, which is one of them: make_loss_fn reads it from the all-actions
result. The reference below is the earlier computation, which ran the data action through the
dynamics as an extra (A+1)-th column; on a hand-made window with perturbed networks the loss,
every metric and the gradient must be unchanged. The sampled target (num_samples > 0) draws N
actions that need not include the data action, so there it is still appended as column N + 1.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rosmo
from common.networks import logits_to_scalar, scalar_to_probs
from common.replay import Window

A, BINS, K, N_TD, D = 4, 20, 2, 2, 3  # actions, value bins, unroll steps K, TD steps n, observation size
L, B = K + N_TD + 1, 3  # window length, rows
NETWORK = rosmo.networks.MuZeroNetwork(
    num_actions=A, num_bins=BINS, representation_layers=(8, 6), dynamics_layers=(8, 6), prediction_layers=(8,)
)


def make_args(**kw):
    return rosmo.Args(unroll_steps=K, td_steps=N_TD, num_bins=BINS, discount=0.9, behavior_coef=0.4, **kw)


def perturbed_params(seed):
    """Initial parameters plus N(0, 0.1^2) noise, so the zero-initialised heads give distinct advantages."""
    params = NETWORK.init(jax.random.PRNGKey(seed), jnp.zeros((1, D)), jnp.zeros((1,), jnp.int32))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: p + jnp.asarray(rng.normal(0.0, 0.1, p.shape), p.dtype), params)


def hand_window():
    """Row 0 stays inside its episode; row 1 terminates on the step 1 -> 2 transition; row 2 is
    truncated after s_1. Data actions cover every action, so a wrong column read shows."""
    rng = np.random.default_rng(3)
    obs = rng.normal(size=(B, L, D)).astype(np.float32)  # [B, L, D]
    obs[1, 3:] = obs[1, 2]
    obs[2, 2:] = obs[2, 1]
    return Window(
        observation=jnp.asarray(obs),
        action=jnp.array([[0, 3, 1, 2, 0], [2, 1, 3, 0, 1], [3, 0, 2, 1, 2]], jnp.int32),
        reward=jnp.array([[0.5, -1.0, 2.0, 0.3, -0.7], [1.0, -0.5, 0, 0, 0], [0.8, 0, 0, 0, 0]], jnp.float32),
        discount=jnp.array([[1, 0.5, 1, 1, 1], [1, 0, 1, 1, 1], [1, 1, 1, 1, 1]], jnp.float32),
        has_action=jnp.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], bool),
        absorbing=jnp.array([[0, 0, 0, 0, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 1]], bool),
    )


def appended_column_loss(args, params, target_params, window):
    """The exact-mode loss as computed before: the data action as an extra column of the look-ahead.

    Returns (total loss, metrics, the data action's model advantage [B, K+1]).
    """
    net, gamma = NETWORK, args.discount
    target_state = net.apply(target_params, window.observation, method=net.represent)
    prior_logits, target_value_logits, _ = net.apply(target_params, target_state, method=net.predict)
    target_value = logits_to_scalar(target_value_logits)
    states, values, logits = target_state[:, : K + 1], target_value[:, : K + 1], prior_logits[:, : K + 1]
    candidates = jnp.broadcast_to(jnp.arange(A), (B, K + 1, A))
    data_action = window.action[:, : K + 1]
    columns = jnp.concatenate([candidates, data_action[..., None]], -1)  # [B, K+1, A+1]: the data action twice
    adv_all = rosmo.one_step_advantage(net, target_params, states, values, columns, gamma)
    adv, adv_data = adv_all[..., :-1], adv_all[..., -1]
    policy_target = rosmo.exact_policy_target(logits, adv)
    policy_target = jnp.where(window.absorbing[:, : K + 1, None], 1.0 / A, policy_target)
    value_target = rosmo.n_step_value_target(
        window.reward, window.discount, window.has_action, window.absorbing, target_value, gamma, N_TD, K + 1
    )
    policy_target, value_target, adv_data = jax.lax.stop_gradient((policy_target, value_target, adv_data))

    state = net.apply(params, window.observation[:, 0], method=net.represent)
    unrolled = [state]
    for k in range(K):
        state = net.apply(params, rosmo.scale_gradient(state, 0.5), window.action[:, k], method=net.dynamics)
        unrolled.append(state)
    policy_logits, value_logits, reward_logits = net.apply(params, jnp.stack(unrolled, axis=1), method=net.predict)
    ce = rosmo.categorical_cross_entropy
    reward_loss = jnp.mean(ce(scalar_to_probs(window.reward[:, :K], BINS), reward_logits[:, 1:]))
    value_loss = jnp.mean(ce(scalar_to_probs(value_target, BINS), value_logits))
    policy_loss = jnp.mean(ce(policy_target, policy_logits))
    has_action = window.has_action[:, : K + 1]
    reg_loss = rosmo.behavior_loss(policy_logits, data_action, adv_data, has_action)
    if args.behavior_only:
        total = reward_loss + args.value_coef * value_loss + args.policy_coef * reg_loss
    else:
        total = reward_loss + args.value_coef * value_loss + args.policy_coef * policy_loss + args.behavior_coef * reg_loss
    probs = jax.nn.softmax(policy_logits)
    metrics = {
        "loss": total,
        "reward_loss": reward_loss,
        "value_loss": value_loss,
        "policy_loss": policy_loss,
        "behavior_loss": reg_loss,
        "value_target": jnp.mean(value_target),
        "advantage": jnp.mean(adv),
        "behavior_filter_rate": jnp.sum((adv_data > 0) * has_action) / jnp.maximum(1, jnp.sum(has_action)),
        "policy_entropy": jnp.mean(-jnp.sum(probs * jnp.log(probs + 1e-12), -1)),
        "accuracy": jnp.mean(jnp.argmax(policy_logits[:, 0], -1) == data_action[:, 0]),
    }
    return total, (metrics, adv_data)


@pytest.mark.parametrize("behavior_only", [False, True])
def test_exact_look_ahead_without_the_data_column_keeps_loss_metrics_and_gradient(behavior_only):
    args = make_args(behavior_only=behavior_only)
    params, target_params, window = perturbed_params(0), perturbed_params(1), hand_window()
    key = jax.random.PRNGKey(0)  # unused by the exact target

    # Both jitted: one compile each instead of op-by-op dispatch of every operation.
    (loss, metrics), grads = jax.jit(jax.value_and_grad(rosmo.make_loss_fn(args, NETWORK, A), has_aux=True))(
        params, target_params, window, key
    )
    reference = jax.value_and_grad(functools.partial(appended_column_loss, args), argnums=0, has_aux=True)
    (ref_loss, (ref_metrics, adv_data)), ref_grads = jax.jit(reference)(params, target_params, window)

    # The comparison says something: the data action's advantage varies in sign over real steps.
    real = np.asarray(window.has_action[:, : K + 1])
    assert np.asarray(adv_data)[real].min() < 0 < np.asarray(adv_data)[real].max()
    assert 0 < float(metrics["behavior_filter_rate"]) < 1
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6, atol=1e-7)
    assert metrics.keys() == ref_metrics.keys()
    for name in metrics:
        np.testing.assert_allclose(metrics[name], ref_metrics[name], rtol=1e-6, atol=1e-7, err_msg=name)
    for g, ref_g in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(g, ref_g, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("num_samples, columns", [(0, A), (3, 3 + 1)])
def test_look_ahead_runs_the_dynamics_on_each_action_once(monkeypatch, num_samples, columns):
    """Exact mode: A columns (the data action is one of them); sampled mode: N samples + the data action."""
    widths = []
    advantage = rosmo.one_step_advantage

    def counting(network, params, state, value, actions, gamma):
        widths.append(actions.shape[-1])
        return advantage(network, params, state, value, actions, gamma)

    monkeypatch.setattr(rosmo, "one_step_advantage", counting)
    loss_fn = rosmo.make_loss_fn(make_args(num_samples=num_samples), NETWORK, A)
    jax.eval_shape(loss_fn, perturbed_params(0), perturbed_params(1), hand_window(), jax.random.PRNGKey(0))
    assert widths == [columns]
