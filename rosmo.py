"""ROSMO: Regularized One-Step Model-based offline RL (Liu et al., ICLR 2023), in one file.

A latent dynamics model (representation h, dynamics g, prediction f; paper Section 2.2) is
trained on windows of logged episodes. Its policy target is a one-step look-ahead with the
target network (Eq. 5-7), its value target an n-step return (Eq. 8), and the policy is kept
near the data by an advantage-filtered behaviour-cloning term (Eq. 11). It acts with the same
one-step improved policy.

    python rosmo.py                                  # catch, the paper's BSuite settings
    python rosmo.py --env-id cartpole --num-seeds 3 --total-steps 50000
    python rosmo.py --num-samples 4                  # sampled policy target (Eq. 9-10)
    python rosmo.py --behavior-coef 0                # the OneStep ablation (Fig. 4d)
    python rosmo.py --behavior-only                  # the Behavior ablation (Fig. 4d)
"""

import dataclasses
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Literal, Optional

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tensorboardX import SummaryWriter
from tqdm import tqdm

from common import data, errors, evaluation, networks, replay, runs, sharding
from common.networks import logits_to_scalar, scalar_to_probs  # the categorical heads' scalars (Appendix A.2)


@dataclass
class Args:
    # Experiment
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run name)"""
    seed: int = 0
    """seed of the first agent; agent i of --num-seeds uses seed + i"""
    num_seeds: int = 1
    """independent agents trained side by side in one process (vmapped)"""
    track: bool = False
    """log to Weights & Biases (offline mode when no API key is configured)"""
    wandb_project_name: str = "rosmo-jax"
    """the wandb project"""
    wandb_entity: Optional[str] = None
    """the wandb entity (team)"""
    save_model: bool = False
    """keep runs/{run_name}/checkpoint.msgpack after training (it is written at every evaluation and on SIGTERM either way)"""
    checkpoint: Optional[str] = None
    """start a new run from this checkpoint.msgpack (with --eval-only: evaluate it and exit)"""
    resume: Optional[str] = None
    """continue the run in this directory (runs/{run_name}) in place, with its saved arguments"""

    # Data
    env_id: str = "catch"
    """BSuite task (catch, cartpole, mountain_car) or RL Unplugged Atari game (e.g. MsPacman)"""
    data_dir: Optional[str] = None
    """BSuite: data cache root (default $ROSMO_DATA_DIR or ./datasets), one dataset directory or one TFDS builder
    directory (an explicit one must exist, see --generate-data); Atari: shard directory, gs:// or http(s):// URL
    (default the public RL Unplugged bucket)"""
    data_fraction: float = 1.0
    """keep this uniform fraction of the episodes, in (0, 1]"""
    noise: float = 0.0
    """epsilon of the data: probability that the behaviour agent's action was replaced at random (BSuite)"""
    noise_in: Literal["environment", "behaviour"] = "environment"
    """where that replacement acted: the environment (the paper's: stochastic transitions) or the behaviour agent"""
    run: int = 1
    """RL Unplugged run of the game's data, 1..5 (Atari)"""
    generate_data: bool = False
    """BSuite: generate the dataset in a --data-dir that does not exist yet (otherwise such a --data-dir is an error)"""
    store: Literal["auto", "device", "stream"] = "auto"
    """Atari: 'device' holds the whole kept data on every device (uniform sampling), 'stream' a fixed ring refilled from
    the shards (docs/atari.md), 'auto' the device store when it fits, else the stream; BSuite: always the device store"""
    device_memory_gb: Optional[float] = None
    """memory per device (GB) to plan the store with, overriding what the devices report (for shared GPUs and tests)"""
    stream_capacity_steps: int = 131_072
    """steps of the stream ring on every device (0.93 GB at 131,072), refilled a quarter at a time; auto halves it to fit"""

    # Algorithm (paper Table 4 and Section 3)
    discount: float = 0.997**4
    """discount factor gamma"""
    learning_rate: float = 7e-4
    """AdamW learning rate after warm-up"""
    weight_decay: float = 1e-4
    """AdamW weight decay, on weights only (not biases)"""
    warmup_steps: int = 1_000
    """linear learning-rate warm-up from 0"""
    lr_decay_rate: float = 0.1
    """the learning rate is multiplied by this every --lr-decay-steps (staircase)"""
    lr_decay_steps: int = 100_000
    """updates between learning-rate decays"""
    max_grad_norm: float = 5.0
    """global-norm gradient clipping"""
    target_update_interval: int = 200
    """updates between hard copies of the online into the target network"""
    policy_coef: float = 1.0
    """weight of the policy loss"""
    value_coef: float = 0.25
    """weight of the value loss"""
    unroll_steps: int = 5
    """K: model unroll length"""
    td_steps: Optional[int] = None
    """n: steps of the n-step value target (Eq. 8); default 3 on BSuite, 5 on Atari"""
    num_bins: Optional[int] = None
    """categorical bins of the value and reward heads; default 20 on BSuite, 601 on Atari"""
    dynamics_hidden: int = 256
    """width of the middle layer of the dynamics MLP [32, H, 32] (BSuite)"""
    behavior_coef: float = 0.2
    """alpha of the behaviour regulariser (Eq. 11); 0 gives the OneStep ablation"""
    behavior_only: bool = False
    """the Behavior ablation: drop the one-step policy target, keep only Eq. 11 (weight 1)"""
    behavior_advantage: Literal["model", "data"] = "model"
    """Eq. 11's advantage: 'model' = r_g(s,a) + gamma v(g(s,a)) - v(s) (Algorithm 2);
    'data' = predicted reward + gamma v(h(o_{t+1})) - v(s), as the official release"""
    num_samples: int = 0
    """0: exact policy target over all actions (Eq. 6); N > 0: sampled target with N actions (Eq. 9-10)"""

    # Runtime
    total_steps: Optional[int] = None
    """learner updates; default 20k on BSuite (a CPU budget; the paper trains 200k), 200k on Atari"""
    batch_size: Optional[int] = None
    """windows per update (split over all devices); default 128 on BSuite, 512 on Atari"""
    eval_every: Optional[int] = None
    """updates between evaluations; default 2k on BSuite, 10k on Atari"""
    eval_episodes: int = 20
    """episodes per evaluation (per seed)"""
    eval_max_steps: Optional[int] = None
    """cap on agent steps per Atari evaluation episode (default 27,000: 108k frames, the Dopamine protocol)"""
    eval_greedy: bool = False
    """act greedily on the improved policy instead of sampling from it (the official release samples)"""
    compute_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """network compute precision on Atari: auto is bfloat16 on GPUs and TPUs, float32 on CPUs (parameters stay float32)"""
    updates_per_dispatch: Optional[int] = None
    """updates fused into one jitted call with lax.scan; must divide --eval-every and --total-steps;
    default the largest such number up to 100"""
    distributed: bool = False
    """multi-host: start jax.distributed (one process per host, each reading its own part of the data)"""
    downsample: Literal["paper", "official"] = "paper"
    """Atari only: the torso's second downsampling stage, 'paper' (Appendix D.2.1) or 'official' (the authors' release)"""
    network_size: Literal["paper", "small"] = "paper"
    """Atari only: the networks' size, 'paper' (Appendix D.2.1) or 'small' (fewer channels and blocks, a stride-4 first
    convolution: about 60x fewer FLOPs, for CPUs, laptops and teaching; docs/atari.md)"""

    # Saved agents
    eval_only: bool = False
    """evaluate --checkpoint's agents and exit (its saved arguments, no dataset); returns in eval.json beside it"""
    capture_video: bool = False
    """Atari and catch: an mp4 of one episode (first seed) per evaluation in runs/{run_name}/videos/ (or by --checkpoint)"""


