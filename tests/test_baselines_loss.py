"""CRR, CQL and BC as assembled: each loss on a hand-made window against a step-by-step numpy computation, where
the gradient flows, the target networks' refresh, the optimisers and the acting rules.

The reference computations here use only the networks' `apply` and numpy (the value transform, two-hot encoding and
losses are written out again below), never the scripts' own helpers. Online and target parameters differ, so a loss
that reads the wrong set of parameters cannot pass.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scripts import optimizer_of

import bc
import cql
import crr
from common.episodes import Episodes
from common.networks import PolicyNetwork, QNetwork
from common.replay import Window, make_store

NUM_ACTIONS = 3
NUM_BINS = 20
OBS_DIM = 4
POLICY_NET = PolicyNetwork(num_actions=NUM_ACTIONS, representation_layers=(8,), prediction_layers=(8,))
Q_NET = QNetwork(
    num_actions=NUM_ACTIONS, num_bins=NUM_BINS, representation_layers=(8,), dynamics_layers=(8,), prediction_layers=(8,)
)

# ---------------------------------------------------------------------------------------------
# The hand-made data: 4 one-step windows (s, a, r, d, s') = observation[:, 0], action[:, 0], reward[:, 0],
# discount[:, 0], observation[:, 1]. Row 0 and 3 lie inside an episode; row 1 ends it in a terminal state (d = 0,
# the second step absorbing); row 2 ends a truncated episode (d = 1, bootstrap from the recorded last observation).
# The second step's action and reward differ from the first's, so reading the wrong step changes the loss.
# ---------------------------------------------------------------------------------------------

OBS = np.random.default_rng(7).standard_normal((4, 2, OBS_DIM)).astype(np.float32)  # [B, L = 2, D]
WINDOW = Window(
    observation=jnp.asarray(OBS),
    action=jnp.array([[1, 0], [0, 2], [2, 1], [1, 2]], jnp.int32),
    reward=jnp.array([[0.5, 0.7], [1.0, 0.0], [-0.3, 0.0], [0.2, -0.4]], jnp.float32),
    discount=jnp.array([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.0]], jnp.float32),
    has_action=jnp.array([[True, True], [True, False], [True, False], [True, True]]),
    absorbing=jnp.array([[False, False], [False, True], [False, False], [False, False]]),
)
ROWS = np.arange(4)
ACTION = np.asarray(WINDOW.action[:, 0])  # [B]
REWARD = np.asarray(WINDOW.reward[:, 0], np.float64)
DISCOUNT = np.asarray(WINDOW.discount[:, 0], np.float64)
S, S_NEXT = OBS[:, 0], OBS[:, 1]  # [B, D]


def draw_params(network, seed, scale=0.5):
    """Parameters of `network` drawn with numpy at the shapes `jax.eval_shape` gives (no compilation)."""
    shapes = jax.eval_shape(network.init, jax.random.PRNGKey(0), jnp.zeros((1, OBS_DIM)))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: (scale * rng.standard_normal(x.shape)).astype(np.float32), shapes)


def crr_params(seed):
    return {"policy": draw_params(POLICY_NET, seed + 10), "critic": draw_params(Q_NET, seed)}


# ---------------------------------------------------------------------------------------------
# The value transform, two-hot encoding and categorical losses, written out in numpy (float64).
# ---------------------------------------------------------------------------------------------

EPS = 1e-3
BINS = np.arange(NUM_BINS) - (NUM_BINS - 1) / 2  # -9.5, -8.5, ..., 9.5


def h(x):
    return np.sign(x) * (np.sqrt(np.abs(x) + 1) - 1) + EPS * x


def h_inverse(z, xp=np):
    """Solve z = h(x): for x >= 0, u = sqrt(x + 1) solves EPS u^2 + u - (1 + EPS + z) = 0, and h is odd."""
    u = (xp.sqrt(1 + 4 * EPS * (xp.abs(z) + 1 + EPS)) - 1) / (2 * EPS)
    return xp.sign(z) * (u**2 - 1)


def softmax(logits):
    logits = np.asarray(logits, np.float64)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def log_softmax(logits):
    return np.log(softmax(logits))


def expected_bin(q_logits):
    """Categorical logits [..., N] -> the expected bin value in h-space [...]."""
    return (softmax(q_logits) * BINS).sum(-1)


def decoded_q(q_logits):
    """Categorical logits [..., N] -> Q in return units, h^-1 of the expected bin value."""
    return h_inverse(expected_bin(q_logits))


def two_hot_of_return(y):
    """Returns y [B] -> the two-hot distribution [B, N] of h(y) over the bins (clipped to the support)."""
    pos = np.clip(h(y), BINS[0], BINS[-1]) - BINS[0]
    out = np.zeros((len(y), NUM_BINS))
    for j, p in enumerate(pos):
        low = int(np.floor(p))
        out[j, low] += 1 - (p - low)
        out[j, min(low + 1, NUM_BINS - 1)] += p - low
    return out


def entropy(probs):
    return -(probs * np.log(probs + 1e-12)).sum(-1)


def apply(network, params, observation):
    return np.asarray(network.apply(params, jnp.asarray(observation)), np.float64)


def assert_metrics(metrics, expected):
    assert set(metrics) == set(expected), sorted(set(metrics) ^ set(expected))
    for name, value in expected.items():
        np.testing.assert_allclose(float(metrics[name]), value, rtol=2e-5, atol=2e-5, err_msg=name)


def zero_tree(tree):
    return all(not np.any(np.asarray(x)) for x in jax.tree.leaves(tree))


def assert_trees_close(got, want, tol=1e-3):
    """Leaf by leaf within `tol` of the largest entry of `want` (float32 decoding through h^-1 loses ~4 digits)."""
    scale = max(float(np.max(np.abs(w))) for w in jax.tree.leaves(want))
    for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * scale, err_msg=jax.tree_util.keystr(path))


def tree_norm(tree):
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(x, np.float64))) for x in jax.tree.leaves(tree))))


# ---------------------------------------------------------------------------------------------
# CRR
# ---------------------------------------------------------------------------------------------

CRR_FLAGS = dict(discount=0.9, beta=0.5, max_weight=1.5, critic_coef=0.7, policy_coef=1.3, num_bins=NUM_BINS)


def crr_by_hand(weighting, baseline, params, target_params):
    """CRR's loss and metrics on WINDOW, step by step (paper of Wang et al. Eq. 3-4, docs/crr.md)."""
    gamma, beta, max_weight = CRR_FLAGS["discount"], CRR_FLAGS["beta"], CRR_FLAGS["max_weight"]
    # Target networks: Q'(s, .), Q'(s', .) and pi'(.|s').
    q_target_s = decoded_q(apply(Q_NET, target_params["critic"], S))  # [B, A]
    q_target_next = decoded_q(apply(Q_NET, target_params["critic"], S_NEXT))  # [B, A]
    pi_target_next = softmax(apply(POLICY_NET, target_params["policy"], S_NEXT))  # [B, A]
    # y = r + gamma * d * sum_a' pi'(a'|s') Q'(s', a'); no bootstrap after the terminal row.
    y = REWARD + gamma * DISCOUNT * (pi_target_next * q_target_next).sum(-1)  # [B]
    # Online networks at s.
    policy_logits = apply(POLICY_NET, params["policy"], S)  # [B, A]
    pi = softmax(policy_logits)
    q_logits = apply(Q_NET, params["critic"], S)  # [B, A, N]
    # A = Q'(s, a) - V(s), V from the online policy's mean of Q' or the max of Q'.
    value = (pi * q_target_s).sum(-1) if baseline == "mean" else q_target_s.max(-1)
    adv = q_target_s[ROWS, ACTION] - value  # [B]
    weights = (adv > 0).astype(np.float64) if weighting == "binary" else np.minimum(np.exp(adv / beta), max_weight)
    critic_loss = np.mean(-(two_hot_of_return(y) * log_softmax(q_logits[ROWS, ACTION])).sum(-1))
    policy_loss = -np.mean(weights * log_softmax(policy_logits)[ROWS, ACTION])
    total = CRR_FLAGS["critic_coef"] * critic_loss + CRR_FLAGS["policy_coef"] * policy_loss
    metrics = {
        "loss": total,
        "critic_loss": critic_loss,
        "policy_loss": policy_loss,
        "q_data": np.mean(decoded_q(q_logits)[ROWS, ACTION]),
        "critic_target": np.mean(y),
        "advantage": np.mean(adv),
        "weight": np.mean(weights),
        "positive_advantage_rate": np.mean(adv > 0),
        "policy_entropy": np.mean(entropy(pi)),
    }
    return metrics, dict(y=y, adv=adv, weights=weights, q_target_s=q_target_s)


