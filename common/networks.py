"""The latent dynamics model of ROSMO and MuZero Unplugged (paper Section 2.2, Appendix D.2.1).

`MuZeroNetwork` bundles the three functions of the paper:
  representation  s^0 = h_theta(o)
  dynamics        s^{k+1} = g_theta(s^k, a)        (the reward of that transition is read off s^{k+1})
  prediction      pi^k, v^k, r^k = f_theta(s^k)     (policy logits, value logits, reward logits)
The reward head sits in the prediction function and is applied to the state a transition leads
to, so g_theta(s, a) = (f_theta(s')_reward, s'). Value and reward heads output `num_bins`
categorical logits over h-transformed scalars (the functions at the end of this module). Output
layers start at zero, so a fresh network has a uniform policy and zero value and reward.

This module holds the BSuite MLPs of Table 4 (representation [64, 64, 32], dynamics
[32, 256, 32], prediction [32]) and the baselines' networks built from the same blocks (paper
Fig. 5 right): `PolicyNetwork` (representation + prediction, for BC and CRR's actor) and
`QNetwork` (representation + a dynamics-like trunk on the state and the one-hot action, without
a next state, + a prediction-like head with categorical Q logits, for CRR's critic and CQL).
The Atari networks of Appendix D.2.1 mirror these interfaces on 84x84x4 uint8 frames:
`AtariMuZeroNetwork` (pre-activation LayerNorm ResNet, hidden state 6x6x64), `AtariPolicyNetwork`
and `AtariQNetwork`. Their methods take any number of leading batch dims, and their `dtype`
(float32, bfloat16, or "auto": bfloat16 on a GPU or TPU, float32 on a CPU; see `compute_dtype`)
sets the compute of convolutions and dense layers while parameters, hidden states and logits stay
float32. Their `downsample` picks the torso's second downsampling stage:
"paper" (the default, Appendix D.2.1's text: a stride-2 convolution then 2 residual blocks) or
"official" (the authors' release: a stride-2 residual block with a projection shortcut then 1
residual block).

Scalar <-> categorical values (paper Appendix A.2, MuZero Appendix F), at the end of this module:
rewards and values are squashed by h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps * x (Pohlen et al.,
2018), then spread over a uniform support of `num_bins` points spaced 1 apart and centred on 0
("two-hot": the mass is split between the two nearest bins). `logits_to_scalar` decodes a head's
logits: the expectation over the bins, then h^-1. With 601 bins the support is -300..300 (Atari);
with 20 bins it is -9.5..9.5 (BSuite), enough for |h(x)| up to 9.5, i.e. |x| up to about 100.
This module holds no losses and no data code; the two-hot encoding of value and reward targets
lives at its end.
"""

from typing import Any, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    """Dense layers with ReLU between them; the last layer is linear unless `activate_final`."""

    features: Sequence[int]
    activate_final: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.features):
            x = nn.Dense(width)(x)
            if i < len(self.features) - 1 or self.activate_final:
                x = nn.relu(x)
        return x


class MuZeroNetwork(nn.Module):
    """Representation, dynamics and prediction MLPs for vector observations (BSuite)."""

    num_actions: int
    num_bins: int
    representation_layers: Sequence[int] = (64, 64, 32)
    dynamics_layers: Sequence[int] = (32, 256, 32)
    prediction_layers: Sequence[int] = (32,)

    def setup(self):
        self.representation_net = MLP(self.representation_layers)
        self.dynamics_net = MLP(self.dynamics_layers)
        self.prediction_trunk = MLP(self.prediction_layers, activate_final=True)
        zeros = nn.initializers.zeros
        self.policy_head = nn.Dense(self.num_actions, kernel_init=zeros, bias_init=zeros)
        self.value_head = nn.Dense(self.num_bins, kernel_init=zeros, bias_init=zeros)
        self.reward_head = nn.Dense(self.num_bins, kernel_init=zeros, bias_init=zeros)

    def represent(self, observation: jax.Array) -> jax.Array:
        """h_theta: observation [..., *obs_shape] (trailing dims flattened by the caller) -> state [..., S]."""
        return self.representation_net(observation)

    def dynamics(self, state: jax.Array, action: jax.Array) -> jax.Array:
        """g_theta's next state: state [..., S], integer action [...] -> next state [..., S]."""
        action_one_hot = jax.nn.one_hot(action, self.num_actions, dtype=state.dtype)
        return self.dynamics_net(jnp.concatenate([state, action_one_hot], axis=-1))

    def predict(self, state: jax.Array) -> Tuple[jax.Array, jax.Array, jax.Array]:
        """f_theta: state [..., S] -> (policy logits [..., A], value logits [..., B], reward logits [..., B])."""
        x = self.prediction_trunk(state)
        return self.policy_head(x), self.value_head(x), self.reward_head(x)

    def __call__(self, observation: jax.Array, action: jax.Array):
        """Touches every function once; used only to initialise the parameters."""
        state = self.represent(observation)
        next_state = self.dynamics(state, action)
        return self.predict(state), self.predict(next_state)