# The flags left at None in Args take their values from the data's family, here, first thing in main: Table 3 of
# the paper on Atari, Table 4 on BSuite (but 20k updates on BSuite, a CPU's budget; the paper trains 200k).
ENV_DEFAULTS = {
    "atari": {"td_steps": 5, "num_bins": 601, "batch_size": 512, "total_steps": 200_000, "eval_every": 10_000},
    "bsuite": {"td_steps": 3, "num_bins": 20, "batch_size": 128, "total_steps": 20_000, "eval_every": 2_000},
}


def apply_env_defaults(args: Args) -> Args:
    """Args with the flags left at None filled from ENV_DEFAULTS, and --updates-per-dispatch (left at None) the
    largest count up to 100 that divides both --eval-every and --total-steps: every dispatch then has one shape,
    so the update compiles once."""
    defaults = ENV_DEFAULTS["atari" if data.is_atari(args.env_id) else "bsuite"]
    args = dataclasses.replace(args, **{k: v for k, v in defaults.items() if getattr(args, k) is None})
    if args.updates_per_dispatch is None:
        steps = math.gcd(args.eval_every, args.total_steps)
        args = dataclasses.replace(args, updates_per_dispatch=max(d for d in range(1, 101) if steps % d == 0))
    return args


# ---------------------------------------------------------------------------------------------
# ALGO LOGIC: targets and losses, small pure functions (tests check them on hand-made input).
# ---------------------------------------------------------------------------------------------


