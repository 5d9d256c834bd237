"""Shapes, initial outputs, action dependence, bfloat16 compute and weight-decay masks of common/networks.py.

Shapes are checked with `jax.eval_shape` (tracing only); numbers come from one module-wide set of
parameters per Atari network. Inits run eagerly with the cheaper "unsafe_rbg" key: on CPU,
compiling a jitted threefry init is dominated by the random initialisers (about 10 s a network),
while eager inits share their compiled ops, so the second and third networks cost little. The
properties checked do not depend on the random values.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.networks import (
    AtariMuZeroNetwork,
    AtariPolicyNetwork,
    AtariQNetwork,
    AtariTorso,
    MuZeroNetwork,
    PolicyNetwork,
    QNetwork,
    StridedResBlock,
    compute_dtype,
    logits_to_scalar,
    resolve_compute_dtype,
    weight_decay_mask,
)

A = 4  # actions
BINS = 601
FRAMES = (84, 84, 4)
HIDDEN = (6, 6, 64)
LAYOUTS = [(2,), (2, 3)]  # [B] and [B, L] leading dims


def frames(lead, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 256, lead + FRAMES), jnp.uint8)


def shape_of(fn, *args):
    return jax.tree.map(lambda s: s.shape, jax.eval_shape(fn, *args))


def init_key():
    return jax.random.key(0, impl="unsafe_rbg")


def perturb(params, scale=0.05, seed=1):
    """Adds N(0, scale^2) noise to every parameter, so zero-initialised output layers say something."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: p + scale * jnp.asarray(rng.normal(size=p.shape), p.dtype), params)


@pytest.fixture(scope="module")
def muzero():
    net = AtariMuZeroNetwork(num_actions=A)
    return net, net.init(init_key(), frames((1,)), jnp.zeros((1,), jnp.int32))


@pytest.fixture(scope="module")
def policy():
    net = AtariPolicyNetwork(num_actions=A)
    return net, net.init(init_key(), frames((1,)))


@pytest.fixture(scope="module")
def critic():
    net = AtariQNetwork(num_actions=A)
    return net, net.init(init_key(), frames((1,)))


@functools.partial(jax.jit, static_argnums=0)
def run_model(net, params, observation, action):
    """s = h(o), s' = g(s, a), and f on both: every function of the model in one compiled call."""
    state = net.apply(params, observation, method=net.represent)
    next_state = net.apply(params, state, action, method=net.dynamics)
    return state, next_state, net.apply(params, state, method=net.predict), net.apply(params, next_state, method=net.predict)


@functools.partial(jax.jit, static_argnums=0)
def run_net(net, params, observation):
    """A policy or Q network's output, compiled once per network and input shape."""
    return net.apply(params, observation)


# --- Atari shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize("lead", [()] + LAYOUTS)
def test_atari_muzero_methods_keep_leading_dims_and_hidden_state_is_6x6x64(muzero, lead):
    net, params = muzero
    state = shape_of(lambda p, o: net.apply(p, o, method=net.represent), params, frames(lead))
    assert state == lead + HIDDEN
    state_in = jnp.zeros(lead + HIDDEN)
    action = jnp.zeros(lead, jnp.int32)
    assert shape_of(lambda p, s, a: net.apply(p, s, a, method=net.dynamics), params, state_in, action) == lead + HIDDEN
    policy_shape, value_shape, reward_shape = shape_of(lambda p, s: net.apply(p, s, method=net.predict), params, state_in)
    assert (policy_shape, value_shape, reward_shape) == (lead + (A,), lead + (BINS,), lead + (BINS,))


def test_atari_dynamics_broadcasts_one_state_over_many_actions(muzero):
    net, params = muzero
    state = jnp.zeros((2, 1) + HIDDEN)  # as in ROSMO's one-step look-ahead: state [B, 1], actions [B, M]
    actions = jnp.zeros((2, 5), jnp.int32)
    assert shape_of(lambda p, s, a: net.apply(p, s, a, method=net.dynamics), params, state, actions) == (2, 5) + HIDDEN


@pytest.mark.parametrize("lead", LAYOUTS)
def test_atari_policy_and_q_networks_keep_leading_dims(policy, critic, lead):
    (policy_net, policy_params), (q_net, q_params) = policy, critic
    assert shape_of(policy_net.apply, policy_params, frames(lead)) == lead + (A,)
    assert shape_of(q_net.apply, q_params, frames(lead)) == lead + (A, BINS)


# --- Atari initial outputs and action dependence ------------------------------------------------