def crr_loss_fn(weighting, baseline):
    args = crr.apply_env_defaults(crr.Args(weighting=weighting, advantage_baseline=baseline, **CRR_FLAGS))
    return crr.make_loss_fn(args, POLICY_NET, Q_NET)


@pytest.mark.parametrize("weighting", ["exp", "binary"])
@pytest.mark.parametrize("baseline", ["mean", "max"])
def test_crr_loss_and_metrics_equal_a_step_by_step_computation(weighting, baseline):
    params, target_params = crr_params(1), crr_params(2)
    loss, metrics = crr_loss_fn(weighting, baseline)(params, target_params, WINDOW)
    expected, parts = crr_by_hand(weighting, baseline, params, target_params)
    assert_metrics(metrics, expected)
    np.testing.assert_allclose(float(loss), expected["loss"], rtol=2e-5)

    # The case exercises what the flags change: the data action is Q'-greedy in some row (A = 0 under max:
    # 1[A > 0] gives 0 there, exp gives 1) and not in others; under mean some exp weights hit the cap, some do not.
    greedy = parts["q_target_s"].argmax(-1) == ACTION
    assert greedy.any() and not greedy.all()
    if baseline == "mean":
        assert 0 < np.sum(parts["adv"] > 0) < 4
        capped = parts["adv"] / CRR_FLAGS["beta"] > np.log(CRR_FLAGS["max_weight"])
        assert capped.any() and not capped.all()
    # A truncated row bootstraps (y != r), a terminal row does not (y == r).
    np.testing.assert_allclose(parts["y"][1], REWARD[1])
    assert abs(parts["y"][2] - REWARD[2]) > 0.1