def scale_gradient(x: jax.Array, scale: float) -> jax.Array:
    """Identity forward; multiplies the gradient by `scale` (MuZero's 0.5 into the dynamics)."""
    return x * scale + jax.lax.stop_gradient(x) * (1.0 - scale)


def categorical_cross_entropy(target_probs: jax.Array, logits: jax.Array) -> jax.Array:
    """-p^T log pi (Eq. 12-14) over the last axis."""
    return -jnp.sum(target_probs * jax.nn.log_softmax(logits), axis=-1)


def exact_policy_target(prior_logits: jax.Array, adv: jax.Array) -> jax.Array:
    """Eq. 6: p(a|s) = pi_prior(a|s) exp(adv_g(s, a)) / Z(s), over all actions [..., A]."""
    chex.assert_equal_shape([prior_logits, adv])
    return jax.nn.softmax(jax.nn.log_softmax(prior_logits) + adv, axis=-1)


def sampled_policy_target(actions: jax.Array, adv: jax.Array, num_actions: int) -> jax.Array:
    """Eq. 9-10 as a weight vector over actions [..., A] for `categorical_cross_entropy`.

    actions, adv: [..., N], N actions sampled from the prior and their advantages. Sample i
    gets exp(adv_i) / Z_i with the leave-one-out Z_i = (1 + sum_{j != i} exp(adv_j)) / N, and
    the loss -(1/N) sum_i w_i log pi(a_i|s) equals -sum_a target[a] log pi(a|s) with
    target[a] = (1/N) sum_i w_i 1[a_i = a]. Computed in log space so large advantages do not
    overflow; the log-weight is capped at 80 (weights below 1e35) so an absurd advantage cannot
    turn the loss into inf. The weights need not sum to 1.
    """
    chex.assert_equal_shape([actions, adv])
    n = adv.shape[-1]
    others = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, adv[..., None, :])  # [..., N(i), N(j)]
    log_z = jax.nn.logsumexp(jnp.concatenate([jnp.zeros(others.shape[:-1] + (1,)), others], -1), -1) - jnp.log(n)
    weights = jnp.exp(jnp.minimum(adv - log_z, 80.0))  # [..., N]
    return jnp.sum(weights[..., None] * jax.nn.one_hot(actions, num_actions), axis=-2) / n


def n_step_value_target(
    reward: jax.Array,
    discount: jax.Array,
    has_action: jax.Array,
    absorbing: jax.Array,
    bootstrap_value: jax.Array,
    gamma: float,
    td_steps: int,
    num_targets: int,
) -> jax.Array:
    """Eq. 8: z_t = sum_{i<n} gamma^i r_{t+i} + gamma^n v'(s_{t+n}), for t = 0..num_targets-1.

    Inputs are windows [B, L] from common/replay.py. A transition's discount of 0 (termination)
    cuts the return; past the end of an episode the return neither grows nor discounts, so a
    return that runs past a truncated episode's last state bootstraps from that state
    (the window repeats it there). Absorbing positions get target 0.
    """
    chex.assert_equal_shape([reward, discount, has_action, absorbing, bootstrap_value])
    chex.assert_axis_dimension_gt(reward, 1, num_targets + td_steps - 1)
    reward = jnp.where(has_action, reward, 0.0)
    cont = jnp.where(has_action, gamma * discount, 1.0)  # multiplier from step j to step j + 1
    targets = []
    for t in range(num_targets):
        z, factor = jnp.zeros_like(reward[:, 0]), jnp.ones_like(reward[:, 0])
        for i in range(td_steps):
            z = z + factor * reward[:, t + i]
            factor = factor * cont[:, t + i]
        targets.append(z + factor * bootstrap_value[:, t + td_steps])
    return jnp.where(absorbing[:, :num_targets], 0.0, jnp.stack(targets, axis=1))


def behavior_loss(policy_logits: jax.Array, action: jax.Array, adv: jax.Array, mask: jax.Array) -> jax.Array:
    """Eq. 11: mean of -log pi(a|s) * 1[adv(s, a) > 0] over the positions where `mask` holds."""
    chex.assert_equal_shape([action, adv, mask])
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(policy_logits), action[..., None], axis=-1)[..., 0]
    return jnp.mean(-log_prob * (adv > 0) * mask)


