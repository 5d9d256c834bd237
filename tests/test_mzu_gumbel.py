"""MuZero Unplugged with Gumbel MuZero's search (mzu.py --search gumbel; Danihelka et al. 2022, their equation
numbers): the improved policy pi' = softmax(logits + sigma(completedQ)) (Eq. 8, 10, 11, 33) worked out by hand on
root statistics and on a model whose search is known, the assembled loss against a hand computation, the acting
rule (the search's own action; --eval-greedy without Gumbel noise), the flags and an end-to-end run.

The hand computations write the formulas out in numpy; they do not call mctx's Q-transforms. mctx is called only
as the reference search whose root statistics the hand targets are computed from.
"""

import dataclasses
import functools
import inspect
import json
import math

import jax
import jax.numpy as jnp
import mctx
import numpy as np
import pytest
from scripts import SMALL, run_script
from test_mzu import R, V, one_hot_model
from test_mzu_loss import GAMMA as LOSS_GAMMA
from test_mzu_loss import (
    NUM_ACTIONS,
    OBS_DIM,
    POLICY_COEF,
    TD,
    VALUE_COEF,
    K,
    compile_once,
    cross_entropy,
    decode,
    draw_params,
    hand_value_target,
    hand_window,
    online_unroll,
    softmax,
    target_distribution,
    tiny_network,
)

import mzu
from common.errors import UsageError


def hand_improved_policy(prior_logits, qvalues, visits, raw_value, value_scale, maxvisit_init):
    """pi' in numpy, float64, for root statistics [..., A] (raw_value [...]):

    v_mix = (v_hat + sum_b N(b) * sum_{visited} pi(a) q(a) / sum_{visited} pi(b)) / (1 + sum_b N(b))   (Eq. 33)
    completedQ(a) = q(a) if N(a) > 0 else v_mix                                                        (Eq. 10)
    sigma(q) = (c_visit + max_b N(b)) c_scale (q - min q) / (max q - min q)                          (Eq. 8)
    pi' = softmax(logits + sigma(completedQ))                                                          (Eq. 11)
    """
    prior_logits, qvalues, visits = (np.asarray(x, np.float64) for x in (prior_logits, qvalues, visits))
    prior, visited = softmax(prior_logits), visits > 0
    visited_prior = np.where(visited, prior, 0.0).sum(-1)
    mean_q = np.where(visited, prior * qvalues, 0.0).sum(-1) / np.where(visited_prior > 0, visited_prior, 1.0)
    v_mix = (np.asarray(raw_value, np.float64) + visits.sum(-1) * mean_q) / (1.0 + visits.sum(-1))
    completed = np.where(visited, qvalues, v_mix[..., None])
    spread = completed.max(-1, keepdims=True) - completed.min(-1, keepdims=True)
    q_hat = np.where(spread > 0, (completed - completed.min(-1, keepdims=True)) / np.where(spread > 0, spread, 1.0), 0.0)
    return softmax(prior_logits + (maxvisit_init + visits.max(-1, keepdims=True)) * value_scale * q_hat)


# ---------------------------------------------------------------------------------------------
# 1. The improved policy of given root statistics.
# ---------------------------------------------------------------------------------------------


