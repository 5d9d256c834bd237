"""ROSMO's assembled loss, target network, optimiser and acting rule against hand computations.

The reference here is written from the paper (Eq. 5-14, Algorithm 2) with explicit network calls
(representation h, dynamics g, prediction f) and numpy arithmetic; it uses none of rosmo.py's
target or loss helpers, nor the value transforms of common/networks.py. The hand-made window has three rows:
one inside its episode, one that reaches a terminal state, one that is truncated. Online and
target parameters are drawn independently, so a target taken from the wrong network shows.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scripts import optimizer_of

import rosmo
from common.replay import Window

A, BINS, K, N_TD, D = 3, 20, 2, 2, 3  # actions, value bins, unroll steps K, TD steps n, observation size
L = K + N_TD + 1  # window length
B = 3  # rows of the hand-made window
GAMMA = 0.9
EPS = 1e-3  # of the value transform h (Pohlen et al., 2018)
COEFS = dict(value_coef=0.3, policy_coef=0.7, behavior_coef=0.4)  # not the defaults, so each weight shows
NETWORK = rosmo.networks.MuZeroNetwork(
    num_actions=A, num_bins=BINS, representation_layers=(8, 6), dynamics_layers=(8, 6), prediction_layers=(8,)
)


# ---------------------------------------------------------------------------------------------
# Categorical scalars (Appendix A.2) in numpy.
# ---------------------------------------------------------------------------------------------

SUPPORT = np.arange(BINS) - (BINS - 1) / 2.0  # -9.5 .. 9.5


def np_h(x):
    return np.sign(x) * (np.sqrt(np.abs(x) + 1.0) - 1.0) + EPS * x


def np_h_inv(y):
    return np.sign(y) * (((np.sqrt(1.0 + 4.0 * EPS * (np.abs(y) + 1.0 + EPS)) - 1.0) / (2.0 * EPS)) ** 2 - 1.0)


def np_log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def np_softmax(x):
    return np.exp(np_log_softmax(x))


def decode(logits):
    """Categorical logits [..., BINS] -> scalar: h^-1 of the expected bin."""
    return np_h_inv(np_softmax(logits) @ SUPPORT)


def two_hot(x):
    """Scalars [...] -> [..., BINS]: h(x) split between its two neighbouring bins."""
    y = np.clip(np_h(np.asarray(x, np.float64)), SUPPORT[0], SUPPORT[-1])
    probs = np.zeros(y.shape + (BINS,))
    for idx in np.ndindex(y.shape):
        pos = y[idx] - SUPPORT[0]
        low = min(int(np.floor(pos)), BINS - 2)
        probs[idx + (low,)] = 1.0 - (pos - low)
        probs[idx + (low + 1,)] = pos - low
    return probs


def test_two_hot_and_decode_of_the_reference_invert_each_other():
    x = np.array([-3.0, -0.2, 0.0, 0.7, 12.0])
    probs = two_hot(x)
    np.testing.assert_allclose(probs.sum(-1), 1.0)
    np.testing.assert_allclose(np_h_inv(probs @ SUPPORT), x, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np_h(np_h_inv(np.array([-2.5, 0.3, 4.0]))), [-2.5, 0.3, 4.0], rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# The hand-made example.
# ---------------------------------------------------------------------------------------------


def draw_params(seed, policy_scale=0.5):
    """Every leaf drawn with numpy (the zero-initialised heads too): N(0, 0.5^2), the value and
    reward heads N(0, 0.15^2) so that values and advantages are O(1)."""
    shapes = jax.eval_shape(NETWORK.init, jax.random.PRNGKey(0), jnp.zeros((1, D)), jnp.zeros((1,), jnp.int32))
    rng = np.random.default_rng(seed)

    def draw(path, s):
        name = jax.tree_util.keystr(path)
        scale = 0.15 if ("value_head" in name or "reward_head" in name) else policy_scale if "policy_head" in name else 0.5
        return jnp.asarray(rng.normal(0.0, scale, s.shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def hand_window():
    """Row 0 stays inside its episode (one transition has discount 0.5); row 1 terminates on the
    step 1 -> 2 transition (s_2 terminal, absorbing from there); row 2 is truncated after s_1
    (s_1 real, absorbing from step 2). Past an episode's end the last observation repeats, the
    reward is 0, the discount 1 and the action arbitrary (the layout of common/replay.py)."""
    rng = np.random.default_rng(7)
    obs = rng.normal(size=(B, L, D)).astype(np.float32)  # [B, L, D]
    obs[1, 3:] = obs[1, 2]
    obs[2, 2:] = obs[2, 1]
    return Window(
        observation=jnp.asarray(obs),
        action=jnp.array([[0, 2, 1, 1, 0], [1, 0, 2, 0, 1], [2, 1, 0, 2, 2]], jnp.int32),
        reward=jnp.array([[0.5, -1.0, 2.0, 0.3, -0.7], [1.0, -0.5, 0, 0, 0], [0.8, 0, 0, 0, 0]], jnp.float32),
        discount=jnp.array([[1, 0.5, 1, 1, 1], [1, 0, 1, 1, 1], [1, 1, 1, 1, 1]], jnp.float32),
        has_action=jnp.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], bool),
        absorbing=jnp.array([[0, 0, 0, 0, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 1]], bool),
    )


def make_args(**kw):
    return rosmo.Args(**{**dict(unroll_steps=K, td_steps=N_TD, num_bins=BINS, discount=GAMMA), **COEFS, **kw})


@pytest.fixture(scope="module")
def example():
    return draw_params(1), draw_params(7), hand_window()  # online theta, target theta', window


@functools.lru_cache(maxsize=None)
def compiled_loss(behavior_advantage="model", behavior_only=False, with_grad=True):
    """rosmo's loss for one configuration, jitted once: value_and_grad w.r.t. (params, target_params) or the value."""
    loss_fn = rosmo.make_loss_fn(make_args(behavior_advantage=behavior_advantage, behavior_only=behavior_only), NETWORK, A)
    return jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True) if with_grad else loss_fn)