# ---------------------------------------------------------------------------------------------
# ALGO LOGIC: network, training state and the jitted update.
# ---------------------------------------------------------------------------------------------


@flax.struct.dataclass
class TrainState:
    params: flax.core.FrozenDict
    target_params: flax.core.FrozenDict
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array


def make_learning_rate(peak: float, warmup_steps: int, decay_rate: float, decay_steps: int):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then x `decay_rate` every `decay_steps` updates (staircase)."""

    def schedule(step):
        warmup = jnp.minimum(1.0, step / max(warmup_steps, 1))
        return peak * warmup * decay_rate ** (step // decay_steps)

    return schedule


def make_optimizer(learning_rate, weight_decay: float, max_grad_norm: float) -> optax.GradientTransformation:
    """Global-norm gradient clipping, then AdamW (`learning_rate`: a schedule of the update count) that decays
    weights but not biases or norm scales."""
    return optax.chain(
        optax.clip_by_global_norm(max_grad_norm),
        optax.adamw(learning_rate, weight_decay=weight_decay, mask=networks.weight_decay_mask),
    )


def data_advantage(next_reward, next_value, next_absorbing, discount, value, gamma):
    """Eq. 11's advantage read at the real next observation (`--behavior-advantage data`, the official release's
    reading): r_g at h(o_{t+1}) + gamma * d_t * v(h(o_{t+1})) - v(h(o_t)), with v = 0 past a terminal state.

    All arguments share one shape: the reward and value heads' scalars at o_{t+1}, whether o_{t+1} lies past the
    episode's end, the data's discount d_t and v(h(o_t)).
    """
    return next_reward + gamma * discount * jnp.where(next_absorbing, 0.0, next_value) - value


def one_step_advantage(network, params, state, value, actions, gamma):
    """Eq. 7: adv_g(s, a) = r_g(s, a) + gamma * v(g(s, a)) - v(s) for actions [..., M].

    state [..., *S] (a vector on BSuite, 6x6x64 on Atari) and value [...] belong to the same
    states; returns [..., M]. The dynamics runs once per candidate column (vmap over M).
    """
    lead = actions.ndim - 1
    next_state = jax.vmap(lambda a: network.apply(params, state, a, method=network.dynamics), in_axes=lead, out_axes=lead)(
        actions
    )  # [..., M, *S]
    _, value_logits, reward_logits = network.apply(params, next_state, method=network.predict)
    return logits_to_scalar(reward_logits) + gamma * logits_to_scalar(value_logits) - value[..., None]


def make_loss_fn(args: Args, network: networks.MuZeroNetwork, num_actions: int):
    K, n = args.unroll_steps, args.td_steps

    def loss_fn(params, target_params, window: replay.Window, key: jax.Array):
        batch_size = window.action.shape[0]
        chex.assert_shape(window.action, (batch_size, K + n + 1))

        # Targets from the target network theta' on the real observations (Algorithm 2, IMPROVE).
        target_state = network.apply(target_params, window.observation, method=network.represent)
        prior_logits, target_value_logits, target_reward_logits = network.apply(
            target_params, target_state, method=network.predict
        )
        target_value = logits_to_scalar(target_value_logits)  # v'(s_{t+j}), [B, L]

        # One-step look-ahead at the K + 1 real states (Eq. 6-7). Exact: all A actions, and Eq. 11's
        # model advantage of the data action is read from that result. Sampled: N actions from the
        # prior (Eq. 9), which need not include the data action, so it is appended as column N + 1.
        states, values, logits = target_state[:, : K + 1], target_value[:, : K + 1], prior_logits[:, : K + 1]
        data_action = window.action[:, : K + 1]  # [B, K+1]
        if args.num_samples > 0:
            candidates = jax.random.categorical(key, logits[:, :, None, :], shape=(batch_size, K + 1, args.num_samples))
            with_data = jnp.concatenate([candidates, data_action[..., None]], -1)  # [B, K+1, N+1]
            adv_all = one_step_advantage(network, target_params, states, values, with_data, args.discount)
            adv, adv_data_model = adv_all[..., :-1], adv_all[..., -1]
            policy_target = sampled_policy_target(candidates, adv, num_actions)
        else:
            candidates = jnp.broadcast_to(jnp.arange(num_actions), (batch_size, K + 1, num_actions))
            adv = one_step_advantage(network, target_params, states, values, candidates, args.discount)  # [B, K+1, A]
            adv_data_model = jnp.take_along_axis(adv, data_action[..., None], axis=-1)[..., 0]  # [B, K+1]
            policy_target = exact_policy_target(logits, adv)
        absorbing = window.absorbing[:, : K + 1]
        policy_target = jnp.where(absorbing[..., None], 1.0 / num_actions, policy_target)

        value_target = n_step_value_target(
            window.reward, window.discount, window.has_action, window.absorbing, target_value, args.discount, n, K + 1
        )
        reward_target = window.reward[:, :K]  # reward of the transition into s^{k+1}, 0 past the end

        if args.behavior_advantage == "model":
            adv_behavior = adv_data_model
        else:  # predicted reward at the real next state + gamma v'(s_{t+1}) - v'(s_t)
            next_reward = logits_to_scalar(target_reward_logits[:, 1 : K + 2])
            next_absorbing, discount = window.absorbing[:, 1 : K + 2], window.discount[:, : K + 1]
            adv_behavior = data_advantage(
                next_reward, target_value[:, 1 : K + 2], next_absorbing, discount, values, args.discount
            )
        policy_target, value_target, adv_behavior = jax.lax.stop_gradient((policy_target, value_target, adv_behavior))

        # Online unroll (Algorithm 2, UNROLL): s^0 = h(o_t), s^{k+1} = g(s^k, a_{t+k}).
        state = network.apply(params, window.observation[:, 0], method=network.represent)
        unrolled = [state]
        for k in range(K):
            state = network.apply(params, scale_gradient(state, 0.5), window.action[:, k], method=network.dynamics)
            unrolled.append(state)
        unrolled = jnp.stack(unrolled, axis=1)  # s^0..s^K, [B, K+1, *S]
        # Policy logits [B, K+1, A], value and reward logits [B, K+1, bins] at s^0..s^K.
        policy_logits, value_logits, reward_logits = network.apply(params, unrolled, method=network.predict)

        # Eq. 1 with Eq. 12-14, averaged over the batch and the unroll positions.
        reward_loss = jnp.mean(categorical_cross_entropy(scalar_to_probs(reward_target, args.num_bins), reward_logits[:, 1:]))
        value_loss = jnp.mean(categorical_cross_entropy(scalar_to_probs(value_target, args.num_bins), value_logits))
        policy_loss = jnp.mean(categorical_cross_entropy(policy_target, policy_logits))
        reg_loss = behavior_loss(policy_logits, data_action, adv_behavior, window.has_action[:, : K + 1])
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
            "behavior_filter_rate": jnp.sum((adv_behavior > 0) * window.has_action[:, : K + 1])
            / jnp.maximum(1, jnp.sum(window.has_action[:, : K + 1])),
            "policy_entropy": jnp.mean(-jnp.sum(probs * jnp.log(probs + 1e-12), -1)),
            # The share of the data's actions the policy's argmax at s^0 = h(o_t) matches (BC's accuracy): above the
            # most frequent action's share, the policy reads the observation, not only the action frequencies.
            "accuracy": jnp.mean(jnp.argmax(policy_logits[:, 0], -1) == data_action[:, 0]),
        }
        return total, metrics

    return loss_fn


def make_network(args: Args, num_actions: int):
    """The paper's model: the MLPs of Table 4 on BSuite, the ResNets of Appendix D.2.1 on Atari."""
    if data.is_atari(args.env_id):
        return networks.AtariMuZeroNetwork(
            num_actions=num_actions,
            num_bins=args.num_bins,
            dtype=args.compute_dtype,
            downsample=args.downsample,
            size=args.network_size,
        )
    return networks.MuZeroNetwork(
        num_actions=num_actions, num_bins=args.num_bins, dynamics_layers=(32, args.dynamics_hidden, 32)
    )