def test_crr_gradient_reaches_only_the_online_networks_with_the_critic_target_and_weights_constant():
    params, target_params = crr_params(1), crr_params(2)
    loss_fn = crr_loss_fn("exp", "mean")
    # The same loss with y and f(A) as numpy constants from the step-by-step computation.
    _, parts = crr_by_hand("exp", "mean", params, target_params)
    target_probs, weights = jnp.asarray(two_hot_of_return(parts["y"]), jnp.float32), jnp.asarray(parts["weights"], jnp.float32)

    def constant_target_loss(p):
        data_logits = Q_NET.apply(p["critic"], jnp.asarray(S))[ROWS, ACTION]  # [B, N]
        critic_loss = jnp.mean(-jnp.sum(target_probs * jax.nn.log_softmax(data_logits), -1))
        log_pi = jax.nn.log_softmax(POLICY_NET.apply(p["policy"], jnp.asarray(S)))[ROWS, ACTION]
        return CRR_FLAGS["critic_coef"] * critic_loss - CRR_FLAGS["policy_coef"] * jnp.mean(weights * log_pi)

    @jax.jit
    def gradients(params, target_params):
        return jax.grad(lambda p, t: loss_fn(p, t, WINDOW)[0], argnums=(0, 1))(params, target_params), jax.grad(
            constant_target_loss
        )(params)

    (grad_online, grad_target), expected = gradients(params, target_params)
    assert zero_tree(grad_target)
    assert tree_norm(expected["policy"]) > 1e-2 and tree_norm(expected["critic"]) > 1e-2
    assert_trees_close(grad_online, expected)


# ---------------------------------------------------------------------------------------------
# CQL
# ---------------------------------------------------------------------------------------------

CQL_FLAGS = dict(discount=0.9, alpha=0.5, num_bins=NUM_BINS, n_step=1)  # 1-step: WINDOW holds 2 steps