@functools.lru_cache(maxsize=None)
def compiled_sampled_loss(num_samples):
    """rosmo's loss with the sampled policy target (Eq. 9-10), vmapped over keys [M]."""
    loss_fn = rosmo.make_loss_fn(make_args(num_samples=num_samples), NETWORK, A)
    return jax.jit(jax.vmap(loss_fn, in_axes=(None, None, None, 0)))


# ---------------------------------------------------------------------------------------------
# The reference: targets from theta' (numpy), losses on the online unroll (jnp, so that it can be
# differentiated with every target held constant).
# ---------------------------------------------------------------------------------------------


def reference_targets(target_params, window, behavior_advantage="model"):
    """Algorithm 2's IMPROVE and BehaviorRegularizer with theta' = target_params (numpy, float64)."""
    w = jax.tree.map(np.asarray, window)
    apply = functools.partial(NETWORK.apply, target_params)
    s = apply(w.observation, method=NETWORK.represent)  # s_t = h'(o_t), [B, L, S]
    prior_logits, value_logits, reward_logits = map(np.asarray, apply(s, method=NETWORK.predict))
    v = decode(value_logits)  # v'(s_t), [B, L]

    def q(actions):  # Eq. 7 at the real states s_0..s_K: r_g + gamma v'(s'); actions [B, K+1]
        s_next = apply(s[:, : K + 1], jnp.asarray(actions, jnp.int32), method=NETWORK.dynamics)
        _, v_next, r_next = apply(s_next, method=NETWORK.predict)
        return decode(np.asarray(r_next)) + GAMMA * decode(np.asarray(v_next))

    adv = np.stack([q(np.full((B, K + 1), a)) - v[:, : K + 1] for a in range(A)], axis=-1)  # [B, K+1, A]
    prior = np_softmax(prior_logits[:, : K + 1])  # pi_prior = pi_theta'
    policy_target = prior * np.exp(adv) / (prior * np.exp(adv)).sum(-1, keepdims=True)  # Eq. 6
    policy_target[w.absorbing[:, : K + 1]] = 1.0 / A  # uniform where the state is absorbing

    value_target = np.zeros((B, K + 1))  # Eq. 8
    for b in range(B):
        for t in range(K + 1):
            if w.absorbing[b, t]:
                continue  # terminal or past the end: value 0
            ret, scale, j = 0.0, 1.0, t
            while j < t + N_TD and w.has_action[b, j]:
                ret += scale * w.reward[b, j]
                scale *= GAMMA * w.discount[b, j]
                j += 1
            value_target[b, t] = ret + scale * v[b, j]  # v' of s_{t+n}, or of a truncated episode's last state

    if behavior_advantage == "model":  # adv_g(s_t, a_t): Eq. 7 for the data action
        adv_behavior = q(w.action[:, : K + 1]) - v[:, : K + 1]
    else:  # predicted reward at the real next state + gamma * discount * v'(s_{t+1}) - v'(s_t)
        next_value = np.where(w.absorbing[:, 1 : K + 2], 0.0, v[:, 1 : K + 2])
        adv_behavior = decode(reward_logits[:, 1 : K + 2]) + GAMMA * w.discount[:, : K + 1] * next_value - v[:, : K + 1]
    return dict(policy_target=policy_target, value_target=value_target, adv=adv, adv_behavior=adv_behavior, prior=prior)