def test_atari_muzero_starts_with_uniform_policy_and_zero_value_and_reward(muzero):
    net, params = muzero
    state, _, root, child = run_model(net, params, frames((2,)), jnp.array([0, 1]))
    assert state.dtype == jnp.float32 and float(jnp.abs(state).max()) > 0.0  # a real, non-constant encoding
    for policy_logits, value_logits, reward_logits in (root, child):
        np.testing.assert_allclose(jax.nn.softmax(policy_logits), 1.0 / A, rtol=1e-6)
        # Zero logits are exact; decoding the mean over 601 bins rounds to about 1e-4.
        np.testing.assert_allclose(logits_to_scalar(value_logits), 0.0, atol=1e-3)
        np.testing.assert_allclose(logits_to_scalar(reward_logits), 0.0, atol=1e-3)
        np.testing.assert_array_equal(value_logits, 0.0)
        np.testing.assert_array_equal(reward_logits, 0.0)


def test_atari_policy_and_q_networks_start_uniform_and_at_zero(policy, critic):
    (policy_net, policy_params), (q_net, q_params) = policy, critic
    np.testing.assert_allclose(jax.nn.softmax(run_net(policy_net, policy_params, frames((2,)))), 1.0 / A, rtol=1e-6)
    q_logits = run_net(q_net, q_params, frames((2,)))
    np.testing.assert_array_equal(q_logits, 0.0)
    np.testing.assert_allclose(logits_to_scalar(q_logits), 0.0, atol=1e-3)


def test_atari_dynamics_next_state_and_reward_depend_on_the_action(muzero):
    net, params = muzero
    observation = jnp.broadcast_to(frames((1,)), (2,) + FRAMES)  # the same frames twice, two actions
    _, next_state, _, (_, _, reward_logits) = run_model(net, perturb(params), observation, jnp.array([0, 1]))
    assert float(jnp.abs(next_state[0] - next_state[1]).max()) > 1e-3
    assert float(jnp.abs(reward_logits[0] - reward_logits[1]).max()) > 1e-4


def test_atari_q_network_depends_on_the_action(critic):
    net, params = critic
    q_logits = run_net(net, perturb(params), frames((2,)))[0]  # [A, num_bins]
    assert float(jnp.abs(q_logits[0] - q_logits[1]).max()) > 1e-4


# --- bfloat16 compute ---------------------------------------------------------------------------


def test_atari_bfloat16_compute_returns_float32_close_to_float32(muzero):
    net, params = muzero
    params = perturb(params)
    observation, action = frames((2,), seed=3), jnp.array([1, 3])
    full = run_model(net, params, observation, action)
    half = run_model(AtariMuZeroNetwork(num_actions=A, dtype=jnp.bfloat16), params, observation, action)
    for x, y in zip(jax.tree.leaves(full), jax.tree.leaves(half)):
        assert y.dtype == jnp.float32 and x.shape == y.shape
        scale = float(jnp.abs(x).max())
        assert scale > 1e-2  # the comparison is not between zeros
        assert float(jnp.abs(x - y).max()) < 0.05 * scale


def test_atari_bfloat16_policy_and_q_networks_return_float32(policy, critic):
    for (_, params), cls in ((policy, AtariPolicyNetwork), (critic, AtariQNetwork)):
        half = cls(num_actions=A, dtype=jnp.bfloat16)
        assert jax.eval_shape(half.apply, params, frames((2,))).dtype == jnp.float32


def test_auto_compute_dtype_is_float32_on_a_cpu_and_bfloat16_on_accelerators(muzero, monkeypatch):
    net, params = muzero
    params = perturb(params)
    observation, action = frames((2,), seed=3), jnp.array([1, 3])
    here = jnp.bfloat16 if jax.default_backend() in ("gpu", "tpu") else jnp.float32
    assert compute_dtype("auto") == here and compute_dtype("bfloat16") == jnp.bfloat16
    auto = run_model(AtariMuZeroNetwork(num_actions=A, dtype="auto"), params, observation, action)
    same = run_model(AtariMuZeroNetwork(num_actions=A, dtype=here), params, observation, action)
    for x, y in zip(jax.tree.leaves(same), jax.tree.leaves(auto)):
        np.testing.assert_array_equal(x, y)
    assert resolve_compute_dtype("auto", "cpu") == "float32" and resolve_compute_dtype("float32", "gpu") == "float32"
    for backend in ("gpu", "tpu"):
        monkeypatch.setattr(jax, "default_backend", lambda name=backend: name)
        assert compute_dtype("auto") == jnp.bfloat16 and compute_dtype("float32") == jnp.float32
        assert resolve_compute_dtype("auto") == resolve_compute_dtype("auto", backend) == "bfloat16"