def cql_by_hand(penalty_space, double_q, params, target_params):
    """CQL(H)'s loss and metrics on WINDOW, step by step (docs/cql.md)."""
    gamma = CQL_FLAGS["discount"]
    q_target_next = decoded_q(apply(Q_NET, target_params, S_NEXT))  # [B, A]
    q_online_next = decoded_q(apply(Q_NET, params, S_NEXT))  # [B, A]
    # a* = argmax of Q'(s', .) (or of the online Q(s', .) with double Q), valued by Q'.
    next_action = (q_online_next if double_q else q_target_next).argmax(-1)
    y = REWARD + gamma * DISCOUNT * q_target_next[ROWS, next_action]  # [B]
    q_logits = apply(Q_NET, params, S)  # [B, A, N]
    q = decoded_q(q_logits)  # [B, A]
    td_loss = np.mean(-(two_hot_of_return(y) * log_softmax(q_logits[ROWS, ACTION])).sum(-1))
    z = expected_bin(q_logits) if penalty_space == "transformed" else q  # the values the penalty acts on
    penalty = np.mean(np.log(np.exp(z).sum(-1)) - z[ROWS, ACTION])
    metrics = {
        "loss": td_loss + CQL_FLAGS["alpha"] * penalty,
        "td_loss": td_loss,
        "cql_penalty": penalty,
        "td_target": np.mean(y),
        "q_data": np.mean(q[ROWS, ACTION]),
        "q_max": np.mean(q.max(-1)),
        "greedy_is_data_action": np.mean(q.argmax(-1) == ACTION),
    }
    return metrics, dict(y=y, q_target_next=q_target_next, q_online_next=q_online_next, q=q)


def cql_loss_fn(penalty_space, double_q):
    args = cql.apply_env_defaults(cql.Args(penalty_space=penalty_space, double_q=double_q, **CQL_FLAGS))
    return cql.make_loss_fn(args, Q_NET)


@pytest.mark.parametrize("penalty_space", ["transformed", "raw"])
@pytest.mark.parametrize("double_q", [False, True])
def test_cql_loss_and_metrics_equal_a_step_by_step_computation(penalty_space, double_q):
    params, target_params = draw_params(Q_NET, 1), draw_params(Q_NET, 2)
    loss, metrics = cql_loss_fn(penalty_space, double_q)(params, target_params, WINDOW)
    expected, parts = cql_by_hand(penalty_space, double_q, params, target_params)
    assert_metrics(metrics, expected)
    np.testing.assert_allclose(float(loss), expected["loss"], rtol=2e-5)
    # The two next-action rules disagree on a bootstrapped row, the greedy action is the data's in some rows only,
    # and the penalty spaces differ: every flag changes the loss on this window.
    bootstrapped = DISCOUNT > 0
    assert np.any((parts["q_online_next"].argmax(-1) != parts["q_target_next"].argmax(-1)) & bootstrapped)
    assert 0 < expected["greedy_is_data_action"] < 1
    np.testing.assert_allclose(parts["y"][1], REWARD[1])


@pytest.mark.parametrize("penalty_space, double_q", [("transformed", False), ("raw", True)])
def test_cql_gradient_is_the_td_gradient_plus_alpha_times_the_penalty_gradient(penalty_space, double_q):
    params, target_params = draw_params(Q_NET, 1), draw_params(Q_NET, 2)
    loss_fn = cql_loss_fn(penalty_space, double_q)
    # TD loss against the constant target y, and the penalty, each differentiated on its own.
    _, parts = cql_by_hand(penalty_space, double_q, params, target_params)
    target_probs = jnp.asarray(two_hot_of_return(parts["y"]), jnp.float32)
    bins = jnp.asarray(BINS, jnp.float32)

    def td_loss(p):
        data_logits = Q_NET.apply(p, jnp.asarray(S))[ROWS, ACTION]  # [B, N]
        return jnp.mean(-jnp.sum(target_probs * jax.nn.log_softmax(data_logits), -1))

    def penalty(p):
        z = jnp.sum(jax.nn.softmax(Q_NET.apply(p, jnp.asarray(S))) * bins, -1)  # [B, A], h-space
        z = z if penalty_space == "transformed" else h_inverse(z, jnp)
        return jnp.mean(jax.nn.logsumexp(z, -1) - z[ROWS, ACTION])

    @jax.jit
    def gradients(params, target_params):
        of_loss = jax.grad(lambda p, t: loss_fn(p, t, WINDOW)[0], argnums=(0, 1))(params, target_params)
        return of_loss, jax.grad(td_loss)(params), jax.grad(penalty)(params)

    (grad_online, grad_target), grad_td, grad_penalty = gradients(params, target_params)
    assert zero_tree(grad_target)
    # Not vacuous: the penalty's gradient is a sizeable part of the total (stopping it must change the result).
    assert tree_norm(grad_penalty) > 0.05 * tree_norm(grad_td) > 0
    expected = jax.tree.map(lambda a, b: a + CQL_FLAGS["alpha"] * b, grad_td, grad_penalty)
    assert_trees_close(grad_online, expected)