def online_unroll(params, window):
    """Algorithm 2's UNROLL: s^0 = h(o_0), s^{k+1} = g(s^k, a_k), the gradient into g halved (MuZero)."""
    s = NETWORK.apply(params, window.observation[:, 0], method=NETWORK.represent)
    outs = [NETWORK.apply(params, s, method=NETWORK.predict)]
    for k in range(K):
        s = NETWORK.apply(params, 0.5 * s + 0.5 * jax.lax.stop_gradient(s), window.action[:, k], method=NETWORK.dynamics)
        outs.append(NETWORK.apply(params, s, method=NETWORK.predict))
    return [jnp.stack(x, axis=1) for x in zip(*outs)]  # policy [B, K+1, A], value and reward [B, K+1, BINS]


@jax.jit
@functools.partial(jax.value_and_grad, has_aux=True)
def reference_loss(params, window, constants, weights):
    """Eq. 1 with Eq. 11-14, each term averaged over rows and unroll positions. `constants` are the
    targets (two-hot reward and value targets, policy target, the behaviour filter 1[adv > 0] and
    has_action); `weights` multiply (value loss, policy loss, behaviour loss)."""
    policy_logits, value_logits, reward_logits = online_unroll(params, window)
    log_pi = jax.nn.log_softmax(policy_logits)
    reward_loss = jnp.mean(-jnp.sum(constants["reward_probs"] * jax.nn.log_softmax(reward_logits[:, 1:]), -1))
    value_loss = jnp.mean(-jnp.sum(constants["value_probs"] * jax.nn.log_softmax(value_logits), -1))
    policy_loss = jnp.mean(-jnp.sum(constants["policy_target"] * log_pi, -1))
    log_pi_data = jnp.take_along_axis(log_pi, window.action[:, : K + 1, None], axis=-1)[..., 0]  # [B, K+1]
    behavior = jnp.mean(-log_pi_data * constants["filter"])
    total = reward_loss + weights[0] * value_loss + weights[1] * policy_loss + weights[2] * behavior
    pi = jax.nn.softmax(policy_logits)
    entropy = jnp.mean(-jnp.sum(pi * log_pi, -1))
    return total, dict(
        loss=total,
        reward_loss=reward_loss,
        value_loss=value_loss,
        policy_loss=policy_loss,
        behavior_loss=behavior,
        policy_entropy=entropy,
        log_pi=log_pi,
    )


def reference(params, window, targets, behavior_only=False):
    """(total, metrics, grads) of the reference with the targets of `reference_targets`."""
    has_action = np.asarray(window.has_action[:, : K + 1])
    constants = dict(
        reward_probs=two_hot(np.asarray(window.reward[:, :K])),  # reward of the transition into s^{k+1}
        value_probs=two_hot(targets["value_target"]),
        policy_target=targets["policy_target"],
        filter=(targets["adv_behavior"] > 0) & has_action,
    )
    c = COEFS
    if behavior_only:  # the Behavior ablation: Eq. 11 takes the policy weight, no one-step target
        weights = (c["value_coef"], 0.0, c["policy_coef"])
    else:
        weights = (c["value_coef"], c["policy_coef"], c["behavior_coef"])
    (total, metrics), grads = reference_loss(params, window, jax.tree.map(jnp.asarray, constants), jnp.asarray(weights))
    metrics = dict(
        metrics,
        value_target=targets["value_target"].mean(),
        advantage=targets["adv"].mean(),
        behavior_filter_rate=constants["filter"].sum() / has_action.sum(),
        accuracy=np.mean(np.argmax(np.asarray(metrics["log_pi"])[:, 0], -1) == np.asarray(window.action[:, 0])),
    )
    return total, metrics, grads