def init_train_states(
    network: networks.MuZeroNetwork, optimizer: optax.GradientTransformation, example_obs: jax.Array, seeds
) -> TrainState:
    """One training state per seed, stacked on a leading axis (the axis the update is vmapped over)."""

    def init_one(seed):
        key, init_key = jax.random.split(jax.random.PRNGKey(seed))
        params = network.init(init_key, example_obs, jnp.zeros((1,), jnp.int32))
        opt_state = optimizer.init(params)
        return TrainState(params=params, target_params=params, opt_state=opt_state, step=jnp.int32(0), key=key)

    state = jax.jit(jax.vmap(init_one))(jnp.asarray(seeds))  # jitted: one compile, not one per operation
    return state.replace(target_params=jax.tree.map(jnp.copy, state.target_params))  # own buffers (donated)


def make_train_chunk(args: Args, network: networks.MuZeroNetwork, optimizer, num_actions: int, num_updates: int, mesh=None):
    """A jitted function running `num_updates` updates of every vmapped seed in one dispatch,
    data-parallel over the devices of `mesh` (default: all)."""
    mesh = sharding.data_mesh() if mesh is None else mesh
    loss_fn = make_loss_fn(args, network, num_actions)
    window_length = args.unroll_steps + args.td_steps + 1

    def update(state: TrainState, store: replay.Store):
        key, sample_key, loss_key = jax.random.split(state.key, 3)
        window = replay.sample_windows(store, sample_key, args.batch_size, window_length, num_actions)
        window = sharding.shard_batch(window, mesh)  # the batch axis split over the devices
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, state.target_params, window, loss_key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        step = state.step + 1
        target_params = optax.periodic_update(params, state.target_params, step, args.target_update_interval)
        metrics["grad_norm"] = optax.global_norm(grads)
        state = TrainState(params=params, target_params=target_params, opt_state=opt_state, step=step, key=key)
        return state, metrics

    def chunk(state: TrainState, store: replay.Store):
        state, metrics = jax.lax.scan(lambda s, _: update(s, store), state, None, length=num_updates)
        finite = jnp.all(jnp.isfinite(metrics["loss"]))
        return state, {**jax.tree.map(jnp.mean, metrics), "finite": finite}

    return jax.jit(sharding.over_seeds(chunk, data.is_atari(args.env_id)), donate_argnums=0)