def test_cql_n_step_target_sums_the_data_rewards_and_stops_at_a_terminal_transition():
    gamma = 0.9
    reward = jnp.array([[1.0, 2.0, 3.0], [1.0, 5.0, 0.0], [2.0, 0.0, 0.0]])
    # Row 1 ends in a terminal state after its second reward; row 2's episode is cut after one step
    # (past its end: reward 0, discount 1, the last observation repeated, so it bootstraps from there).
    discount = jnp.array([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    target_next_q = jnp.array([[1.0, 4.0], [7.0, 2.0], [3.0, 5.0]])
    y = cql.td_target(reward, discount, target_next_q, gamma)
    expected = [1 + 0.9 * 2 + 0.81 * 3 + 0.729 * 4, 1 + 0.9 * 5, 2 + 0.729 * 5]
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-6)
    # One step is the one-step backup; double DQN takes a* from the online values.
    np.testing.assert_allclose(
        np.asarray(cql.td_target(reward[:, :1], discount[:, :1], target_next_q, gamma)), [4.6, 7.3, 6.5]
    )
    online = jnp.array([[9.0, 0.0], [0.0, 9.0], [9.0, 0.0]])
    y_double = cql.td_target(reward[:, :1], discount[:, :1], target_next_q, gamma, online)
    np.testing.assert_allclose(np.asarray(y_double), [1.9, 2.8, 4.7], rtol=1e-6)


def test_cql_loss_with_n_steps_bootstraps_from_the_nth_observation():
    n, gamma = 2, CQL_FLAGS["discount"]
    rng = np.random.default_rng(3)
    window = Window(
        observation=jnp.asarray(rng.standard_normal((4, n + 1, OBS_DIM)), jnp.float32),
        action=jnp.array([[1, 0, 2], [0, 2, 1], [2, 1, 0], [1, 2, 2]], jnp.int32),
        reward=jnp.array([[0.5, 0.7, 0.1], [1.0, 0.3, 0.0], [-0.3, 0.2, 0.0], [0.2, -0.4, 0.9]], jnp.float32),
        discount=jnp.array([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], jnp.float32),
        has_action=jnp.ones((4, n + 1), bool),
        absorbing=jnp.zeros((4, n + 1), bool),
    )
    params, target_params = draw_params(Q_NET, 1), draw_params(Q_NET, 2)
    args = cql.apply_env_defaults(cql.Args(**{**CQL_FLAGS, "n_step": n}))
    _, metrics = cql.make_loss_fn(args, Q_NET)(params, target_params, window)
    obs, r, d = np.asarray(window.observation), np.asarray(window.reward, np.float64), np.asarray(window.discount, np.float64)
    q_next = decoded_q(apply(Q_NET, target_params, obs[:, n]))  # [B, A] at s_n
    y = r[:, 0] + gamma * d[:, 0] * r[:, 1] + gamma**2 * d[:, 0] * d[:, 1] * q_next.max(-1)
    action = np.asarray(window.action[:, 0])
    q_logits = apply(Q_NET, params, obs[:, 0])
    td_loss = np.mean(-(two_hot_of_return(y) * log_softmax(q_logits[ROWS, action])).sum(-1))
    np.testing.assert_allclose(float(metrics["td_target"]), np.mean(y), rtol=2e-5)
    np.testing.assert_allclose(float(metrics["td_loss"]), td_loss, rtol=2e-5)


# ---------------------------------------------------------------------------------------------
# BC
# ---------------------------------------------------------------------------------------------

BC_WINDOW = jax.tree.map(lambda x: x[:, :1], WINDOW)  # one-step windows: (s, a_data)


def test_bc_loss_and_metrics_equal_a_step_by_step_computation_and_its_gradient():
    params = draw_params(POLICY_NET, 11)
    loss_fn = bc.make_loss_fn(POLICY_NET)
    (loss, metrics), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params, BC_WINDOW)
    logits = apply(POLICY_NET, params, S)  # [B, A]
    nll = -np.mean(log_softmax(logits)[ROWS, ACTION])
    accuracy = np.mean(logits.argmax(-1) == ACTION)
    assert 0 < accuracy < 1
    assert_metrics(
        metrics, {"loss": nll, "policy_loss": nll, "accuracy": accuracy, "policy_entropy": np.mean(entropy(softmax(logits)))}
    )
    np.testing.assert_allclose(float(loss), nll, rtol=2e-5)

    def nll_loss(p):
        return -jnp.mean(jax.nn.log_softmax(POLICY_NET.apply(p, jnp.asarray(S)))[ROWS, ACTION])

    expected = jax.jit(jax.grad(nll_loss))(params)
    assert tree_norm(expected) > 1e-2
    assert_trees_close(grads, expected)