# ---------------------------------------------------------------------------------------------
# 1. The assembled loss; 2. where its gradient goes.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("behavior_advantage,behavior_only", [("model", False), ("data", True)])
def test_loss_and_every_metric_equal_the_hand_computation(example, behavior_advantage, behavior_only):
    params, target_params, window = example
    out = compiled_loss(behavior_advantage, behavior_only, behavior_advantage == "model")(
        params, target_params, window, jax.random.PRNGKey(0)
    )
    total, metrics = out[0] if behavior_advantage == "model" else out
    targets = reference_targets(target_params, window, behavior_advantage)
    expected_total, expected, _ = reference(params, window, targets, behavior_only)
    np.testing.assert_allclose(total, expected_total, rtol=1e-4)
    expected.pop("log_pi")
    assert 0 < expected["accuracy"] < 1  # the argmax matches some of the data's actions, not all
    assert set(expected) <= set(metrics), set(expected) - set(metrics)
    for name, value in expected.items():
        np.testing.assert_allclose(metrics[name], value, rtol=1e-4, atol=3e-5, err_msg=name)

    # The example tells the right computation from the usual slips. The filter 1[adv > 0] keeps
    # some real steps and drops others, well away from 0, and would keep a step without action ...
    adv_b, real = targets["adv_behavior"], np.asarray(window.has_action[:, : K + 1])
    assert (adv_b[real] > 0).any() and (adv_b[real] < 0).any() and np.abs(adv_b).min() > 1e-3, adv_b
    assert (adv_b[~real] > 0).any(), adv_b
    # ... the targets depend on which network makes them, bootstrapped values included ...
    online = reference_targets(params, window, behavior_advantage)
    assert np.abs(online["value_target"] - targets["value_target"]).max() > 0.05
    assert np.abs(online["policy_target"] - targets["policy_target"]).max() > 0.05
    # ... and the uniform target at absorbing steps is not what Eq. 6 gives there.
    unmasked = targets["prior"] * np.exp(targets["adv"])
    unmasked /= unmasked.sum(-1, keepdims=True)
    absorbing = np.asarray(window.absorbing[:, : K + 1])
    assert absorbing.sum() == 2 and np.abs(unmasked[absorbing] - 1.0 / A).max() > 0.05


def test_gradient_flows_into_the_online_parameters_only_and_not_through_the_targets(example):
    params, target_params, window = example
    loss_and_grads = compiled_loss("model", False, True)
    (_, _), (grad_params, grad_target) = loss_and_grads(params, target_params, window, jax.random.PRNGKey(0))
    for g in jax.tree.leaves(grad_target):
        assert np.all(np.asarray(g) == 0.0)
    # The same gradient as the hand-written loss in which every target is a constant.
    _, _, expected = reference(params, window, reference_targets(target_params, window))
    for (path, g), e in zip(jax.tree_util.tree_leaves_with_path(grad_params), jax.tree.leaves(expected)):
        e, name = np.asarray(e), jax.tree_util.keystr(path)
        assert np.abs(e).max() > 1e-4, name  # every leaf gets a gradient
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5 * np.abs(e).max(), err_msg=name)


# ---------------------------------------------------------------------------------------------
# 3. The sampled policy target (Eq. 9-10): candidates drawn from the prior.
# ---------------------------------------------------------------------------------------------


def expected_sampled_policy_loss(candidate_probs, adv, log_pi, absorbing, n):
    """E over n candidates drawn i.i.d. from `candidate_probs` [B, K+1, A] of Eq. 9's loss with
    Eq. 10's leave-one-out Z, by enumerating all A^n draws; uniform target at absorbing steps."""
    losses = np.zeros(absorbing.shape)
    for b, t in np.ndindex(absorbing.shape):
        if absorbing[b, t]:
            losses[b, t] = -log_pi[b, t].mean()
            continue
        for draw in itertools.product(range(A), repeat=n):
            e = np.exp(adv[b, t, list(draw)])
            z = (1.0 + e.sum() - e) / n  # Z^(i) of each sample i
            target = np.zeros(A)
            for a_i, w_i in zip(draw, e / z):
                target[a_i] += w_i / n
            losses[b, t] += np.prod(candidate_probs[b, t, list(draw)]) * -(target @ log_pi[b, t])
    return losses.mean()