class PolicyNetwork(nn.Module):
    """pi(a|s) from representation + prediction (paper Fig. 5 right-b); zero-initialised logits."""

    num_actions: int
    representation_layers: Sequence[int] = (64, 64, 32)
    prediction_layers: Sequence[int] = (32,)

    @nn.compact
    def __call__(self, observation: jax.Array) -> jax.Array:
        """observation [..., D] -> policy logits [..., A]."""
        state = MLP(self.representation_layers)(observation)
        x = MLP(self.prediction_layers, activate_final=True)(state)
        zeros = nn.initializers.zeros
        return nn.Dense(self.num_actions, kernel_init=zeros, bias_init=zeros)(x)


class QNetwork(nn.Module):
    """Categorical Q(s, a) for every action (paper Fig. 5 right-c/d), as `num_bins` logits.

    The state s = representation(o) is concatenated with each one-hot action and passed through
    a dynamics-like MLP and a prediction-like trunk; the output layer starts at zero (Q = 0).
    """

    num_actions: int
    num_bins: int
    representation_layers: Sequence[int] = (64, 64, 32)
    dynamics_layers: Sequence[int] = (32, 256, 32)
    prediction_layers: Sequence[int] = (32,)

    @nn.compact
    def __call__(self, observation: jax.Array) -> jax.Array:
        """observation [..., D] -> Q logits [..., A, num_bins]."""
        state = MLP(self.representation_layers)(observation)
        states = jnp.broadcast_to(state[..., None, :], state.shape[:-1] + (self.num_actions, state.shape[-1]))
        actions = jnp.broadcast_to(jnp.eye(self.num_actions, dtype=state.dtype), states.shape[:-1] + (self.num_actions,))
        x = MLP(self.dynamics_layers, activate_final=True)(jnp.concatenate([states, actions], axis=-1))
        x = MLP(self.prediction_layers, activate_final=True)(x)
        zeros = nn.initializers.zeros
        return nn.Dense(self.num_bins, kernel_init=zeros, bias_init=zeros)(x)


# Atari networks (paper Appendix D.2.1, Fig. 5 right). Facts beyond the paper's text follow the
# authors' release: convolutions and the dense layers that feed a LayerNorm have no bias, each
# head starts with LayerNorm + ReLU (a pre-activation trunk ends on a residual sum), and the
# reward head reads the state directly while policy and value read it after the 2 prediction
# blocks. Inside the modules below the batch is one axis [N, ...]; the public networks fold and
# unfold any leading dims. The residual stream (and so the hidden state) is kept in float32.

DOWNSAMPLE_FORMS = ("paper", "official")  # AtariTorso's second downsampling stage (see its docstring)


class AtariSize(NamedTuple):
    """How big the Atari networks are; `--network-size` picks one of ATARI_SIZES.

    "paper" is Appendix D.2.1: a 3x3 stride-2 convolution to 84 -> 42, 1 block, a stride-2 stage to 21x21x64
    with 2 blocks, average pooling to 11 (1 block) and to 6 (6 blocks); dynamics and prediction 2 blocks each;
    heads with a 1x1 convolution to 128 channels and two dense layers of 128. "small" keeps every part of that
    family (the pre-activation LayerNorm blocks, the action planes of the dynamics, the heads, the 6x6 hidden
    state) with a coarser first stride (a 4x4 stride-4 patch convolution to 21x21x8), 16 channels, one pooling
    (11 -> 6), one residual block at 21x21 and one at 6x6 in the torso, one in the dynamics and the prediction each,
    and smaller heads (16 channels, one dense layer of 64): ROSMO's update has about 1/50 of the paper's FLOPs
    (docs/atari.md). The block at 21x21 is the torso's first nonlinearity: without it everything down to the 6x6
    pooling is one linear map of the pixels, and BC learnt Breakout's controller about 5x more slowly.
    """

    channels: int  # the residual stream after the first downsampling stage (and so the hidden state's channels)
    first_kernel: int  # the first convolution's kernel and stride
    first_stride: int
    first_blocks: int  # residual blocks at the first convolution's resolution
    second_blocks: int  # residual blocks after the stride-2 stage
    pooled_blocks: Tuple[int, ...]  # residual blocks after each 3x3 stride-2 average pooling
    dynamics_blocks: int
    prediction_blocks: int
    head_channels: int  # 1x1 conv of each head before flattening
    head_layers: Tuple[int, ...]  # dense layers of each head ("two fully connected layers with 128 hidden units")