# --- weight-decay mask --------------------------------------------------------------------------


# Conv and dense kernels per network: the torso has 2 strided convs and 10 residual blocks of 2 convs;
# the transition 1 conv + 2 blocks; the prediction trunk 2 blocks; each head a 1x1 conv, 2 dense, 1 output.
TORSO, TRANSITION, TRUNK, HEAD = 2 + 10 * 2, 1 + 2 * 2, 2 * 2, 4


@pytest.mark.parametrize(
    "name, num_kernels",
    [
        ("muzero", TORSO + TRANSITION + TRUNK + 3 * HEAD),
        ("policy", TORSO + TRUNK + HEAD),
        ("critic", TORSO + TRANSITION + TRUNK + HEAD),
    ],
)
def test_weight_decay_mask_marks_exactly_the_conv_and_dense_kernels(request, name, num_kernels):
    _, params = request.getfixturevalue(name)
    flat_mask = jax.tree_util.tree_flatten_with_path(weight_decay_mask(params))[0]
    flat_params = jax.tree.leaves(params)
    marked = [(path, p) for (path, m), p in zip(flat_mask, flat_params) if m]
    unmarked = [(path, p) for (path, m), p in zip(flat_mask, flat_params) if not m]
    assert len(marked) == num_kernels
    assert all(path[-1].key == "kernel" and p.ndim in (2, 4) for path, p in marked)
    # Everything else is a bias or a LayerNorm scale/offset: one vector per layer.
    assert all(path[-1].key in ("bias", "scale") and p.ndim == 1 for path, p in unmarked)
    assert unmarked  # LayerNorm parameters exist and stay undecayed


# --- Atari torso: the paper's and the official downsampling -------------------------------------


def torso_params(downsample):
    return jax.eval_shape(AtariTorso(downsample=downsample).init, init_key(), frames((1,)))["params"]


def kernel_shapes(tree):
    return {jax.tree_util.keystr(path): leaf.shape for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.mark.parametrize("downsample", ["paper", "official"])
def test_both_downsampling_forms_give_the_6x6x64_hidden_state_in_every_atari_network(downsample):
    lead = (2, 3)
    net = AtariMuZeroNetwork(num_actions=A, dtype=jnp.bfloat16, downsample=downsample)
    params = jax.eval_shape(net.init, init_key(), frames((1,)), jnp.zeros((1,), jnp.int32))
    state = jax.eval_shape(lambda p, o: net.apply(p, o, method=net.represent), params, frames(lead))
    assert state.shape == lead + HIDDEN and state.dtype == jnp.float32  # the residual stream stays float32
    policy_net, q_net = AtariPolicyNetwork(A, downsample=downsample), AtariQNetwork(A, downsample=downsample)
    assert shape_of(policy_net.apply, jax.eval_shape(policy_net.init, init_key(), frames((1,))), frames(lead)) == lead + (A,)
    assert shape_of(q_net.apply, jax.eval_shape(q_net.init, init_key(), frames((1,))), frames(lead)) == lead + (A, BINS)
    for tree in (params, jax.eval_shape(policy_net.init, init_key(), frames((1,)))):
        assert set(tree["params"]["representation_net"]) == set(torso_params(downsample))  # the option reaches the torso


def test_paper_downsampling_is_a_strided_conv_then_two_residual_blocks():
    params = torso_params("paper")
    assert set(params) == {"Conv_0", "ResBlock_0", "Conv_1", "ResStack_0", "ResBlock_1", "ResStack_1"}
    assert params["Conv_1"]["kernel"].shape == (3, 3, 32, 64)  # 42x42x32 -> 21x21x64
    assert set(params["ResStack_0"]) == {"ResBlock_0", "ResBlock_1"} and len(params["ResStack_1"]) == 6


def test_official_downsampling_is_a_strided_projection_block_then_one_residual_block():
    params = torso_params("official")
    assert set(params) == {"Conv_0", "ResBlock_0", "StridedResBlock_0", "ResStack_0", "ResBlock_1", "ResStack_1"}
    assert kernel_shapes(params["StridedResBlock_0"]) == {
        "['projection']['kernel']": (3, 3, 32, 64),  # the shortcut, stride 2
        "['Conv_0']['kernel']": (3, 3, 32, 64),  # stride 2
        "['Conv_1']['kernel']": (3, 3, 64, 64),
        "['LayerNorm_0']['scale']": (32,),  # pre-activation of the 32-channel input
        "['LayerNorm_0']['bias']": (32,),
        "['LayerNorm_1']['scale']": (64,),
        "['LayerNorm_1']['bias']": (64,),
    }
    assert set(params["ResStack_0"]) == {"ResBlock_0"} and len(params["ResStack_1"]) == 6


def test_the_two_downsampling_forms_differ_only_in_the_second_stage_weights():
    def conv_weights(downsample):
        shapes = kernel_shapes(torso_params(downsample))
        return sum(int(np.prod(s)) for k, s in shapes.items() if k.endswith("['kernel']")), len(
            [k for k in shapes if k.endswith("['kernel']")]
        )

    first, rest = 3 * 3 * 4 * 32 + 2 * 3 * 3 * 32 * 32, (1 + 6) * 2 * 3 * 3 * 64 * 64  # shared stages
    block64 = 2 * 3 * 3 * 64 * 64
    paper = 3 * 3 * 32 * 64 + 2 * block64  # conv s2, 2 blocks
    official = 2 * 3 * 3 * 32 * 64 + 3 * 3 * 64 * 64 + block64  # projection + conv s2, conv, 1 block
    assert conv_weights("paper") == (first + paper + rest, 22)
    assert conv_weights("official") == (first + official + rest, 22)


def test_strided_res_block_adds_the_projection_shortcut_to_the_residual_branch():
    block = StridedResBlock(6)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 8, 8, 4)), jnp.float32)
    params = perturb(block.init(init_key(), x))
    out = block.apply(params, x)
    assert out.shape == (1, 4, 4, 6) and out.dtype == jnp.float32

    def zeroed(name):
        return jax.tree_util.tree_map_with_path(
            lambda path, p: jnp.zeros_like(p) if name in jax.tree_util.keystr(path) else p, params
        )

    shortcut_only, branch_only = block.apply(zeroed("['Conv_1']"), x), block.apply(zeroed("['projection']"), x)
    assert float(jnp.abs(shortcut_only).max()) > 1e-2 and float(jnp.abs(branch_only).max()) > 1e-2
    np.testing.assert_allclose(out, shortcut_only + branch_only, rtol=1e-5, atol=1e-5)