def test_improved_policy_is_softmax_of_logits_plus_sigma_of_completed_q_worked_by_hand():
    """Row 0 by hand: visits (3, 0, 1), prior (0.5, 0.3, 0.2), q (0.4, -, -0.1), v_hat -0.05, c_visit 50, c_scale 0.1.
    The visited actions' prior-weighted mean Q is (0.5 * 0.4 - 0.2 * 0.1) / 0.7 = 0.257143, so v_mix =
    (-0.05 + 4 * 0.257143) / 5 = 0.195714 completes action 1. Rescaled, completedQ is (1, 0.591429, 0); sigma multiplies
    it by (50 + 3) * 0.1 = 5.3; pi' is proportional to (0.5 e^5.3, 0.3 e^3.134571, 0.2 e^0) = (100.168, 6.894, 0.2).
    Row 1: every action visited (no completion). Row 2: nothing visited yet, all Q-values complete to v_hat, sigma
    is 0 and pi' is the prior."""
    prior = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.2, 0.5, 0.3]])
    qvalues = np.array([[0.4, 0.0, -0.1], [0.2, 0.5, 0.1], [0.0, 0.0, 0.0]])  # mctx reports Q = 0 where unvisited
    visits = np.array([[3.0, 0.0, 1.0], [1.0, 2.0, 1.0], [0.0, 0.0, 0.0]])
    raw_value = np.array([-0.05, 0.3, -0.7])
    got = mzu.improved_policy(
        jnp.log(jnp.asarray(prior)) + 1.0,  # logits: any shift of log pi
        jnp.asarray(qvalues),
        jnp.asarray(visits),
        jnp.asarray(raw_value),
        value_scale=0.1,
        maxvisit_init=50.0,
    )
    np.testing.assert_allclose(got[0], np.array([100.168405, 6.893636, 0.2]) / 107.262041, rtol=1e-5)
    row1 = prior[1] * np.exp((50.0 + 2.0) * 0.1 * np.array([0.25, 1.0, 0.0]))  # q_hat = (q - 0.1) / 0.4
    np.testing.assert_allclose(got[1], row1 / row1.sum(), rtol=1e-5)
    np.testing.assert_allclose(got[2], prior[2], rtol=1e-5)
    np.testing.assert_allclose(got, hand_improved_policy(np.log(prior), qvalues, visits, raw_value, 0.1, 50.0), rtol=1e-5)
    # Completed with mctx's Q = 0 instead of v_mix, or with v_hat, action 1 of row 0 would get another weight.
    for wrong in (0.0, -0.05):
        q = np.array([0.4, wrong, -0.1])
        w = prior[0] * np.exp(5.3 * (q - q.min()) / (q.max() - q.min()))
        assert abs(w[1] / w.sum() - float(got[0, 1])) > 0.05


def test_completed_q_keeps_visited_q_and_gives_unvisited_actions_the_mixed_value():
    prior = np.array([0.5, 0.3, 0.2])
    completed = mzu.completed_q(
        jnp.array([0.4, 0.0, -0.1]), jnp.array([3.0, 0.0, 1.0]), jnp.asarray(0.25), jnp.log(jnp.asarray(prior))
    )
    np.testing.assert_allclose(completed, [0.4, (0.25 + 4 * (0.5 * 0.4 - 0.2 * 0.1) / 0.7) / 5, -0.1], rtol=1e-6)
    # Before any visit every action completes to v_hat.
    nothing = mzu.completed_q(jnp.zeros(3), jnp.zeros(3), jnp.asarray(0.25), jnp.log(jnp.asarray(prior)))
    np.testing.assert_allclose(nothing, [0.25] * 3, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# 2. The search on a model worked out by hand.
# ---------------------------------------------------------------------------------------------

PRIOR = np.array([0.2, 0.3, 0.5])  # action 2 first
GAMMA = 0.5
VALUE_SCALE, MAXVISIT_INIT = 0.2, 10.0  # not mctx's defaults, so that a flag that does not reach the search shows


def gumbel_model():
    """tests/test_mzu.py's one-hot model (g(s, a) = e_a; reward R into e2, value V at e2, 0 elsewhere) with the prior
    PRIOR at every node."""
    network, params = one_hot_model()
    params["params"]["policy_head"]["bias"] = jnp.log(jnp.asarray(PRIOR, jnp.float32))
    return network, params


def gumbel_args(**flags):
    flags = {"value_scale": VALUE_SCALE, "maxvisit_init": MAXVISIT_INIT, **flags}
    return mzu.apply_env_defaults(mzu.Args(num_bins=11, discount=GAMMA, search="gumbel", **flags))


def test_gumbel_search_of_a_hand_worked_model_gives_the_target_worked_out_by_hand():
    """Two simulations, no Gumbel noise, roots o = 0 (v_hat 0) and o = e2 (v_hat V); m = 3 actions considered.

    Simulation 1: nothing visited, sigma is 0 everywhere, so the largest logit wins: action 2, Q = R + gamma V = q.
    Simulation 2: Sequential Halving still visits only unvisited actions; both complete to the same v_mix, so the
    larger logit wins: action 1, Q = 0. Visits (0, 1, 1); v_mix = (v_hat + 2 (0.3 * 0 + 0.5 q) / 0.8) / 3 completes
    action 0; sigma scales the rescaled completedQ by (c_visit + 1) c_scale = 2.2. The search value at the root is
    (v_hat + q + 0) / 3. The action: of the most visited actions {1, 2}, the larger logit + sigma, action 2.
    """
    network, params = gumbel_model()
    args = gumbel_args(num_simulations=2, gumbel_scale=0.0)
    observation = jnp.asarray([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]], jnp.float32)  # [2, 3]
    search_fn = jax.jit(lambda p, o, k: mzu.mcts(network, p, o, 1, k, **mzu.search_settings(args), dirichlet_fraction=0.0))
    search = compile_once(search_fn, params, observation, jax.random.PRNGKey(0))(params, observation, jax.random.PRNGKey(0))

    q = R + GAMMA * V  # R and V: the model's reward into e2 and value of e2 (2.988 and 7.952)
    v_hat = np.array([0.0, V])
    v_mix = (v_hat + 2 * (0.5 * q) / 0.8) / 3
    completed = np.stack([v_mix, np.zeros(2), np.full(2, q)], axis=-1)  # [2, 3]
    q_hat = (completed - completed.min(-1, keepdims=True)) / (
        completed.max(-1, keepdims=True) - completed.min(-1, keepdims=True)
    )
    np.testing.assert_allclose(q_hat[:, 0], [1.25 / 3, (V + 1.25 * q) / 3 / q], rtol=1e-9)  # 0.4167 and 0.7973
    expected = softmax(np.log(PRIOR) + (MAXVISIT_INIT + 1) * VALUE_SCALE * q_hat)

    np.testing.assert_allclose(search.visit_counts, [[0.0, 1.0, 1.0]] * 2)
    np.testing.assert_allclose(search.qvalues[:, 1:], [[0.0, q]] * 2, atol=2e-4)
    np.testing.assert_allclose(search.raw_value, v_hat, atol=2e-4)
    np.testing.assert_allclose(search.root_value, (v_hat + q) / 3, atol=2e-4)
    np.testing.assert_array_equal(search.action, [2, 2])
    # mctx's improved policy and the script's target from the same root statistics are both the hand-computed pi'.
    np.testing.assert_allclose(search.action_weights, expected, atol=1e-4)
    target = mzu.improved_policy(
        search.prior_logits,
        search.qvalues,
        search.visit_counts,
        search.raw_value,
        value_scale=VALUE_SCALE,
        maxvisit_init=MAXVISIT_INIT,
    )
    np.testing.assert_allclose(target, expected, atol=1e-4)
    # Action 0, unvisited, completed with mctx's Q = 0 or with v_hat instead of v_mix, would get another weight.
    for wrong in (np.zeros(2), v_hat):
        alternative = completed.copy()
        alternative[:, 0] = wrong
        spread = alternative.max(-1, keepdims=True) - alternative.min(-1, keepdims=True)
        other = softmax(
            np.log(PRIOR) + (MAXVISIT_INIT + 1) * VALUE_SCALE * (alternative - alternative.min(-1, keepdims=True)) / spread
        )
        assert np.all(np.abs(other[:, 0] - expected[:, 0]) > 0.02), (other, expected)