def sampled_policy_losses(params, target_params, window, num_samples, num_keys=4000):
    keys = jax.random.split(jax.random.PRNGKey(11), num_keys)
    _, metrics = compiled_sampled_loss(num_samples)(params, target_params, window, keys)
    losses = np.asarray(metrics["policy_loss"], np.float64)  # [M]
    return losses.mean(), losses.std() / np.sqrt(num_keys)


def test_sampled_policy_loss_draws_its_candidates_from_the_prior(example):
    params, target_params, window = example
    n = 3
    mean, sem = sampled_policy_losses(params, target_params, window, n)
    targets = reference_targets(target_params, window)
    log_pi = np.asarray(reference(params, window, targets)[1]["log_pi"], np.float64)
    absorbing = np.asarray(window.absorbing[:, : K + 1])
    from_prior = expected_sampled_policy_loss(targets["prior"], targets["adv"], log_pi, absorbing, n)
    uniform = expected_sampled_policy_loss(np.full_like(targets["prior"], 1.0 / A), targets["adv"], log_pi, absorbing, n)
    assert targets["prior"][~absorbing].max() > 0.6  # a clearly non-uniform prior
    assert abs(mean - from_prior) < 4 * sem, (mean, sem, from_prior)
    assert abs(mean - uniform) > 10 * sem, (mean, sem, uniform)  # a uniform draw would be caught


def test_sampled_policy_loss_averages_to_the_exact_loss_where_the_advantages_vanish(example):
    """With value and reward heads at zero every advantage is 0, the weights of Eq. 9-10 are 1 and the
    sampled target is unbiased for Eq. 6's target (the prior): its mean loss is the exact loss. The
    online network is the target one here, so that a draw from another distribution shows most."""
    _, target_params, window = example
    flat = jax.tree_util.tree_map_with_path(
        lambda p, x: x * 0 if ("value_head" in jax.tree_util.keystr(p) or "reward_head" in jax.tree_util.keystr(p)) else x,
        target_params,
    )
    mean, sem = sampled_policy_losses(flat, flat, window, 3)
    targets = reference_targets(flat, window)
    assert np.abs(targets["adv"]).max() < 1e-5
    _, metrics, _ = reference(flat, window, targets)
    exact = float(metrics["policy_loss"])
    assert abs(mean - exact) < 4 * sem, (mean, sem, exact)
    log_pi = np.asarray(metrics["log_pi"])
    assert abs(mean - (-log_pi.mean(-1)).mean()) > 10 * sem  # candidates drawn uniformly would average to this


# ---------------------------------------------------------------------------------------------
# 4. Target network, update by update.
# ---------------------------------------------------------------------------------------------