ATARI_SIZES = {
    "paper": AtariSize(64, 3, 2, 1, 2, (1, 6), 2, 2, 128, (128, 128)),
    "small": AtariSize(16, 4, 4, 1, 0, (1,), 1, 1, 16, (64,)),
}


def resolve_compute_dtype(name: str, backend: Optional[str] = None) -> str:
    """--compute-dtype's "auto" as a precision name: bfloat16 on a GPU or TPU, float32 on a CPU (`backend`,
    default this process's). bfloat16's learning targets agree with float32's and the update runs about
    1.5x faster on a GPU (benchmark/results/precision_gpu.md, learner_gpu_*.md). Other names are returned."""
    if name != "auto":
        return name
    return "bfloat16" if (backend or jax.default_backend()) in ("gpu", "tpu") else "float32"


def compute_dtype(dtype: Any) -> Any:
    """The dtype an Atari network computes in, from its `dtype` field ("auto" resolved as above)."""
    return jnp.dtype(resolve_compute_dtype(dtype) if isinstance(dtype, str) else dtype)


def _conv(features: int, kernel: int, stride: int, dtype) -> nn.Conv:
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding="SAME", use_bias=False, dtype=dtype)


def _spatial_layer_norm(dtype) -> nn.LayerNorm:
    """LayerNorm over H, W and C of [N, H, W, C], with a per-channel scale and offset."""
    return nn.LayerNorm(reduction_axes=(-3, -2, -1), feature_axes=-1, dtype=dtype)


def _avg_pool(x: jax.Array) -> jax.Array:
    """3x3 average pooling with stride 2 and 'SAME' padding (21 -> 11 -> 6), averaging real pixels only."""
    return nn.avg_pool(x, (3, 3), strides=(2, 2), padding="SAME", count_include_pad=False)


def _fold(x: jax.Array, trailing: int) -> Tuple[jax.Array, Tuple[int, ...]]:
    """[..., *last `trailing` dims] -> ([N, *last dims], the leading shape)."""
    lead = x.shape[: x.ndim - trailing]
    return x.reshape((-1,) + x.shape[x.ndim - trailing :]), lead


class ResBlock(nn.Module):
    """Pre-activation residual block (ResNet v2 with LayerNorm): x + conv(relu(LN(conv(relu(LN(x)))))).

    3x3 convolutions keep the channels of the input [N, H, W, C].
    """

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out = x
        for _ in range(2):
            out = nn.relu(_spatial_layer_norm(self.dtype)(out))
            out = _conv(x.shape[-1], 3, 1, self.dtype)(out)
        return x + out  # float32 skip + compute-dtype branch stays float32


class StridedResBlock(nn.Module):
    """Pre-activation residual block that halves H and W and changes the channels (the official downsampling).

    a = relu(LN(x)); out = proj(a) + conv(relu(LN(conv_s2(a)))), where proj and conv_s2 are 3x3
    convolutions with stride 2 to `features` channels (the projection shortcut) and the last conv
    has stride 1. [N, H, W, C] -> [N, ceil(H / 2), ceil(W / 2), features], float32.
    """

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pre = nn.relu(_spatial_layer_norm(self.dtype)(x))
        shortcut = nn.Conv(
            self.features, (3, 3), strides=(2, 2), padding="SAME", use_bias=False, dtype=self.dtype, name="projection"
        )(pre)
        out = _conv(self.features, 3, 2, self.dtype)(pre)
        out = _conv(self.features, 3, 1, self.dtype)(nn.relu(_spatial_layer_norm(self.dtype)(out)))
        return shortcut.astype(jnp.float32) + out.astype(jnp.float32)


