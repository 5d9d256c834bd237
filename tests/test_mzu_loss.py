"""MuZero Unplugged (mzu.py) and MZU-Q (mzu_q.py) as assembled: the loss against a hand computation on a
hand-made window (online and target networks differ; one row ends in a terminal state, one is truncated), its
gradients, the target network update by update, the learning-rate schedule and weight decay, and the defaults.

The hand computation calls the network's functions one by one and does the target and loss arithmetic in numpy
(its own value transform, two-hot and n-step returns), not with the scripts' helpers. The search is the one
expensive part: the policy and value targets come from a search written here, mctx.muzero_policy on the target
network with the paper's constants, and the hand-checked search case of tests/test_mzu.py pins mctx's use.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import mctx
import numpy as np
import optax
import pytest
from scripts import optimizer_of
from test_replay import synthetic_episodes

import mzu
import mzu_q
from common.networks import MuZeroNetwork
from common.replay import Window, make_store

SCRIPTS = {"mzu": mzu, "mzu_q": mzu_q}
NUM_ACTIONS, OBS_DIM, NUM_BINS = 3, 4, 11
K, TD = 2, 2  # unroll steps and n of the n-step return: windows of K + n + 1 = 5 steps
GAMMA = 0.8  # not the default, so that a missing or doubled discount shows
NUM_SIMULATIONS = 4
# MuZero's search constants (Schrittwieser et al. 2020), kept by the official MuZero Unplugged release:
# the learner's search mixes Dirichlet(0.3) noise into 25% of the root prior.
DIRICHLET_FRACTION, DIRICHLET_ALPHA, PB_C_INIT, PB_C_BASE = 0.25, 0.3, 1.25, 19652.0
TAU = 0.1  # MZU-Q's temperature (paper Section 4.2 (b))
LOSS_TAU = 0.5  # the loss tests' temperature: softer than 0.1, so that the prior's part of the target shows (and not 1)
VALUE_COEF, POLICY_COEF = 0.25, 0.5  # the paper's value weight; a policy weight that is not 1, so that it shows


def compile_once(jitted, *args):
    """`jitted` compiled for `args` without XLA's backend optimisations: each program here runs a few times on tiny
    inputs, and compiling it (the search above all) costs far more than running it."""
    return jitted.lower(*args).compile(compiler_options={"xla_backend_optimization_level": 0})


# ---------------------------------------------------------------------------------------------
# The categorical value representation, written out in numpy (paper Appendix A.2, MuZero Appendix F).
# ---------------------------------------------------------------------------------------------

EPS = 1e-3


def h(x):
    """h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x."""
    return np.sign(x) * (np.sqrt(np.abs(x) + 1.0) - 1.0) + EPS * x


def h_inverse(y, xp=np):
    """Solves h(x) = y: with u = sqrt(|x| + 1), eps u^2 + u - (|y| + 1 + eps) = 0, so |x| = u^2 - 1."""
    u = (-1.0 + xp.sqrt(1.0 + 4.0 * EPS * (xp.abs(y) + 1.0 + EPS))) / (2.0 * EPS)
    return xp.sign(y) * (u * u - 1.0)


def bins(num_bins):
    return np.arange(num_bins) - (num_bins - 1) / 2.0  # -5..5 for 11 bins


def target_distribution(x, num_bins=NUM_BINS):
    """Raw scalars x [...] -> [..., num_bins]: h(x) shared between its two nearest bins (a hat of width 1 per bin)."""
    y = np.clip(h(np.asarray(x, np.float64)), bins(num_bins)[0], bins(num_bins)[-1])
    return np.maximum(0.0, 1.0 - np.abs(y[..., None] - bins(num_bins)))


def decode(logits, xp=np):
    """Categorical logits [..., num_bins] -> raw scalar: h^-1 of the expected bin."""
    probs = xp.exp(logits - logits.max(-1, keepdims=True))
    probs = probs / probs.sum(-1, keepdims=True)
    return h_inverse((probs * bins(logits.shape[-1])).sum(-1), xp)


def cross_entropy(target, logits):
    """-sum_a p(a) log softmax(logits)(a) over the last axis, in float64."""
    logits = np.asarray(logits, np.float64)
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs = log_probs - np.log(np.exp(log_probs).sum(-1, keepdims=True))
    return -(target * log_probs).sum(-1)


def softmax(logits):
    e = np.exp(np.asarray(logits, np.float64) - np.max(logits, -1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# The case: a tiny network, online and target parameters drawn apart, and a hand-made window.
# ---------------------------------------------------------------------------------------------


def tiny_network():
    return MuZeroNetwork(
        num_actions=NUM_ACTIONS, num_bins=NUM_BINS, representation_layers=(6,), dynamics_layers=(8, 6), prediction_layers=(8,)
    )


def draw_params(network, seed, obs_dim=OBS_DIM, scale=0.8):
    """Every parameter (the zero-initialised heads too) drawn from N(0, scale^2) with numpy."""
    shapes = jax.eval_shape(network.init, jax.random.PRNGKey(0), jnp.zeros((1, obs_dim)), jnp.zeros((1,), jnp.int32))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), jnp.float32), shapes)


def hand_window():
    """Two windows of 5 steps (K = 2, n = 2), laid out as common/replay.py lays them out.

    Row 0: two transitions, the second ends the episode in a terminal state (discount 0): step 2 is terminal,
    steps 3-4 lie past the end (they repeat step 2's observation, no action, reward 0).
    Row 1: three transitions of an episode truncated at step 3 (its last, non-terminal state), repeated at step 4.
    """
    rng = np.random.default_rng(7)
    observation = rng.standard_normal((2, 5, OBS_DIM)).astype(np.float32)
    observation[0, 3] = observation[0, 4] = observation[0, 2]
    observation[1, 4] = observation[1, 3]
    return Window(
        observation=jnp.asarray(observation),
        action=jnp.array([[2, 0, 1, 1, 0], [1, 2, 0, 2, 1]], jnp.int32),
        reward=jnp.array([[0.7, -1.3, 0.0, 0.0, 0.0], [1.5, 0.4, -0.6, 0.0, 0.0]], jnp.float32),
        discount=jnp.array([[1.0, 0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0]], jnp.float32),
        has_action=jnp.array([[True, True, False, False, False], [True, True, True, False, False]]),
        absorbing=jnp.array([[False, False, True, True, True], [False, False, False, False, True]]),
    )


def script_args(script):
    args = script.Args(
        unroll_steps=K,
        td_steps=TD,
        discount=GAMMA,
        num_bins=NUM_BINS,
        num_simulations=NUM_SIMULATIONS,
        value_coef=VALUE_COEF,
        policy_coef=POLICY_COEF,
    )
    if script is mzu_q:
        args.temperature = LOSS_TAU
    return script.apply_env_defaults(args)


def make_reference_search(network):
    """Reanalyse written here: mctx.muzero_policy from observations [N, D], the model called by hand.

    Root: s = h(o) with f(s)'s prior logits and decoded value; each expansion s' = g(s, a) with f(s')'s decoded
    reward and value, discount gamma; Dirichlet noise at the root. Returns root statistics [N, ...].
    """

    def step_model(params, rng, action, embedding):
        next_state = network.apply(params, embedding, action, method=network.dynamics)
        prior_logits, value_logits, reward_logits = network.apply(params, next_state, method=network.predict)
        value = decode(value_logits, jnp)
        out = mctx.RecurrentFnOutput(
            reward=decode(reward_logits, jnp), discount=GAMMA * jnp.ones_like(value), prior_logits=prior_logits, value=value
        )
        return out, next_state

    def search(params, observation, key):
        state = network.apply(params, observation, method=network.represent)
        prior_logits, value_logits, _ = network.apply(params, state, method=network.predict)
        root = mctx.RootFnOutput(prior_logits=prior_logits, value=decode(value_logits, jnp), embedding=state)
        out = mctx.muzero_policy(
            params,
            key,
            root,
            step_model,
            NUM_SIMULATIONS,
            dirichlet_fraction=DIRICHLET_FRACTION,
            dirichlet_alpha=DIRICHLET_ALPHA,
            pb_c_init=PB_C_INIT,
            pb_c_base=PB_C_BASE,
        )
        summary = out.search_tree.summary()
        return {
            "prior_logits": prior_logits,
            "visit_counts": summary.visit_counts,
            "qvalues": summary.qvalues,
            "root_value": out.search_tree.node_values[:, 0],
        }

    return jax.jit(search)


@pytest.fixture(scope="module")
def case():
    """Network, online and target parameters, the window, the loss key and the reference search of the window's
    real observations with the target network (root statistics [B, L, ...], numpy)."""
    network = tiny_network()
    params, target_params = draw_params(network, 1), draw_params(network, 2)
    window = hand_window()
    key = jax.random.PRNGKey(11)
    B, L = window.action.shape
    # The script searches its B * L roots as one batch, in row-major order (the noise of root i is the i-th draw).
    roots = window.observation.reshape(B * L, OBS_DIM)
    found = compile_once(make_reference_search(network), target_params, roots, key)(target_params, roots, key)
    search = {name: np.asarray(x, np.float64).reshape((B, L) + x.shape[1:]) for name, x in found.items()}

    def network_outputs(params, target_params, observation, action):
        """The online unroll's f(s^k) and the target network's prior logits f(h(o))_pi at every real state."""
        target_state = network.apply(target_params, observation, method=network.represent)
        target_prior_logits = network.apply(target_params, target_state, method=network.predict)[0]  # [B, L, A]
        return online_unroll(network, params, observation, action), target_prior_logits

    unroll, target_prior_logits = jax.jit(network_outputs)(params, target_params, window.observation, window.action)
    # The hand loss's gradient w.r.t. the online parameters, targets given as constants (one compile for both scripts).
    hand_grad = jax.jit(jax.grad(lambda p, *inputs: hand_loss(network, p, window.observation, window.action, *inputs)))
    return {
        "network": network,
        "params": params,
        "target_params": target_params,
        "window": window,
        "key": key,
        "search": search,
        "hand_grad": hand_grad,
        "online": [np.asarray(x, np.float64) for x in unroll],
        "target_prior_logits": np.asarray(target_prior_logits, np.float64),
        "scripts": {},
    }


# ---------------------------------------------------------------------------------------------
# The hand computation.
# ---------------------------------------------------------------------------------------------


def hand_value_target(window, root_value):
    """z_{t+k}, k = 0..K, of the two rows of `hand_window` written out (Eq. 3, bootstrapped from the search value)."""
    r, g, v = np.asarray(window.reward, np.float64), GAMMA, root_value
    return np.array(
        [
            # Row 0: the second transition terminates, so no return bootstraps; step 2 is terminal (value 0).
            [r[0, 0] + g * r[0, 1], r[0, 1], 0.0],
            # Row 1: n = 2 steps, then the search value of s_{t+k+2}; from step 2 the return runs past the last state
            # (step 3) after one transition and bootstraps from it, repeated at step 4.
            [r[1, 0] + g * r[1, 1] + g * g * v[1, 2], r[1, 1] + g * r[1, 2] + g * g * v[1, 3], r[1, 2] + g * v[1, 4]],
        ]
    )


def hand_policy_target(script_name, window, search, target_prior_logits):
    """[B, K + 1, A]: MZU's root visit distribution, or MZU-Q's noise-free target prior times exp(completed Q / tau);
    uniform at absorbing steps."""
    visits = search["visit_counts"][:, : K + 1]
    if script_name == "mzu":
        target = visits / visits.sum(-1, keepdims=True)
    else:
        q = search["qvalues"][:, : K + 1]
        completed = np.where(visits > 0, q, search["root_value"][:, : K + 1, None])  # unvisited: the root's value
        weights = softmax(target_prior_logits[:, : K + 1]) * np.exp(completed / LOSS_TAU)
        target = weights / weights.sum(-1, keepdims=True)
    absorbing = np.asarray(window.absorbing)[:, : K + 1, None]
    return np.where(absorbing, 1.0 / NUM_ACTIONS, target)


def online_unroll(network, params, observation, action):
    """Algorithm 2's unroll with explicit calls: s^0 = h(o_t), s^{k+1} = g(s^k, a_{t+k}), with MuZero's halved
    gradient into the dynamics; f(s^k) for k = 0..K: policy [B, K+1, A], value and reward logits [B, K+1, bins]."""
    state = network.apply(params, observation[:, 0], method=network.represent)
    outputs = [network.apply(params, state, method=network.predict)]
    for k in range(K):
        halved = 0.5 * state + 0.5 * jax.lax.stop_gradient(state)
        state = network.apply(params, halved, action[:, k], method=network.dynamics)
        outputs.append(network.apply(params, state, method=network.predict))
    return [jnp.stack([out[i] for out in outputs], axis=1) for i in range(3)]


def hand_loss(network, params, observation, action, reward_dist, value_dist, policy_target):
    """Eq. 1 with cross-entropies, each term averaged over the batch and the unroll positions."""
    policy_logits, value_logits, reward_logits = online_unroll(network, params, observation, action)
    ce = lambda p, logits: -jnp.sum(p * jax.nn.log_softmax(logits), axis=-1)  # noqa: E731
    reward_loss = jnp.mean(ce(reward_dist, reward_logits[:, 1:]))  # r^{k+1} against the reward of transition k
    value_loss = jnp.mean(ce(value_dist, value_logits))
    policy_loss = jnp.mean(ce(policy_target, policy_logits))
    return reward_loss + VALUE_COEF * value_loss + POLICY_COEF * policy_loss


def hand_targets(script_name, case):
    """All targets as numpy arrays, from the reference search and the target network's prior."""
    window, search = case["window"], case["search"]
    z = hand_value_target(window, search["root_value"])  # [B, K + 1]
    return {
        "value": z,
        "policy": hand_policy_target(script_name, window, search, case["target_prior_logits"]),  # [B, K + 1, A]
        "reward": np.asarray(window.reward, np.float64)[:, :K],  # [B, K]
    }


def script_loss_grads(script_name, case):
    """The script's loss on the case: (metrics, gradient w.r.t. the online parameters, w.r.t. the target parameters),
    computed once per script (one compile) and kept in the case."""
    if script_name not in case["scripts"]:
        script = SCRIPTS[script_name]
        loss_fn = script.make_loss_fn(script_args(script), case["network"], NUM_ACTIONS)
        inputs = (case["params"], case["target_params"], case["window"], case["key"])
        (grads, target_grads), metrics = compile_once(jax.jit(jax.grad(loss_fn, argnums=(0, 1), has_aux=True)), *inputs)(
            *inputs
        )
        case["scripts"][script_name] = (jax.device_get(metrics), grads, target_grads)
    return case["scripts"][script_name]


# ---------------------------------------------------------------------------------------------
# 1. The assembled loss equals the hand computation.
# ---------------------------------------------------------------------------------------------


def test_the_case_covers_what_the_targets_must_handle(case):
    """Preconditions of the loss tests: targets that would change under the bugs they are meant to catch."""
    search = case["search"]
    visits = search["visit_counts"]
    np.testing.assert_allclose(visits.sum(-1), NUM_SIMULATIONS)
    # At some real root the search leaves an action unvisited (MZU-Q completes its Q with the root value) ...
    real = ~np.asarray(case["window"].absorbing)[:, : K + 1]
    assert np.any((visits[:, : K + 1] == 0) & real[..., None])
    # ... and the truncated row's root values of different states are far apart, so that bootstrapping from the
    # wrong step shows.
    assert np.min(np.abs(np.diff(search["root_value"][1, 1:4]))) > 1e-2
    # The visit distribution is not the uniform target of absorbing steps.
    assert np.max(np.abs(visits[:, : K + 1] / NUM_SIMULATIONS - 1 / NUM_ACTIONS)) > 0.1


@pytest.mark.parametrize("script_name", ["mzu", "mzu_q"])
def test_assembled_loss_equals_a_hand_computation(script_name, case):
    metrics, _, _ = script_loss_grads(script_name, case)
    targets, search = hand_targets(script_name, case), case["search"]
    policy_logits, value_logits, reward_logits = case["online"]  # [B, K + 1, ...]

    reward_loss = np.mean(cross_entropy(target_distribution(targets["reward"]), reward_logits[:, 1:]))  # [B, K]
    value_loss = np.mean(cross_entropy(target_distribution(targets["value"]), value_logits))  # [B, K + 1]
    policy_loss = np.mean(cross_entropy(targets["policy"], policy_logits))  # [B, K + 1]
    probs = softmax(policy_logits)
    expected = {
        "reward_loss": reward_loss,
        "value_loss": value_loss,
        "policy_loss": policy_loss,
        "loss": reward_loss + VALUE_COEF * value_loss + POLICY_COEF * policy_loss,
        "value_target": np.mean(targets["value"]),
        "root_value": np.mean(search["root_value"]),  # every root of the window, absorbing ones included
        "policy_entropy": np.mean(-np.sum(probs * np.log(probs), -1)),
    }
    assert set(expected) <= set(metrics)
    for name, value in expected.items():
        np.testing.assert_allclose(metrics[name], value, rtol=2e-5, atol=1e-6, err_msg=name)


def test_mzu_q_policy_target_is_not_the_visit_distribution(case):
    """The two scripts' policy terms differ on this case (so each test above checks its own target)."""
    mzu_target, mzu_q_target = hand_targets("mzu", case)["policy"], hand_targets("mzu_q", case)["policy"]
    assert np.max(np.abs(mzu_target - mzu_q_target)) > 0.05


# ---------------------------------------------------------------------------------------------
# 2. Gradients: through the online network only, as the hand loss with constant targets.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("script_name", ["mzu", "mzu_q"])
def test_gradient_reaches_the_online_network_only(script_name, case):
    _, grads, target_grads = script_loss_grads(script_name, case)
    # The targets (search, target network) carry no gradient at all.
    for leaf in jax.tree.leaves(target_grads):
        np.testing.assert_array_equal(leaf, 0.0)
    # The online gradient is that of the hand loss with the targets as constants.
    targets = hand_targets(script_name, case)
    dists = [jnp.asarray(target_distribution(targets[name]), jnp.float32) for name in ("reward", "value")]
    expected = case["hand_grad"](case["params"], *dists, jnp.asarray(targets["policy"], jnp.float32))
    for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6, err_msg=jax.tree_util.keystr(path))
    # Every part of the model learns: representation, dynamics and all three heads.
    for module in ("representation_net", "dynamics_net", "policy_head", "value_head", "reward_head"):
        assert max(float(np.abs(x).max()) for x in jax.tree.leaves(grads["params"][module])) > 1e-4, module


# ---------------------------------------------------------------------------------------------
# 3. The target network, update by update.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("script_name", ["mzu", "mzu_q"])
def test_target_network_is_the_online_network_of_the_last_multiple_of_the_interval(script_name):
    script = SCRIPTS[script_name]
    interval = 3
    args = script.apply_env_defaults(
        script.Args(
            unroll_steps=1,
            td_steps=1,
            num_bins=NUM_BINS,
            num_simulations=2,
            batch_size=2,
            learning_rate=1e-2,
            warmup_steps=1,
            target_update_interval=interval,
        )
    )
    network = tiny_network()
    store = make_store(synthetic_episodes([4, 6], terminal=[True, False]))  # observations [N, 3]
    params = draw_params(network, 5, obs_dim=3)  # drawn (not initialised): every parameter moves from the start
    optimizer = optimizer_of(script, args)
    seeds = lambda tree: jax.tree.map(lambda x: x[None], tree)  # noqa: E731  one seed: a leading axis of 1
    state = script.TrainState(
        params=seeds(params),
        target_params=seeds(jax.tree.map(jnp.copy, params)),
        opt_state=seeds(optimizer.init(params)),
        step=jnp.zeros((1,), jnp.int32),
        key=jax.random.PRNGKey(0)[None],
    )
    update = compile_once(script.make_train_chunk(args, network, optimizer, NUM_ACTIONS, 1), state, store)  # 1 update per call
    copy = lambda tree: jax.tree.map(np.array, tree)  # noqa: E731  (the update donates its input buffers)
    online = [copy(state.params)]
    np.testing.assert_equal(copy(state.target_params), online[0])
    for step in range(1, 2 * interval + 2):
        state, metrics = update(state, store)
        assert bool(np.all(metrics["finite"]))
        online.append(copy(state.params))
        target = copy(state.target_params)
        refreshed = interval * (step // interval)  # 0 (the initial network) before the first refresh
        np.testing.assert_equal(target, online[refreshed], err_msg=f"after update {step}")
        if step > 1:  # the first update runs at learning rate 0 (warm-up); every later one moves the network
            moved = [
                not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(online[step]), jax.tree.leaves(online[step - 1]))
            ]
            assert any(moved), step
    assert int(state.step[0]) == 2 * interval + 1


# ---------------------------------------------------------------------------------------------
# 4. The optimiser: learning-rate schedule and weight decay on kernels only.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("script_name", ["mzu", "mzu_q"])
def test_learning_rate_warms_up_linearly_then_decays_in_steps(script_name):
    script = SCRIPTS[script_name]
    lr, rate = 2e-3, 0.1
    args = script.Args(learning_rate=lr, warmup_steps=100, lr_decay_rate=rate, lr_decay_steps=1_000)
    schedule = script.make_learning_rate(args.learning_rate, args.warmup_steps, args.lr_decay_rate, args.lr_decay_steps)
    expected = {
        0: 0.0,
        1: lr / 100,
        50: lr / 2,
        99: lr * 0.99,  # linear warm-up from 0
        100: lr,
        101: lr,
        500: lr,
        999: lr,  # plateau: warm-up saturated, no decay yet
        1_000: lr * rate,
        1_999: lr * rate,  # first decay
        2_000: lr * rate**2,
        3_500: lr * rate**3,  # each later decay
    }
    for step, value in expected.items():
        np.testing.assert_allclose(float(schedule(step)), value, rtol=1e-5, atol=1e-12, err_msg=f"step {step}")


class DenseAndNorm(nn.Module):
    """A Dense layer and a LayerNorm (as in the Atari networks): a kernel, a bias, a scale and an offset, the kinds of
    parameter the scripts' networks have."""

    @nn.compact
    def __call__(self, x):
        return nn.LayerNorm()(nn.Dense(3)(x))


@pytest.mark.parametrize("script_name", ["mzu", "mzu_q"])
def test_weight_decay_moves_kernels_only(script_name):
    script = SCRIPTS[script_name]
    lr, wd = 0.1, 0.5
    args = script.Args(learning_rate=lr, weight_decay=wd, warmup_steps=1, lr_decay_steps=1_000)
    shapes = jax.eval_shape(DenseAndNorm().init, jax.random.PRNGKey(0), jnp.zeros((1, 2)))
    rng = np.random.default_rng(3)
    params = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape) + 1.0, jnp.float32), shapes)
    optimizer = optimizer_of(script, args)
    opt_state = optimizer.init(params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    update = jax.jit(optimizer.update)
    # Update 0 runs at learning rate 0 (the warm-up starts there); update 1 at the full rate.
    updates, opt_state = update(zeros, opt_state, params)
    for leaf in jax.tree.leaves(updates):
        np.testing.assert_array_equal(leaf, 0.0)
    updates, _ = update(zeros, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    names = set()
    for (path, old), new in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(new_params)):
        name = path[-1].key
        names.add(name)
        if name == "kernel":  # AdamW with zero gradients: w <- w - lr * wd * w
            np.testing.assert_allclose(new, old - lr * wd * old, rtol=1e-6, err_msg=jax.tree_util.keystr(path))
        else:  # biases, LayerNorm scales and offsets are not decayed
            np.testing.assert_array_equal(new, old, err_msg=jax.tree_util.keystr(path))
    assert names == {"kernel", "bias", "scale"}


# ---------------------------------------------------------------------------------------------
# The defaults are the paper's (Tables 3-4, Appendix D.2.2, Section 4.2 (b)).
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("script_name", ["mzu", "mzu_q"])
def test_defaults_are_the_papers_bsuite_settings(script_name):
    args = SCRIPTS[script_name].apply_env_defaults(SCRIPTS[script_name].Args())
    expected = {
        "discount": 0.997**4,
        "learning_rate": 7e-4,
        "weight_decay": 1e-4,
        "warmup_steps": 1_000,
        "lr_decay_rate": 0.1,
        "lr_decay_steps": 100_000,
        "max_grad_norm": 5.0,
        "target_update_interval": 200,
        "policy_coef": 1.0,
        "value_coef": 0.25,
        "unroll_steps": 5,
        "td_steps": 3,
        "num_bins": 20,
        "num_simulations": 4,
        "max_depth": None,
        "dirichlet_fraction": DIRICHLET_FRACTION,
        "dirichlet_alpha": DIRICHLET_ALPHA,
        "pb_c_init": PB_C_INIT,
        "pb_c_base": PB_C_BASE,
        "batch_size": 128,
    }
    if script_name == "mzu_q":
        expected["temperature"] = TAU
    assert {name: getattr(args, name) for name in expected} == expected