# ---------------------------------------------------------------------------------------------
# Target networks: a hard copy of the online networks every --target-update-interval updates.
# ---------------------------------------------------------------------------------------------


def tiny_store():
    """Three short episodes of 4-dim observations (the second truncated) as a device store."""
    rng = np.random.default_rng(3)
    cols = {name: [] for name in Episodes._fields}
    for length, terminal in ((3, True), (4, False), (2, True)):
        for i in range(length + 1):
            last = i == length
            cols["observation"].append(rng.standard_normal(OBS_DIM))
            cols["action"].append(0 if last else int(rng.integers(NUM_ACTIONS)))
            cols["reward"].append(0.0 if last else float(rng.uniform(-1, 1)))
            cols["discount"].append(0.0 if last or (terminal and i == length - 1) else 1.0)
            cols["is_first"].append(i == 0)
            cols["is_last"].append(last)
            cols["is_terminal"].append(last and terminal)
    dtypes = dict(observation=np.float32, action=np.int32, reward=np.float32, discount=np.float32)
    return make_store(Episodes(**{k: np.asarray(v, dtypes.get(k, bool)) for k, v in cols.items()}))


def cql_one_update_per_call(interval):
    """(a training state of one seed from random parameters, a jitted function running one CQL update per call)."""
    args = cql.apply_env_defaults(cql.Args(batch_size=4, warmup_steps=1, target_update_interval=interval, num_bins=NUM_BINS))
    params = draw_params(Q_NET, 1)
    optimizer = optimizer_of(cql, args)
    state = cql.TrainState(
        params=params,
        target_params=jax.tree.map(np.copy, params),
        opt_state=optimizer.init(params),
        step=jnp.int32(0),
        key=jax.random.PRNGKey(0),
    )
    state = jax.tree.map(lambda x: jnp.asarray(x)[None], state)  # a leading seed axis of 1, as init_train_states gives
    return state, cql.make_train_chunk(args, Q_NET, optimizer, NUM_ACTIONS, 1)