class ResStack(nn.Module):
    """`num_blocks` residual blocks in sequence (the prediction trunk has 2)."""

    num_blocks: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for _ in range(self.num_blocks):
            x = ResBlock(self.dtype)(x)
        return x


class AtariTorso(nn.Module):
    """Representation h_theta: frames [N, 84, 84, 4] (uint8) -> hidden state [N, 6, 6, C] (C: `size.channels`).

    The paper's size is described here; `size` scales it (AtariSize). Downsampling to 21x21x64, as
    `downsample` says: "paper" (Appendix D.2.1's list) uses a stride-2
    convolution then 2 residual blocks; "official" (the authors' release) a stride-2 residual
    block with a projection shortcut (`StridedResBlock`) then 1 residual block. Both have 22
    conv kernels and 20 LayerNorms; the official stage has about 18k fewer weights (147,456
    against 165,888 in its convolutions).
    """

    dtype: Any = jnp.float32
    downsample: str = "paper"
    size: AtariSize = ATARI_SIZES["paper"]

    @nn.compact
    def __call__(self, observation: jax.Array) -> jax.Array:
        if self.downsample not in DOWNSAMPLE_FORMS:
            raise ValueError(f"unknown downsample {self.downsample!r}; use one of {', '.join(DOWNSAMPLE_FORMS)}")
        size = self.size
        x = observation.astype(jnp.float32) / 255.0
        x = _conv(size.channels // 2, size.first_kernel, size.first_stride, self.dtype)(x).astype(
            jnp.float32
        )  # paper: 42x42x32
        for _ in range(size.first_blocks):
            x = ResBlock(self.dtype)(x)
        if self.downsample == "paper":
            x = _conv(size.channels, 3, 2, self.dtype)(x).astype(jnp.float32)  # paper: 21x21x64
            x = ResStack(size.second_blocks, self.dtype)(x)
        else:
            x = StridedResBlock(size.channels, self.dtype)(x)  # 21x21x64
            x = ResStack(max(size.second_blocks - 1, 0), self.dtype)(x)
        *middle, last = size.pooled_blocks
        for blocks in middle:
            x = _avg_pool(x)  # paper: 11x11
            for _ in range(blocks):
                x = ResBlock(self.dtype)(x)
        x = ResStack(last, self.dtype)(_avg_pool(x))  # paper: 6x6
        # No min-max normalisation of the hidden state (paper D.2.1; LayerNorm does that job).
        return x


class AtariTransition(nn.Module):
    """Dynamics trunk: s' = ResBlocks(s + conv3x3(concat[relu(LN(s)), one-hot action tiled over H x W])).

    state [N, H, W, C], action_one_hot [N, A] -> [N, H, W, C]. The residual link with the input
    state keeps information flowing through long unrolls.
    """

    num_blocks: int = 2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, state: jax.Array, action_one_hot: jax.Array) -> jax.Array:
        x = nn.relu(_spatial_layer_norm(self.dtype)(state))
        planes = action_one_hot[:, None, None, :].astype(x.dtype)  # [N, 1, 1, A] tiled to [N, H, W, A]
        planes = jnp.broadcast_to(planes, x.shape[:-1] + planes.shape[-1:])
        x = state + _conv(state.shape[-1], 3, 1, self.dtype)(jnp.concatenate([x, planes], axis=-1))
        return ResStack(self.num_blocks, self.dtype)(x)


class AtariHead(nn.Module):
    """Output head: LN -> ReLU -> 1x1 conv to 128 -> LN -> ReLU -> flatten -> 2 x (FC 128 -> LN -> ReLU) -> out.

    [N, H, W, C] -> float32 [N, num_outputs]. The output layer starts at zero and runs in float32.
    """

    num_outputs: int
    dtype: Any = jnp.float32
    size: AtariSize = ATARI_SIZES["paper"]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(_spatial_layer_norm(self.dtype)(x))
        x = nn.relu(_spatial_layer_norm(self.dtype)(_conv(self.size.head_channels, 1, 1, self.dtype)(x)))
        x = x.reshape(x.shape[0], -1)
        for width in self.size.head_layers:
            x = nn.relu(nn.LayerNorm(dtype=self.dtype)(nn.Dense(width, use_bias=False, dtype=self.dtype)(x)))
        zeros = nn.initializers.zeros
        return nn.Dense(self.num_outputs, kernel_init=zeros, bias_init=zeros)(x.astype(jnp.float32))