def test_script_target_is_mctx_improved_policy_under_gumbel_noise():
    """On a random network, four simulations with Gumbel noise and two of three actions considered: the script's
    pi' from the root statistics equals mctx's action_weights at every root (the target is the search's pi')."""
    network = tiny_network()
    params = draw_params(network, 3)
    args = gumbel_args(num_simulations=4, max_num_considered_actions=2)
    observation = jnp.asarray(np.random.default_rng(0).standard_normal((64, OBS_DIM)), jnp.float32)

    def target_and_weights(p, o, k):
        search = mzu.mcts(network, p, o, 1, k, **mzu.search_settings(args), dirichlet_fraction=0.0)
        target = mzu.improved_policy(
            search.prior_logits,
            search.qvalues,
            search.visit_counts,
            search.raw_value,
            value_scale=VALUE_SCALE,
            maxvisit_init=MAXVISIT_INIT,
        )
        return target, search.action_weights, search.visit_counts

    key = jax.random.PRNGKey(4)
    target, weights, visits = compile_once(jax.jit(target_and_weights), params, observation, key)(params, observation, key)
    assert np.all(np.sum(np.asarray(visits) > 0, -1) == 2)  # one action of three is left unvisited at every root
    np.testing.assert_allclose(target, weights, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# 3. The assembled loss.
# ---------------------------------------------------------------------------------------------

LOSS_SIMULATIONS, LOSS_CONSIDERED = 4, 2  # two of the three actions considered


def loss_args():
    return mzu.apply_env_defaults(
        mzu.Args(
            unroll_steps=K,
            td_steps=TD,
            discount=LOSS_GAMMA,
            num_bins=11,
            num_simulations=LOSS_SIMULATIONS,
            value_coef=VALUE_COEF,
            policy_coef=POLICY_COEF,
            search="gumbel",
            max_num_considered_actions=LOSS_CONSIDERED,
            value_scale=VALUE_SCALE,
            maxvisit_init=MAXVISIT_INIT,
        )
    )


def reference_gumbel_search(network):
    """mctx.gumbel_muzero_policy from observations [N, D] with the model called by hand (tests/test_mzu_loss.py's
    decoding), the Q-transform's scales and the number of considered actions given here. Root statistics [N, ...]."""

    def step_model(params, rng, action, embedding):
        next_state = network.apply(params, embedding, action, method=network.dynamics)
        prior_logits, value_logits, reward_logits = network.apply(params, next_state, method=network.predict)
        value = decode(value_logits, jnp)
        out = mctx.RecurrentFnOutput(
            reward=decode(reward_logits, jnp),
            discount=LOSS_GAMMA * jnp.ones_like(value),
            prior_logits=prior_logits,
            value=value,
        )
        return out, next_state

    def search(params, observation, key):
        state = network.apply(params, observation, method=network.represent)
        prior_logits, value_logits, _ = network.apply(params, state, method=network.predict)
        root = mctx.RootFnOutput(prior_logits=prior_logits, value=decode(value_logits, jnp), embedding=state)
        qtransform = functools.partial(
            mctx.qtransform_completed_by_mix_value, value_scale=VALUE_SCALE, maxvisit_init=MAXVISIT_INIT
        )
        out = mctx.gumbel_muzero_policy(
            params, key, root, step_model, LOSS_SIMULATIONS, qtransform=qtransform, max_num_considered_actions=LOSS_CONSIDERED
        )
        summary = out.search_tree.summary()
        return {
            "prior_logits": prior_logits,
            "raw_value": root.value,
            "visit_counts": summary.visit_counts,
            "qvalues": summary.qvalues,
            "root_value": out.search_tree.node_values[:, 0],
            "action_weights": out.action_weights,
        }

    return jax.jit(search)


def test_assembled_gumbel_loss_equals_a_hand_computation():
    """tests/test_mzu_loss.py's case (online and target networks apart; one terminal and one truncated row) with the
    Gumbel search: the policy target is the hand pi' of the reference search's roots 0..K (uniform at absorbing
    steps), the value target the n-step return bootstrapped from the search value at the root, node_values[:, 0]."""
    network = tiny_network()
    params, target_params = draw_params(network, 1), draw_params(network, 2)
    window, key = hand_window(), jax.random.PRNGKey(11)
    B, L = window.action.shape
    roots = window.observation.reshape(B * L, OBS_DIM)  # the script's roots, in its row-major order
    found = compile_once(reference_gumbel_search(network), target_params, roots, key)(target_params, roots, key)
    search = {name: np.asarray(x, np.float64).reshape((B, L) + x.shape[1:]) for name, x in found.items()}

    visits = search["visit_counts"][:, : K + 1]
    real = ~np.asarray(window.absorbing)[:, : K + 1]
    assert np.all(np.sum(visits > 0, -1) == LOSS_CONSIDERED)  # an unvisited action at every root: v_mix matters
    policy_target = hand_improved_policy(
        search["prior_logits"][:, : K + 1],
        search["qvalues"][:, : K + 1],
        visits,
        search["raw_value"][:, : K + 1],
        VALUE_SCALE,
        MAXVISIT_INIT,
    )
    np.testing.assert_allclose(policy_target, search["action_weights"][:, : K + 1], atol=1e-5)  # mctx's pi'
    # The target is neither the visit distribution nor the prior (so that either bug shows).
    assert np.max(np.abs(policy_target - visits / visits.sum(-1, keepdims=True))[real]) > 0.05
    assert np.max(np.abs(policy_target - softmax(search["prior_logits"][:, : K + 1]))[real]) > 0.05
    policy_target = np.where(real[..., None], policy_target, 1.0 / NUM_ACTIONS)
    value_target = hand_value_target(window, search["root_value"])  # gamma LOSS_GAMMA, n = TD

    loss_fn = mzu.make_loss_fn(loss_args(), network, NUM_ACTIONS)
    inputs = (params, target_params, window, key)
    _, metrics = compile_once(jax.jit(loss_fn), *inputs)(*inputs)

    unroll = jax.jit(lambda p: online_unroll(network, p, window.observation, window.action))(params)
    policy_logits, value_logits, reward_logits = (np.asarray(x, np.float64) for x in unroll)
    reward_loss = np.mean(
        cross_entropy(target_distribution(np.asarray(window.reward, np.float64)[:, :K]), reward_logits[:, 1:])
    )
    value_loss = np.mean(cross_entropy(target_distribution(value_target), value_logits))
    policy_loss = np.mean(cross_entropy(policy_target, policy_logits))
    expected = {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "reward_loss": reward_loss,
        "loss": reward_loss + VALUE_COEF * value_loss + POLICY_COEF * policy_loss,
        "root_value": np.mean(search["root_value"]),
        "value_target": np.mean(value_target),
    }
    for name, value in expected.items():
        np.testing.assert_allclose(metrics[name], value, rtol=2e-5, atol=1e-6, err_msg=name)


# ---------------------------------------------------------------------------------------------
# 4. Acting.
# ---------------------------------------------------------------------------------------------

NUM_KEYS = 400


def act_over_keys(eval_greedy):
    """mzu.py's acting function on NUM_KEYS seeds of the hand-worked model (two simulations, --gumbel-scale 1):
    actions [NUM_KEYS, 2], and the action of the search with the Gumbel noise of each seed's search key."""
    network, params = gumbel_model()
    args = gumbel_args(num_simulations=2, eval_greedy=eval_greedy)
    assert args.gumbel_scale == 1.0
    act = mzu.make_act(network, args.eval_greedy, mzu.search_settings(args))
    params_s = jax.tree.map(lambda x: jnp.broadcast_to(x, (NUM_KEYS,) + x.shape), params)
    obs_s = jnp.broadcast_to(jnp.asarray([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]], jnp.float32), (NUM_KEYS, 2, 3))
    keys = jax.random.split(jax.random.PRNGKey(7), NUM_KEYS)
    actions = compile_once(act, params_s, obs_s, keys)(params_s, obs_s, keys)

    def noisy_search_action(p, o, key):
        search_key = jax.random.split(key)[0]  # the key act_one gives its search
        return mzu.mcts(network, p, o, 1, search_key, **mzu.search_settings(args), dirichlet_fraction=0.0).action

    searched = compile_once(jax.jit(jax.vmap(noisy_search_action)), params_s, obs_s, keys)(params_s, obs_s, keys)
    return np.asarray(actions), np.asarray(searched)