def test_unknown_downsampling_form_is_an_error():
    with pytest.raises(ValueError, match="unknown downsample 'resnet'; use one of paper, official"):
        jax.eval_shape(AtariTorso(downsample="resnet").init, init_key(), frames((1,)))


@pytest.mark.parametrize(
    "cls, num_kernels",
    [(AtariMuZeroNetwork, TORSO + TRANSITION + TRUNK + 3 * HEAD), (AtariQNetwork, TORSO + TRANSITION + TRUNK + HEAD)],
)
def test_weight_decay_mask_of_official_downsampling_marks_the_projection_too(cls, num_kernels):
    net = cls(num_actions=A, downsample="official")
    args = (frames((1,)), jnp.zeros((1,), jnp.int32)) if cls is AtariMuZeroNetwork else (frames((1,)),)
    params = jax.eval_shape(net.init, init_key(), *args)
    marked = [
        jax.tree_util.keystr(path) for path, m in jax.tree_util.tree_flatten_with_path(weight_decay_mask(params))[0] if m
    ]
    assert len(marked) == num_kernels  # the same 22 torso kernels as the paper's form
    assert any("['projection']['kernel']" in path for path in marked)


# --- BSuite networks unchanged ------------------------------------------------------------------


@pytest.mark.parametrize("lead", LAYOUTS)
def test_bsuite_networks_shapes_unchanged(lead):
    obs_dim, bins = 50, 20
    key, obs, action = jax.random.PRNGKey(0), jnp.zeros((1, obs_dim)), jnp.zeros((1,), jnp.int32)
    net = MuZeroNetwork(num_actions=A, num_bins=bins)
    params = jax.eval_shape(net.init, key, obs, action)
    count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    # [64, 64, 32] + [32, 256, 32] on state + one-hot + [32] + heads (A, bins, bins), with biases.
    assert count == (50 * 64 + 64 + 64 * 64 + 64 + 64 * 32 + 32) + ((32 + A) * 32 + 32 + 32 * 256 + 256 + 256 * 32 + 32) + (
        32 * 32 + 32
    ) + (33 * A + 2 * 33 * bins)
    x = jnp.zeros(lead + (obs_dim,))
    assert shape_of(lambda p, o: net.apply(p, o, method=net.represent), params, x) == lead + (32,)
    state, action = jnp.zeros(lead + (32,)), jnp.zeros(lead, jnp.int32)
    assert shape_of(lambda p, s, a: net.apply(p, s, a, method=net.dynamics), params, state, action) == lead + (32,)
    outputs = shape_of(lambda p, s: net.apply(p, s, method=net.predict), params, state)
    assert outputs == (lead + (A,), lead + (bins,), lead + (bins,))
    policy_net, q_net = PolicyNetwork(num_actions=A), QNetwork(num_actions=A, num_bins=bins)
    assert shape_of(policy_net.apply, jax.eval_shape(policy_net.init, key, obs), x) == lead + (A,)
    assert shape_of(q_net.apply, jax.eval_shape(q_net.init, key, obs), x) == lead + (A, bins)