def same_tree(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_cql_target_is_the_online_network_of_the_last_multiple_of_the_interval():
    # CRR's target networks are checked the same way in tests/test_crr.py
    # (test_target_networks_are_hard_copies_every_interval).
    state, update = cql_one_update_per_call(interval=3)
    store = tiny_store()
    online = [jax.device_get(state.params)]  # online[k]: the online networks after k updates
    assert same_tree(jax.device_get(state.target_params), online[0])
    for k in range(1, 8):
        state, metrics = update(state, store)
        assert bool(np.all(metrics["finite"]))
        online.append(jax.device_get(state.params))
        # After update k the target holds the online networks of update 3 * floor(k / 3) (the initial ones before 3).
        target = jax.device_get(state.target_params)
        assert same_tree(target, online[3 * (k // 3)]), f"after update {k}"
    assert int(state.step[0]) == 7
    # Not vacuous: from update 2 on (the first runs at learning rate 0) every update moves the online networks,
    # so a target refreshed at any other update would differ.
    assert all(not same_tree(online[k], online[k - 1]) for k in range(2, 8))


# ---------------------------------------------------------------------------------------------
# Optimisers: the learning-rate schedule, AdamW with decay on kernels only, gradient clipping.
# ---------------------------------------------------------------------------------------------

MODULES = {"crr": crr, "cql": cql, "bc": bc}


def script_params(name):
    """Random parameters of each script's networks (CRR: actor and critic under one optimiser)."""
    if name == "crr":
        return crr_params(5)
    return draw_params(Q_NET if name == "cql" else POLICY_NET, 5)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_learning_rate_warms_up_linearly_then_decays_in_steps(name):
    module = MODULES[name]
    args = module.Args(learning_rate=0.01, warmup_steps=10, lr_decay_rate=0.5, lr_decay_steps=40)
    schedule = module.make_learning_rate(args.learning_rate, args.warmup_steps, args.lr_decay_rate, args.lr_decay_steps)
    # eta_t = 0.01 * min(1, t / 10) * 0.5 ** floor(t / 40), by hand:
    expected = {
        0: 0.0,
        1: 0.001,
        5: 0.005,
        9: 0.009,  # warm-up
        10: 0.01,
        11: 0.01,
        25: 0.01,
        39: 0.01,  # end of warm-up and plateau
        40: 0.005,
        41: 0.005,
        79: 0.005,  # first decay
        80: 0.0025,
        119: 0.0025,
        120: 0.00125,
    }  # second and third
    for step, lr in expected.items():
        np.testing.assert_allclose(float(schedule(jnp.asarray(step, jnp.int32))), lr, rtol=1e-6, atol=1e-12, err_msg=step)


def is_kernel(path):
    return jax.tree_util.keystr(path[-1:]) == "['kernel']"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_adamw_decays_kernels_only_and_matches_clipped_adamw_written_out(name):
    module = MODULES[name]
    params = script_params(name)
    paths = [path for path, _ in jax.tree_util.tree_leaves_with_path(params)]
    assert any(map(is_kernel, paths)) and not all(map(is_kernel, paths))
    if name == "crr":  # one optimiser over both networks: each has kernels and biases
        assert {jax.tree_util.keystr(p[:1]) for p in paths if is_kernel(p)} == {"['policy']", "['critic']"}

    # AdamW (b1 0.9, b2 0.999, eps 1e-8) at eta_t = 0.1 * min(1, t / 2) * 0.5 ** floor(t / 2), weight decay 0.05 and
    # clipping at a global norm of 2.
    args = module.Args(
        learning_rate=0.1, weight_decay=0.05, warmup_steps=2, lr_decay_rate=0.5, lr_decay_steps=2, max_grad_norm=2.0
    )
    optimizer = optimizer_of(module, args)
    update = jax.jit(optimizer.update)

    # Zero gradients: the first update runs at learning rate 0 (nothing moves); the second, at eta_1 = 0.05, moves
    # every kernel by exactly -eta * wd * w and leaves every bias.
    zeros = jax.tree.map(np.zeros_like, params)
    updates, opt_state = update(zeros, optimizer.init(params), params)
    assert zero_tree(updates)
    updates, _ = update(zeros, opt_state, params)
    for path, u in jax.tree_util.tree_leaves_with_path(updates):
        w = np.asarray(params_at(params, path), np.float64)
        np.testing.assert_allclose(u, -0.05 * 0.05 * w if is_kernel(path) else 0.0 * w, rtol=1e-6, atol=0, err_msg=str(path))

    # Three updates with gradients of global norm 40, 0.3 and 10 against AdamW written out.
    rng = np.random.default_rng(9)
    leaves, tree = jax.tree.flatten(params)
    grads = []
    for norm in (40.0, 0.3, 10.0):
        g = [rng.standard_normal(x.shape) for x in leaves]
        total = np.sqrt(sum(np.sum(x**2) for x in g))
        grads.append([(x * norm / total).astype(np.float32) for x in g])
    opt_state, current = optimizer.init(params), params
    w = [np.asarray(x, np.float64) for x in leaves]
    m, v = [np.zeros_like(x) for x in w], [np.zeros_like(x) for x in w]
    kernel = [is_kernel(p) for p in paths]
    for t, g in enumerate(grads):
        updates, opt_state = update(jax.tree.unflatten(tree, g), opt_state, current)
        current = jax.tree.map(lambda p, u: p + u, current, updates)
        g = [x.astype(np.float64) for x in g]
        scale = min(1.0, 2.0 / np.sqrt(sum(np.sum(x**2) for x in g)))  # clipped to norm 2: 1/20, 1, 1/5
        eta = 0.1 * min(1.0, t / 2) * 0.5 ** (t // 2)  # 0, 0.05, 0.05
        for i in range(len(w)):
            m[i] = 0.9 * m[i] + 0.1 * scale * g[i]
            v[i] = 0.999 * v[i] + 0.001 * (scale * g[i]) ** 2
            step = (m[i] / (1 - 0.9 ** (t + 1))) / (np.sqrt(v[i] / (1 - 0.999 ** (t + 1))) + 1e-8)
            w[i] = w[i] - eta * (step + (0.05 * w[i] if kernel[i] else 0.0))
    for path, got, want in zip(paths, jax.tree.leaves(current), w):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=str(path))


def params_at(params, path):
    for key in path:
        params = params[key.key]
    return params


# ---------------------------------------------------------------------------------------------
# Acting: CQL greedy on Q; BC and CRR sample from pi by default, argmax with --eval-greedy.
# ---------------------------------------------------------------------------------------------


def stack(trees):
    return jax.tree.map(lambda *x: np.stack(x), *trees)


def test_cql_acts_greedily_on_the_decoded_q_whatever_the_key():
    seeds_params = [draw_params(Q_NET, 1), draw_params(Q_NET, 2)]  # two seeds, vmapped
    observation = np.random.default_rng(4).standard_normal((2, 6, OBS_DIM)).astype(np.float32)  # [S, E, D]
    q = np.stack([decoded_q(apply(Q_NET, p, o)) for p, o in zip(seeds_params, observation)])  # [S, E, A]
    act = cql.make_act(Q_NET)
    for k in range(4):
        actions = act(stack(seeds_params), jnp.asarray(observation), jax.random.split(jax.random.PRNGKey(k), 2))
        np.testing.assert_array_equal(actions, q.argmax(-1))
    # Not vacuous: sampling from softmax(Q) would give the argmax in all 4 x 12 draws with probability below 1e-3,
    # and the greedy action is not the same everywhere (so argmin or a fixed action differ somewhere).
    assert np.prod(softmax(q).max(-1)) ** 4 < 1e-3
    assert len(np.unique(q.argmax(-1))) > 1


def fixed_policy(log_probs, seed):
    """PolicyNetwork parameters whose logits are `log_probs` whatever the observation (output kernel 0, bias set)."""
    params = draw_params(POLICY_NET, seed)
    params["params"]["Dense_0"] = {
        "kernel": np.zeros_like(params["params"]["Dense_0"]["kernel"]),
        "bias": np.log(np.asarray(log_probs, np.float32)),
    }
    return params


PROBS = np.array([[0.6, 0.3, 0.1], [0.15, 0.25, 0.6]])  # pi(.|s) of two seeds, the same at every state


@pytest.mark.parametrize("name", ["bc", "crr"])
def test_policy_acting_samples_from_pi_by_default_and_takes_its_argmax_when_greedy(name):
    module = MODULES[name]
    policies = [fixed_policy(PROBS[0], 1), fixed_policy(PROBS[1], 2)]
    if name == "crr":  # the critic, whose greedy action varies with the state, plays no part in acting
        params = stack([{"policy": p, "critic": draw_params(Q_NET, i)} for i, p in enumerate(policies)])
    else:
        params = stack(policies)
    num_states = 4000
    observation = jnp.asarray(np.random.default_rng(5).standard_normal((2, num_states, OBS_DIM)), jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)

    assert module.Args().eval_greedy is False  # sampling is the documented default
    sample = module.make_act(POLICY_NET, module.Args().eval_greedy)
    actions = np.asarray(sample(params, observation, keys))  # [S, E]
    frequencies = np.stack([np.bincount(a, minlength=NUM_ACTIONS) / num_states for a in actions])
    np.testing.assert_allclose(frequencies, PROBS, atol=5 * np.sqrt(0.25 / num_states))  # 5 standard errors
    assert not np.array_equal(actions, np.asarray(sample(params, observation, jax.random.split(jax.random.PRNGKey(1), 2))))

    greedy = module.make_act(POLICY_NET, module.Args(eval_greedy=True).eval_greedy)
    np.testing.assert_array_equal(
        greedy(params, observation, keys), np.broadcast_to(PROBS.argmax(-1)[:, None], (2, num_states))
    )