def make_act(network: networks.MuZeroNetwork, num_actions: int, gamma: float, greedy: bool):
    """Acting rule: the one-step improved policy pi(a|s) exp(adv_g(s, a)) / Z with the online network."""

    def act_one(params, observation, key):
        state = network.apply(params, observation, method=network.represent)
        policy_logits, value_logits, _ = network.apply(params, state, method=network.predict)
        value = logits_to_scalar(value_logits)  # [E]
        actions = jnp.broadcast_to(jnp.arange(num_actions), value.shape + (num_actions,))
        adv = one_step_advantage(network, params, state, value, actions, gamma)
        improved_logits = jax.nn.log_softmax(policy_logits) + adv
        if greedy:
            return jnp.argmax(improved_logits, axis=-1)
        return jax.random.categorical(key, improved_logits)

    return jax.jit(jax.vmap(act_one))  # over seeds: params [S, ...], observation [S, E, D], key [S]


# ---------------------------------------------------------------------------------------------
# Main: data, training loop, evaluation, logging, saving. Shared scaffolding, the same in every script
# except the lines under "ALGO LOGIC" (which networks, which update, which acting rule).
# ---------------------------------------------------------------------------------------------


def check_args(args: Args) -> None:
    """Every flag, before any data is read or anything compiled: a one-line UsageError for the first bad one."""
    data.check_env_id(args.env_id)
    errors.check_ranges(
        args,
        {
            "seed": "[0, inf)",
            "num_seeds": "[1, inf)",
            "data_fraction": "(0, 1]",
            "noise": "[0, 1]",
            "run": "[1, 5]",
            "discount": "(0, 1]",
            "learning_rate": "(0, inf)",
            "weight_decay": "[0, inf)",
            "warmup_steps": "[0, inf)",
            "lr_decay_rate": "(0, inf)",
            "lr_decay_steps": "[1, inf)",
            "max_grad_norm": "(0, inf)",
            "target_update_interval": "[1, inf)",
            "policy_coef": "[0, inf)",
            "value_coef": "[0, inf)",
            "unroll_steps": "[1, inf)",
            "td_steps": "[1, inf)",
            "num_bins": "[2, inf)",
            "dynamics_hidden": "[1, inf)",
            "behavior_coef": "[0, inf)",
            "num_samples": "[0, inf)",
            "total_steps": "[1, inf)",
            "batch_size": "[1, inf)",
            "eval_every": "[1, inf)",
            "eval_episodes": "[1, inf)",
            "eval_max_steps": "[1, inf)",
            "updates_per_dispatch": "[1, inf)",
            "device_memory_gb": "(0, inf)",
            "stream_capacity_steps": "[4, inf)",
        },
    )
    if args.store == "stream" and not data.is_atari(args.env_id):
        raise errors.UsageError(
            "--store stream streams Atari shards; BSuite data are always held whole on the device (drop --store)"
        )
    if args.eval_every % args.updates_per_dispatch or args.total_steps % args.updates_per_dispatch:
        raise errors.UsageError(
            f"--eval-every {args.eval_every} and --total-steps {args.total_steps} must be multiples of "
            f"--updates-per-dispatch {args.updates_per_dispatch} (one dispatch size, one compile); change one of them"
        )