# --- Network sizes (--network-size) -------------------------------------------------------------


def param_count(net, *args):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(jax.eval_shape(net.init, init_key(), *args)))


@pytest.mark.parametrize(
    "downsample, counts",
    # Parameter counts of the three Atari networks (18 actions, 601 bins) before the sizes existed: "paper"
    # must keep building exactly those networks.
    [("paper", (3_050_564, 1_469_586, 1_740_121)), ("official", (3_032_068, 1_451_090, 1_721_625))],
)
def test_paper_size_builds_the_networks_it_always_built(downsample, counts):
    obs, action = frames((1,)), jnp.zeros((1,), jnp.int32)
    nets = [cls(num_actions=18, downsample=downsample, size="paper") for cls in (AtariMuZeroNetwork, AtariPolicyNetwork)]
    nets.append(AtariQNetwork(num_actions=18, downsample=downsample, size="paper"))
    got = (param_count(nets[0], obs, action), param_count(nets[1], obs), param_count(nets[2], obs))
    assert got == counts
    default = AtariMuZeroNetwork(num_actions=18, downsample=downsample)  # the default is the paper's size
    assert shape_of(default.init, init_key(), obs, action) == shape_of(nets[0].init, init_key(), obs, action)


def test_small_size_keeps_the_family_with_a_6x6_hidden_state_and_far_fewer_parameters():
    from common.networks import ATARI_SIZES

    small = ATARI_SIZES["small"]
    net = AtariMuZeroNetwork(num_actions=A, size="small")
    obs, action = frames((2, 3)), jnp.zeros((2, 3), jnp.int32)
    params = net.init(init_key(), frames((1,)), jnp.zeros((1,), jnp.int32))
    state, next_state, (pi, v, r), _ = run_model(net, params, obs, action)
    assert state.shape == next_state.shape == (2, 3, 6, 6, small.channels)
    assert pi.shape == (2, 3, A) and v.shape == r.shape == (2, 3, BINS)
    np.testing.assert_array_equal(pi, 0.0)  # zero-initialised heads, as the paper size
    obs1 = frames((1,))
    assert param_count(net, obs1, jnp.zeros((1,), jnp.int32)) * 10 < param_count(
        AtariMuZeroNetwork(A), obs1, jnp.zeros((1,), jnp.int32)
    )
    for cls in (AtariPolicyNetwork, AtariQNetwork):
        out = shape_of(cls(num_actions=A, size="small").init, init_key(), obs1)
        assert set(out["params"]) >= {"representation_net", "prediction_trunk"}


def test_small_torso_is_nonlinear_before_it_pools():
    """The small torso's first residual block sits at 21x21 on the first convolution's 8 channels. Without it the
    two strided convolutions and the pooling are one linear map of the pixels down to 6x6, and BC on Breakout's
    tracker data needed about 5x more updates to learn the controller (docs/atari.md)."""
    net = AtariMuZeroNetwork(num_actions=A, size="small")
    params = shape_of(net.init, init_key(), frames((1,)), jnp.zeros((1,), jnp.int32))["params"]["representation_net"]
    assert params["Conv_0"]["kernel"] == (4, 4, 4, 8)  # 84 -> 21, stride 4
    assert params["ResBlock_0"]["Conv_0"]["kernel"] == (3, 3, 8, 8)  # the block at 21x21
    x = net.apply(net.init(init_key(), frames((1,)), jnp.zeros((1,), jnp.int32)), frames((3,)), method=net.represent)
    assert x.shape == (3, 6, 6, 16)


@pytest.mark.parametrize("script", ["rosmo", "mzu", "mzu_q", "crr", "cql", "bc"])
def test_every_script_passes_network_size_to_its_atari_networks(script):
    import importlib

    module = importlib.import_module(script)
    args = module.apply_env_defaults(module.Args(env_id="Pong", network_size="small"))
    build = getattr(module, "make_network", None) or module.make_networks
    built = build(args, 6)
    for net in built if isinstance(built, tuple) else (built,):
        assert net.size == "small"