class AtariMuZeroNetwork(nn.Module):
    """`MuZeroNetwork`'s representation, dynamics and prediction for Atari frames (Fig. 5 right-a).

    represent: [..., 84, 84, 4] -> [..., 6, 6, 64]; dynamics: ([..., 6, 6, 64], [...]) -> [..., 6, 6, 64];
    predict: [..., 6, 6, 64] -> (policy [..., A], value [..., num_bins], reward [..., num_bins]).
    """

    num_actions: int
    num_bins: int = 601
    dtype: Any = jnp.float32
    downsample: str = "paper"
    """the torso's downsampling: "paper" (Appendix D.2.1) or "official" (the authors' release); see AtariTorso"""
    size: str = "paper"
    """the networks' size, a key of ATARI_SIZES: "paper" (Appendix D.2.1) or "small" (see AtariSize)"""

    def setup(self):
        dtype, size = compute_dtype(self.dtype), ATARI_SIZES[self.size]
        self.representation_net = AtariTorso(dtype, self.downsample, size)
        self.dynamics_net = AtariTransition(size.dynamics_blocks, dtype)
        self.prediction_trunk = ResStack(size.prediction_blocks, dtype)
        self.policy_head = AtariHead(self.num_actions, dtype, size)
        self.value_head = AtariHead(self.num_bins, dtype, size)
        self.reward_head = AtariHead(self.num_bins, dtype, size)

    def represent(self, observation: jax.Array) -> jax.Array:
        """h_theta: frames [..., 84, 84, 4] (uint8, 0..255) -> state [..., 6, 6, 64] (float32)."""
        x, lead = _fold(observation, 3)
        state = self.representation_net(x)
        return state.reshape(lead + state.shape[1:])

    def dynamics(self, state: jax.Array, action: jax.Array) -> jax.Array:
        """g_theta's next state: state [..., 6, 6, 64], integer action [...] -> next state [..., 6, 6, 64]."""
        lead = jnp.broadcast_shapes(state.shape[:-3], jnp.shape(action))
        x = jnp.broadcast_to(state, lead + state.shape[-3:]).reshape((-1,) + state.shape[-3:])
        action_one_hot = jax.nn.one_hot(jnp.broadcast_to(action, lead).reshape(-1), self.num_actions)
        return self.dynamics_net(x, action_one_hot).reshape(lead + state.shape[-3:])

    def predict(self, state: jax.Array) -> Tuple[jax.Array, jax.Array, jax.Array]:
        """f_theta: state [..., 6, 6, 64] -> (policy logits [..., A], value logits [..., B], reward logits [..., B])."""
        x, lead = _fold(state, 3)
        reward_logits = self.reward_head(x)  # reward of the transition into this state, read off the state
        x = self.prediction_trunk(x)
        outputs = (self.policy_head(x), self.value_head(x), reward_logits)
        return tuple(out.reshape(lead + out.shape[-1:]) for out in outputs)

    def __call__(self, observation: jax.Array, action: jax.Array):
        """Touches every function once; used only to initialise the parameters."""
        state = self.represent(observation)
        next_state = self.dynamics(state, action)
        return self.predict(state), self.predict(next_state)


class AtariPolicyNetwork(nn.Module):
    """pi(a|s) from the Atari representation + prediction trunk + policy head (Fig. 5 right-b, CRR's actor)."""

    num_actions: int
    dtype: Any = jnp.float32
    downsample: str = "paper"
    """the torso's downsampling: "paper" or "official"; see AtariTorso"""
    size: str = "paper"
    """a key of ATARI_SIZES: "paper" or "small"; see AtariSize"""

    @nn.compact
    def __call__(self, observation: jax.Array) -> jax.Array:
        """frames [..., 84, 84, 4] -> policy logits [..., A] (float32, zero at init)."""
        x, lead, dtype, size = *_fold(observation, 3), compute_dtype(self.dtype), ATARI_SIZES[self.size]
        x = AtariTorso(dtype, self.downsample, size, name="representation_net")(x)
        x = ResStack(size.prediction_blocks, dtype, name="prediction_trunk")(x)
        return AtariHead(self.num_actions, dtype, size, name="policy_head")(x).reshape(lead + (self.num_actions,))