def test_target_network_is_the_online_network_of_the_last_multiple_of_the_interval():
    from test_replay import synthetic_episodes

    from common.replay import make_store

    interval = 3
    store = make_store(synthetic_episodes([4, 7, 3, 9, 5, 6]))
    args = make_args(
        batch_size=4, target_update_interval=interval, warmup_steps=1, updates_per_dispatch=1, unroll_steps=1, td_steps=1
    )  # the smallest update: a quick compile
    params = draw_params(1)
    optimizer = optimizer_of(rosmo, args)
    seed_axis = functools.partial(jax.tree.map, lambda x: jnp.asarray(x)[None])  # one vmapped seed
    state = rosmo.TrainState(
        params=seed_axis(params),
        target_params=seed_axis(params),
        opt_state=seed_axis(optimizer.init(params)),
        step=jnp.zeros((1,), jnp.int32),
        key=jax.random.PRNGKey(0)[None],
    )
    chunk = rosmo.make_train_chunk(args, NETWORK, optimizer, A, 1)
    copy = functools.partial(jax.tree.map, lambda x: np.array(x, copy=True))  # the state is donated to the next call
    online = [copy(state.params)]  # online parameters after update u
    for u in range(1, 2 * interval + 2):
        state, _ = chunk(state, store)
        online.append(copy(state.params))
        assert int(state.step[0]) == u
        expected = online[u // interval * interval]
        for t, e in zip(jax.tree.leaves(state.target_params), jax.tree.leaves(expected)):
            np.testing.assert_array_equal(t, e, err_msg=f"after update {u}")
    # Update 1 has the warm-up's learning rate 0; every later one moves the online network.
    for u in range(2, 2 * interval + 2):
        assert not np.array_equal(jax.tree.leaves(online[u])[-1], jax.tree.leaves(online[u - 1])[-1]), u


# ---------------------------------------------------------------------------------------------
# 5. Optimiser: learning-rate schedule, weight decay on kernels only, gradient clipping.
# ---------------------------------------------------------------------------------------------


def test_learning_rate_warms_up_linearly_then_decays_in_stairs():
    args = rosmo.Args(learning_rate=0.01, warmup_steps=10, lr_decay_steps=50, lr_decay_rate=0.1)
    schedule = rosmo.make_learning_rate(args.learning_rate, args.warmup_steps, args.lr_decay_rate, args.lr_decay_steps)
    expected = {
        0: 0.0,
        4: 0.004,
        9: 0.009,
        10: 0.01,
        30: 0.01,
        49: 0.01,
        50: 0.001,
        99: 0.001,
        100: 1e-4,
        149: 1e-4,
        150: 1e-5,
    }
    got = {s: float(schedule(jnp.int32(s))) for s in expected}
    np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-5, atol=1e-12, err_msg=str(got))


def small_tree():
    """Flax-style parameters: a dense layer and a LayerNorm (kernel, bias, scale, bias)."""
    rng = np.random.default_rng(5)

    def leaf(*shape):
        return jnp.asarray(rng.normal(size=shape), jnp.float32)

    return {"params": {"Dense_0": {"kernel": leaf(3, 2), "bias": leaf(2)}, "LayerNorm_0": {"scale": leaf(2), "bias": leaf(2)}}}


def two_adamw_steps(args, grads):
    """Two updates of rosmo's optimiser on `small_tree` with the gradients grads[0], grads[1]."""
    params = small_tree()
    optimizer = optimizer_of(rosmo, args)
    update = jax.jit(optimizer.update)
    opt_state, history = optimizer.init(params), [params]
    for g in grads:
        updates, opt_state = update(g, opt_state, history[-1])
        history.append(optax.apply_updates(history[-1], updates))
    return [jax.tree.map(lambda x: np.asarray(x, np.float64), p) for p in history]


def test_adamw_decays_kernels_only():
    args = rosmo.Args(learning_rate=0.01, warmup_steps=10, weight_decay=0.5)
    zeros = jax.tree.map(jnp.zeros_like, small_tree())
    p0, p1, p2 = two_adamw_steps(args, [zeros, zeros])
    for a, b in zip(jax.tree.leaves(p0), jax.tree.leaves(p1)):
        np.testing.assert_array_equal(a, b)  # the first update has learning rate 0
    lr = 0.001  # the second has 0.01 * 1/10
    kernel = p1["params"]["Dense_0"]["kernel"]
    np.testing.assert_allclose(p2["params"]["Dense_0"]["kernel"] - kernel, -lr * 0.5 * kernel, rtol=1e-3, atol=1e-9)
    for name, leaf in [("Dense_0", "bias"), ("LayerNorm_0", "scale"), ("LayerNorm_0", "bias")]:
        np.testing.assert_array_equal(p2["params"][name][leaf], p1["params"][name][leaf], err_msg=f"{name}/{leaf}")