def test_sampled_acting_takes_the_gumbel_search_action():
    """Default: the action of the search with Gumbel noise (A_{n+1}), which varies with the key."""
    actions, searched = act_over_keys(eval_greedy=False)
    np.testing.assert_array_equal(actions, searched)
    assert float(np.mean(actions != 2)) >= 0.10  # the noise moves the action away from the noise-free one


def test_greedy_acting_searches_without_gumbel_noise():
    """--eval-greedy: gumbel_scale 0 whatever --gumbel-scale says; the hand-worked action 2 on every key."""
    actions, _ = act_over_keys(eval_greedy=True)
    np.testing.assert_array_equal(actions, np.full((NUM_KEYS, 2), 2))


# ---------------------------------------------------------------------------------------------
# 5. Flags.
# ---------------------------------------------------------------------------------------------


def test_muzero_is_the_default_and_the_gumbel_flags_default_to_mctx():
    args = mzu.Args()
    assert args.search == "muzero"
    policy = inspect.signature(mctx.gumbel_muzero_policy).parameters
    transform = inspect.signature(mctx.qtransform_completed_by_mix_value).parameters
    assert args.max_num_considered_actions == policy["max_num_considered_actions"].default == 16
    assert args.gumbel_scale == policy["gumbel_scale"].default == 1.0
    assert args.value_scale == transform["value_scale"].default == 0.1
    assert args.maxvisit_init == transform["maxvisit_init"].default == 50.0


@pytest.mark.parametrize(
    "flag, value",
    [
        ("max_num_considered_actions", 0),
        ("gumbel_scale", -1.0),
        ("gumbel_scale", math.nan),
        ("value_scale", -0.1),
        ("maxvisit_init", -1.0),
    ],
)
def test_bad_gumbel_flags_are_refused(flag, value):
    args = mzu.apply_env_defaults(dataclasses.replace(mzu.Args(search="gumbel"), **{flag: value}))
    with pytest.raises(UsageError, match=f"--{flag.replace('_', '-')} must be"):
        mzu.check_args(args)


@pytest.mark.e2e
def test_gumbel_search_trains_and_evaluates_end_to_end(catch_data, tmp_path):
    out = run_script(
        ["--data-dir", str(catch_data), "--search", "gumbel", "--num-simulations", "2", *SMALL], tmp_path, "mzu.py"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "finished" and results["total_steps"] == 300
    assert json.loads((run_dir / "args.json").read_text())["search"] == "gumbel"
    assert all(-1.0 <= r <= 1.0 for r in results["final_returns"])