# The evaluation's key: the same for every run, so that all agents meet the same environment randomness at update t
# (fold_in(key, t), then fold_in(., seed)), and apart from the training keys (PRNGKey(args.seed + i)): a seed far
# beyond any training seed.
EVAL_SEED = 1_000_003


def main(args: Args) -> None:
    # Shared scaffolding, the same in every script: arguments, run directory, data.
    if args.resume:
        args = runs.Run.saved_args(args.resume, Args, args)  # continue in place with the saved arguments
    if args.eval_only:
        args = runs.Run.checkpoint_args(args, Args)  # the checkpoint's arguments, with this command line's evaluation flags
    args = apply_env_defaults(args)
    check_args(args)
    if args.distributed:
        sharding.init_distributed()  # before any device is touched
    # The precision --compute-dtype auto resolves to on these devices (the BSuite MLPs compute in float32).
    precision = networks.resolve_compute_dtype(args.compute_dtype) if data.is_atari(args.env_id) else "float32"
    args = dataclasses.replace(args, compute_dtype=precision)
    run = runs.Run("rosmo", args)  # runs/{run_name}/: args.json, results.json, checkpoint.msgpack
    seeds = [args.seed + i for i in range(args.num_seeds)]  # agent i of the vmapped batch
    dataset = (
        run.checkpoint_data()  # --eval-only: the checkpoint's shapes, no data read
        if args.eval_only
        else data.load_for(args)  # the dataset its flags name (common/data.py)
    )

    # ALGO LOGIC: network, optimiser, one training state per seed (stacked for vmap), the update, acting.
    network = make_network(args, dataset.num_actions)
    learning_rate = make_learning_rate(args.learning_rate, args.warmup_steps, args.lr_decay_rate, args.lr_decay_steps)
    optimizer = make_optimizer(learning_rate, args.weight_decay, args.max_grad_norm)
    example_obs = jnp.zeros((1, *dataset.obs_shape), dataset.obs_dtype)  # [1, *obs_shape]
    state = init_train_states(network, optimizer, example_obs, seeds)  # leaves [num_seeds, ...]
    act = make_act(network, dataset.num_actions, args.discount, args.eval_greedy)
    eval_key = jax.random.PRNGKey(EVAL_SEED)  # update t: fold_in(eval_key, t), then seed s: fold_in(., s)
    evaluate = evaluation.make_evaluator(args.env_id, act, seeds, args.eval_episodes, args.eval_max_steps, run.video_dir)
    if args.eval_only:  # evaluate the checkpoint's agents (eval.json, videos/ beside it); no data, no training
        run.evaluate_checkpoint(state, evaluate, eval_key)
        return

    train_chunk = make_train_chunk(args, network, optimizer, dataset.num_actions, args.updates_per_dispatch)
    # The store each dispatch samples from: the whole data on the device, or a stream (docs/atari.md).
    feed = data.open_feed(dataset, state, train_chunk, args.store, args.device_memory_gb, args.stream_capacity_steps)
    state, start = run.restore(state, dataset)  # --resume's or --checkpoint's state, else step 0
    state = feed.place(state)  # the state on every device; the batch is split over them

    writer = SummaryWriter(str(run.dir), purge_step=start or None, write_to_disk=run.main)
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in vars(args).items()))
    if args.track and run.main:
        import wandb

        wandb.init(
            project=args.wandb_project_name,
            entity=args.wandb_entity,
            name=run.name,
            id=run.id,
            resume="allow",
            config=vars(args),
            dir=str(run.dir),
            mode=runs.wandb_mode(),
            sync_tensorboard=True,
        )
    interrupted = []  # SIGTERM or SIGINT: save after the current dispatch, then stop
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, frame: interrupted.append(received))

    if run.main and start < args.total_steps:  # the first dispatch compiles the update: say so before the wait
        print(f"compiling the update ({args.updates_per_dispatch} updates per call; about 10-60 s)...", flush=True)
    progress = tqdm(
        total=args.total_steps, initial=start, desc=f"rosmo {args.env_id}", disable=not run.main, bar_format=runs.PROGRESS_BAR
    )

    def close(status: str, step: int) -> None:
        """The one way out of a run (finished, interrupted or diverged): close the progress bar, the TensorBoard
        writer, the data feed and wandb, then mark the run `status` at update `step` in results.json."""
        progress.close()
        writer.close()
        feed.close()
        if args.track and run.main:
            wandb.finish()
        run.finish(status, step)

    def evaluate_and_log(state, step, updates_per_s):
        t0 = time.time()
        returns = evaluate(state.params, jax.random.fold_in(eval_key, step), step)  # mean return per seed, [num_seeds]
        eval_seconds = time.time() - t0  # reported apart from the training time
        writer.add_scalar("charts/eval_seconds", eval_seconds, step)
        writer.add_scalar("charts/eval_return", returns.mean(), step)
        for seed, seed_return in zip(seeds, returns):
            writer.add_scalar(f"charts/eval_return_seed{seed}", seed_return, step)
        episodes = evaluate.episodes[-1]  # Atari: mean episode length and action shares per seed (BSuite: None)
        if episodes is not None:
            writer.add_scalar("charts/eval_episode_length", np.mean(episodes["lengths"]), step)
        scores = run.record(step, returns, state, updates_per_s, eval_seconds, episodes)["normalized_scores"]
        if scores[0] is not None:  # Atari: human-normalised
            writer.add_scalar("charts/normalized_score", np.mean(scores), step)
        progress.set_postfix(eval_return=f"{returns.mean():.3f}", ups=f"{updates_per_s:.0f}")

    # Training loop: each dispatch runs `updates_per_dispatch` scanned updates of every seed (one compile).
    dispatch_seconds, updates_per_s, step = [], float("nan"), start
    for step in range(start + args.updates_per_dispatch, args.total_steps + 1, args.updates_per_dispatch):
        t0 = time.time()
        state, metrics = train_chunk(state, feed.next_store())  # the whole data, or the stream's refilled ring
        metrics = jax.device_get(metrics)  # means over the dispatch, [num_seeds] each
        dispatch_seconds.append(time.time() - t0)
        updates_per_s = args.updates_per_dispatch / np.mean(dispatch_seconds[1:] or dispatch_seconds)  # 1st compiles
        progress.update(args.updates_per_dispatch)
        if not (np.all(metrics.pop("finite")) and np.all(np.isfinite(metrics["grad_norm"]))):  # the NaN stop
            last = run.history["steps"][-1] if run.history["steps"] else 0
            close("diverged", last)
            kept = f"; the last good checkpoint (update {last}) is kept in {run.dir}" if run.history["steps"] else ""
            errors.fail(
                f"the loss or gradient norm became NaN or infinite between updates {step - args.updates_per_dispatch} "
                f"and {step}; stopping{kept}",
                code=1,
            )
        for name, value in metrics.items():
            writer.add_scalar(f"losses/{name}" if name.endswith("loss") else f"train/{name}", value.mean(), step)
        writer.add_scalar("charts/learning_rate", float(learning_rate(step)), step)
        writer.add_scalar("charts/updates_per_s", updates_per_s, step)
        if run.main and (step % args.eval_every == 0 or step == args.total_steps):  # only process 0 evaluates
            evaluate_and_log(state, step, updates_per_s)
        if interrupted:
            run.save(state, step)
            close("interrupted", step)
            print(f"interrupted at update {step}; continue with: python rosmo.py --resume {run.dir}", file=sys.stderr)
            sys.exit(128 + interrupted[0])
    if run.main and run.history["steps"][-1:] != [step]:  # no update ran (a checkpoint at --total-steps): evaluate it
        evaluate_and_log(state, step, updates_per_s)
    close("finished", step)
    if run.main:  # the final return beside the data's, and whether the budget was short of the default one
        print(run.summary(updates_per_s, default_steps=apply_env_defaults(Args(env_id=args.env_id)).total_steps))


if __name__ == "__main__":
    try:
        main(errors.parse_args(Args))  # one-line errors for bad flags, grouped --help
    except (errors.UsageError, errors.DataError) as e:
        errors.fail(str(e))
    except OSError as e:  # a full disk, a missing permission, ...: one line, no traceback
        errors.fail(f"{e.strerror or e} ({e.filename})" if e.filename else str(e))