class AtariQNetwork(nn.Module):
    """Categorical Q(s, a) for every action (Fig. 5 right-c/d), as `num_bins` logits.

    Like `QNetwork`: the state s = representation(o) goes with each one-hot action through a
    dynamics-like trunk (no next state is output), the 2 prediction blocks and a head whose
    output layer starts at zero (Q = 0). All actions run at once, folded into the batch.
    """

    num_actions: int
    num_bins: int = 601
    dtype: Any = jnp.float32
    downsample: str = "paper"
    """the torso's downsampling: "paper" or "official"; see AtariTorso"""
    size: str = "paper"
    """a key of ATARI_SIZES: "paper" or "small"; see AtariSize"""

    @nn.compact
    def __call__(self, observation: jax.Array) -> jax.Array:
        """frames [..., 84, 84, 4] -> Q logits [..., A, num_bins] (float32)."""
        x, lead, dtype, size = *_fold(observation, 3), compute_dtype(self.dtype), ATARI_SIZES[self.size]
        state = AtariTorso(dtype, self.downsample, size, name="representation_net")(x)  # [N, 6, 6, C]
        n, num_actions = state.shape[0], self.num_actions
        states = jnp.repeat(state, num_actions, axis=0)  # [N * A, ...], sample-major
        actions = jnp.tile(jnp.eye(num_actions), (n, 1))  # action index runs fastest, matching `states`
        x = AtariTransition(size.dynamics_blocks, dtype, name="dynamics_net")(states, actions)
        x = ResStack(size.prediction_blocks, dtype, name="prediction_trunk")(x)
        q_logits = AtariHead(self.num_bins, dtype, size, name="q_head")(x)
        return q_logits.reshape(lead + (num_actions, self.num_bins))


def weight_decay_mask(params):
    """True for kernels (weights), False for biases and norm scales: AdamW decays weights only."""
    return jax.tree_util.tree_map_with_path(lambda path, _: getattr(path[-1], "key", None) == "kernel", params)


# Scalar <-> categorical values (paper Appendix A.2): the heads' targets and their decoding.

EPSILON = 1e-3


def h(x: jax.Array, eps: float = EPSILON) -> jax.Array:
    """The invertible value transform h of Pohlen et al. (2018)."""
    return jnp.sign(x) * (jnp.sqrt(jnp.abs(x) + 1.0) - 1.0) + eps * x


def h_inv(y: jax.Array, eps: float = EPSILON) -> jax.Array:
    """Closed-form inverse of `h`."""
    return jnp.sign(y) * (jnp.square((jnp.sqrt(1.0 + 4.0 * eps * (jnp.abs(y) + 1.0 + eps)) - 1.0) / (2.0 * eps)) - 1.0)


def support(num_bins: int) -> jax.Array:
    """Bin centres: num_bins points spaced 1 apart, symmetric around 0."""
    return jnp.arange(num_bins, dtype=jnp.float32) - (num_bins - 1) / 2.0


def two_hot(y: jax.Array, num_bins: int) -> jax.Array:
    """Encode already-transformed scalars y [...] as two-hot distributions [..., num_bins].

    y is clipped to the support; the two neighbouring bins get weights that make the
    expectation exactly y.
    """
    half = (num_bins - 1) / 2.0
    pos = jnp.clip(y, -half, half) + half  # in [0, num_bins - 1]
    low = jnp.floor(pos)
    p_high = pos - low
    low_idx = low.astype(jnp.int32)
    high_idx = jnp.minimum(low_idx + 1, num_bins - 1)
    return (
        jax.nn.one_hot(low_idx, num_bins) * (1.0 - p_high)[..., None] + jax.nn.one_hot(high_idx, num_bins) * p_high[..., None]
    )


def scalar_to_probs(x: jax.Array, num_bins: int) -> jax.Array:
    """Raw scalar (reward or return) -> two-hot target distribution over h-space bins."""
    return two_hot(h(x), num_bins)


def logits_to_transformed(logits: jax.Array) -> jax.Array:
    """Categorical logits [..., num_bins] -> the expected bin value, a scalar in h-space (before h^-1)."""
    num_bins = logits.shape[-1]
    return jnp.sum(jax.nn.softmax(logits, axis=-1) * support(num_bins), axis=-1)


def logits_to_scalar(logits: jax.Array) -> jax.Array:
    """Categorical logits [..., num_bins] -> raw scalar: h^-1 of the expected bin value."""
    return h_inv(logits_to_transformed(logits))