def test_adamw_clips_the_global_gradient_norm():
    """AdamW (b1 0.9, b2 0.999, eps 1e-8) by hand on the clipped gradients: a first gradient of norm
    69 clipped to 5, then a small one; the second step shows the first's clipped size."""
    args = rosmo.Args(learning_rate=0.01, warmup_steps=1, weight_decay=0.1, max_grad_norm=5.0)
    rng = np.random.default_rng(9)
    g1 = jax.tree.map(lambda x: jnp.full(x.shape, 20.0, jnp.float32), small_tree())
    g2 = jax.tree.map(lambda x: jnp.asarray(rng.normal(0.0, 0.5, x.shape), jnp.float32), small_tree())
    norm = np.sqrt(sum(np.sum(np.square(np.asarray(g, np.float64))) for g in jax.tree.leaves(g1)))  # 20 sqrt(12)
    p0, p1, p2 = two_adamw_steps(args, [g1, g2])

    def by_hand(clip):
        def leaf(path, p, a, b):
            a = np.asarray(a, np.float64) * (5.0 / norm if clip else 1.0)
            b = np.asarray(b, np.float64)
            m = 0.9 * 0.1 * a + 0.1 * b
            v = 0.999 * 0.001 * a**2 + 0.001 * b**2
            step = (m / (1 - 0.9**2)) / (np.sqrt(v / (1 - 0.999**2)) + 1e-8)
            decay = 0.1 * p if jax.tree_util.keystr(path).endswith("['kernel']") else 0.0
            return p - 0.01 * (step + decay)  # learning rate 0.01 at the second update (warm-up of 1)

        return jax.tree_util.tree_map_with_path(leaf, p1, g1, g2)

    for got, clipped, unclipped in zip(*(jax.tree.leaves(t) for t in (p2, by_hand(True), by_hand(False)))):
        np.testing.assert_allclose(got, clipped, rtol=1e-5, atol=1e-7)
        assert np.abs(clipped - unclipped).max() > 1e-3  # clipping matters here


# ---------------------------------------------------------------------------------------------
# 6. Acting on the one-step improved policy.
# ---------------------------------------------------------------------------------------------


def improved_logits(params, observation):
    """log pi(a|s) + adv_g(s, a) with the online network, by explicit calls [E, A] (numpy)."""
    apply = functools.partial(NETWORK.apply, params)
    s = apply(observation, method=NETWORK.represent)
    policy_logits, value_logits, _ = apply(s, method=NETWORK.predict)
    q = []
    for a in range(A):
        s_next = apply(s, jnp.full(s.shape[:-1], a, jnp.int32), method=NETWORK.dynamics)
        _, v_next, r_next = apply(s_next, method=NETWORK.predict)
        q.append(decode(np.asarray(r_next)) + GAMMA * decode(np.asarray(v_next)))
    adv = np.stack(q, -1) - decode(np.asarray(value_logits))[:, None]  # [E, A]
    return np_log_softmax(policy_logits) + adv, np.asarray(policy_logits)


@pytest.fixture(scope="module")
def acting():
    params = draw_params(1, policy_scale=0.2)  # a flatter prior, so the look-ahead often decides
    observation = np.random.default_rng(3).normal(size=(64, D)).astype(np.float32)  # [E, D]
    logits, prior_logits = improved_logits(params, observation)
    return jax.tree.map(lambda x: x[None], params), observation, logits, prior_logits  # params with a seed axis


def test_greedy_action_is_the_argmax_of_the_one_step_improved_policy(acting):
    params, observation, logits, prior_logits = acting
    act = rosmo.make_act(NETWORK, A, GAMMA, greedy=True)
    action = np.asarray(act(params, observation[None], jax.random.PRNGKey(0)[None]))[0]  # [E]
    top2 = np.sort(logits, -1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4
    assert clear.sum() >= 60
    np.testing.assert_array_equal(action[clear], logits.argmax(-1)[clear])
    changed = logits.argmax(-1) != prior_logits.argmax(-1)
    assert (changed & clear).sum() >= 5, changed.sum()  # the look-ahead changes the choice here


def test_sampled_action_follows_the_one_step_improved_policy(acting):
    params, observation, logits, prior_logits = acting
    i = int(np.argmax((logits.argmax(-1) != prior_logits.argmax(-1))))  # an observation where the look-ahead decides
    m = 4000
    act = rosmo.make_act(NETWORK, A, GAMMA, greedy=False)
    action = np.asarray(act(params, np.repeat(observation[None, i : i + 1], m, axis=1), jax.random.PRNGKey(1)[None]))[0]
    freq = np.bincount(action, minlength=A) / m
    p = np_softmax(logits[i])
    sem = np.sqrt(p * (1 - p) / m)
    np.testing.assert_array_less(np.abs(freq - p), 4 * sem + 1e-9)
    assert np.abs(np_softmax(prior_logits[i]) - p).max() > 20 * sem.max()  # the prior alone would be caught
