"""Critic Regularized Regression (Wang et al., NeurIPS 2020), discrete actions, in one file.

The CRR baseline of Liu et al. (ICLR 2023, Section 4.2, Fig. 5 right-c): a policy network
(representation + prediction) and a categorical critic Q(s, a) over the project's value
transform (QNetwork), trained together. The critic regresses onto the one-step target
r + gamma * sum_a' pi'(a'|s') Q'(s', a') of the target networks; the policy does behaviour
cloning weighted by f(A(s, a_data)) with the advantage A = Q(s, a) - V(s) of the target critic,
f = 1[A > 0] (binary) or min(exp(A / beta), 20) (exp). It acts by sampling from pi.

    python crr.py                                    # catch, exp weights, mean baseline
    python crr.py --env-id cartpole --num-seeds 3 --total-steps 50000
    python crr.py --weighting binary                 # CRR binary: filtered behaviour cloning
    python crr.py --advantage-baseline max           # V(s) = max_a Q(s, a)
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

    # Algorithm (paper Table 4 for the shared settings; CRR's own from Wang et al. and acme)
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
    target_update_interval: int = 100
    """updates between hard copies of the online into the target networks (acme's CRR default)"""
    policy_coef: float = 1.0
    """weight of the policy loss"""
    critic_coef: float = 1.0
    """weight of the critic loss"""
    num_bins: Optional[int] = None
    """categorical bins of the Q head; default 20 on BSuite, 601 on Atari"""
    weighting: Literal["exp", "binary"] = "exp"
    """f(A): 'exp' = min(exp(A / beta), --max-weight), 'binary' = 1[A > 0]"""
    beta: float = 1.0
    """temperature of the exp weighting"""
    max_weight: float = 20.0
    """upper bound of the exp weighting"""
    advantage_baseline: Literal["mean", "max"] = "mean"
    """V(s) in A = Q(s, a) - V(s): 'mean' = sum_a pi(a|s) Q(s, a), 'max' = max_a Q(s, a)"""

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
    """act greedily on the policy (argmax) instead of sampling from it"""
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
    "atari": {"num_bins": 601, "batch_size": 512, "total_steps": 200_000, "eval_every": 10_000},
    "bsuite": {"num_bins": 20, "batch_size": 128, "total_steps": 20_000, "eval_every": 2_000},
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


def categorical_cross_entropy(target_probs: jax.Array, logits: jax.Array) -> jax.Array:
    """-p^T log q over the last axis (the categorical value loss of the paper, Eq. 12-14)."""
    return -jnp.sum(target_probs * jax.nn.log_softmax(logits), axis=-1)


def critic_target(
    reward: jax.Array, discount: jax.Array, next_q_values: jax.Array, next_policy_probs: jax.Array, gamma: float
) -> jax.Array:
    """y = r + gamma * d * sum_a' pi'(a'|s') Q'(s', a'): CRR's one-step TD target, the expectation
    over the target policy taking the place of acme's sampled next action. d = 0 at termination.

    reward, discount [B]; next_q_values, next_policy_probs [B, A] (target networks at s').
    """
    chex.assert_rank([reward, discount, next_q_values, next_policy_probs], [1, 1, 2, 2])
    chex.assert_equal_shape([reward, discount])
    chex.assert_equal_shape([next_q_values, next_policy_probs])
    chex.assert_equal_shape_prefix([reward, next_q_values], 1)
    next_value = jnp.sum(next_policy_probs * next_q_values, axis=-1)
    return reward + gamma * discount * next_value


def advantage(q_values: jax.Array, policy_probs: jax.Array, action: jax.Array, baseline: str) -> jax.Array:
    """A(s, a) = Q(s, a) - V(s), with V(s) = sum_a pi(a|s) Q(s, a) ('mean') or max_a Q(s, a) ('max')
    (CRR Table 1's two estimators, exact over the discrete actions instead of sampled).

    q_values, policy_probs [B, A]; action [B] -> [B].
    """
    chex.assert_rank([q_values, policy_probs, action], [2, 2, 1])
    chex.assert_equal_shape([q_values, policy_probs])
    chex.assert_equal_shape_prefix([q_values, action], 1)
    q_action = jnp.take_along_axis(q_values, action[:, None], axis=-1)[:, 0]
    if baseline == "mean":
        value = jnp.sum(policy_probs * q_values, axis=-1)
    elif baseline == "max":
        value = jnp.max(q_values, axis=-1)
    else:
        raise ValueError(f"unknown advantage baseline '{baseline}'; use 'mean' or 'max'")
    return q_action - value


def crr_weights(adv: jax.Array, weighting: str, beta: float, max_weight: float) -> jax.Array:
    """f(A): 1[A > 0] (CRR binary, Eq. 3) or min(exp(A / beta), max_weight) (CRR exp, Eq. 4).

    The exponent is capped at log(max_weight) before exp, the same value without an overflow.
    """
    if weighting == "binary":
        return (adv > 0).astype(adv.dtype)
    if weighting == "exp":
        return jnp.exp(jnp.minimum(adv / beta, jnp.log(max_weight)))
    raise ValueError(f"unknown weighting '{weighting}'; use 'exp' or 'binary'")


def critic_loss(q_logits: jax.Array, action: jax.Array, target: jax.Array, num_bins: int) -> jax.Array:
    """Cross-entropy of the Q logits at the data action against the two-hot target y, batch mean."""
    chex.assert_rank([q_logits, action, target], [3, 1, 1])
    chex.assert_equal_shape([action, target])
    chex.assert_axis_dimension(q_logits, 2, num_bins)
    logits = jnp.take_along_axis(q_logits, action[:, None, None], axis=1)[:, 0]  # [B, N]
    return jnp.mean(categorical_cross_entropy(scalar_to_probs(target, num_bins), logits))


def policy_loss(policy_logits: jax.Array, action: jax.Array, weights: jax.Array) -> jax.Array:
    """CRR's weighted behaviour cloning: -mean_B f(A(s, a)) log pi(a|s) over the data pairs."""
    chex.assert_rank([policy_logits, action, weights], [2, 1, 1])
    chex.assert_equal_shape([action, weights])
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(policy_logits), action[:, None], axis=-1)[:, 0]
    return -jnp.mean(weights * log_prob)


# ---------------------------------------------------------------------------------------------
# ALGO LOGIC: networks, training state and the jitted update.
# ---------------------------------------------------------------------------------------------


@flax.struct.dataclass
class TrainState:
    params: flax.core.FrozenDict  # {"policy": PolicyNetwork params, "critic": QNetwork params}
    target_params: flax.core.FrozenDict  # the same, hard-copied every target_update_interval updates
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


def make_loss_fn(args: Args, policy_net: networks.PolicyNetwork, critic_net: networks.QNetwork):
    def loss_fn(params, target_params, window: replay.Window):
        batch_size = window.action.shape[0]
        chex.assert_shape(window.action, (batch_size, 2))
        # A one-step transition (s, a, r, s') per window; discount[:, 0] = 0 where it terminated.
        observation, next_observation = window.observation[:, 0], window.observation[:, 1]
        action, reward, discount = window.action[:, 0], window.reward[:, 0], window.discount[:, 0]

        # Target networks: Q'(s, .) and Q'(s', .) in one call, pi'(.|s') for the critic target.
        target_q = logits_to_scalar(critic_net.apply(target_params["critic"], window.observation[:, :2]))  # [B, 2, A]
        next_probs = jax.nn.softmax(policy_net.apply(target_params["policy"], next_observation))
        target = critic_target(reward, discount, target_q[:, 1], next_probs, args.discount)

        # Advantage of the data action from the target critic, V from the online policy; constants.
        policy_logits = policy_net.apply(params["policy"], observation)
        adv = advantage(target_q[:, 0], jax.nn.softmax(policy_logits), action, args.advantage_baseline)
        target, adv = jax.lax.stop_gradient((target, adv))
        weights = crr_weights(adv, args.weighting, args.beta, args.max_weight)

        q_logits = critic_net.apply(params["critic"], observation)  # [B, A, num_bins]
        c_loss = critic_loss(q_logits, action, target, args.num_bins)
        p_loss = policy_loss(policy_logits, action, weights)
        total = args.critic_coef * c_loss + args.policy_coef * p_loss

        probs = jax.nn.softmax(policy_logits)
        q_action = jnp.take_along_axis(logits_to_scalar(q_logits), action[:, None], axis=-1)[:, 0]
        metrics = {
            "loss": total,
            "critic_loss": c_loss,
            "policy_loss": p_loss,
            "q_data": jnp.mean(q_action),
            "critic_target": jnp.mean(target),
            "advantage": jnp.mean(adv),
            "weight": jnp.mean(weights),
            "positive_advantage_rate": jnp.mean(adv > 0),
            "policy_entropy": jnp.mean(-jnp.sum(probs * jnp.log(probs + 1e-12), -1)),
        }
        return total, metrics

    return loss_fn


def make_networks(args: Args, num_actions: int):
    """Actor and critic of paper Fig. 5 right-c: BSuite MLPs, or the Atari ResNets (Appendix D.2.1)."""
    if data.is_atari(args.env_id):
        dtype = args.compute_dtype
        return (
            networks.AtariPolicyNetwork(
                num_actions=num_actions, dtype=dtype, downsample=args.downsample, size=args.network_size
            ),
            networks.AtariQNetwork(
                num_actions=num_actions,
                num_bins=args.num_bins,
                dtype=dtype,
                downsample=args.downsample,
                size=args.network_size,
            ),
        )
    return networks.PolicyNetwork(num_actions=num_actions), networks.QNetwork(num_actions=num_actions, num_bins=args.num_bins)


def init_train_states(
    policy_net: networks.PolicyNetwork,
    critic_net: networks.QNetwork,
    optimizer: optax.GradientTransformation,
    example_obs: jax.Array,
    seeds,
) -> TrainState:
    """One training state per seed, stacked on a leading axis (the axis the update is vmapped over)."""

    def init_one(seed):
        key, policy_key, critic_key = jax.random.split(jax.random.PRNGKey(seed), 3)
        observation = example_obs
        params = {"policy": policy_net.init(policy_key, observation), "critic": critic_net.init(critic_key, observation)}
        opt_state = optimizer.init(params)
        return TrainState(params=params, target_params=params, opt_state=opt_state, step=jnp.int32(0), key=key)

    state = jax.jit(jax.vmap(init_one))(jnp.asarray(seeds))  # jitted: one compile, not one per operation
    return state.replace(target_params=jax.tree.map(jnp.copy, state.target_params))  # own buffers (donated)


def make_train_chunk(
    args: Args,
    policy_net: networks.PolicyNetwork,
    critic_net: networks.QNetwork,
    optimizer,
    num_actions: int,
    num_updates: int,
    mesh=None,
):
    """A jitted function running `num_updates` updates of every vmapped seed in one dispatch,
    data-parallel over the devices of `mesh` (default: all)."""
    mesh = sharding.data_mesh() if mesh is None else mesh
    loss_fn = make_loss_fn(args, policy_net, critic_net)

    def update(state: TrainState, store: replay.Store):
        key, sample_key = jax.random.split(state.key)
        window = replay.sample_windows(store, sample_key, args.batch_size, 2, num_actions)  # (s, a, r, s') windows
        window = sharding.shard_batch(window, mesh)  # the batch axis split over the devices
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, state.target_params, window)
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


def make_act(policy_net: networks.PolicyNetwork, greedy: bool):
    """Acting rule: sample from the online policy pi(a|s) (or its argmax with `greedy`)."""

    def act_one(params, observation, key):
        policy_logits = policy_net.apply(params["policy"], observation)
        if greedy:
            return jnp.argmax(policy_logits, axis=-1)
        return jax.random.categorical(key, policy_logits)

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
            "critic_coef": "[0, inf)",
            "num_bins": "[2, inf)",
            "beta": "(0, inf)",
            "max_weight": "(0, inf)",
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
    run = runs.Run("crr", args)  # runs/{run_name}/: args.json, results.json, checkpoint.msgpack
    seeds = [args.seed + i for i in range(args.num_seeds)]  # agent i of the vmapped batch
    dataset = (
        run.checkpoint_data()  # --eval-only: the checkpoint's shapes, no data read
        if args.eval_only
        else data.load_for(args)  # the dataset its flags name (common/data.py)
    )

    # ALGO LOGIC: network, optimiser, one training state per seed (stacked for vmap), the update, acting.
    policy_net, critic_net = make_networks(args, dataset.num_actions)  # paper Fig. 5 right-c
    learning_rate = make_learning_rate(args.learning_rate, args.warmup_steps, args.lr_decay_rate, args.lr_decay_steps)
    optimizer = make_optimizer(learning_rate, args.weight_decay, args.max_grad_norm)
    example_obs = jnp.zeros((1, *dataset.obs_shape), dataset.obs_dtype)  # [1, *obs_shape]
    state = init_train_states(policy_net, critic_net, optimizer, example_obs, seeds)  # leaves [num_seeds, ...]
    act = make_act(policy_net, args.eval_greedy)
    eval_key = jax.random.PRNGKey(EVAL_SEED)  # update t: fold_in(eval_key, t), then seed s: fold_in(., s)
    evaluate = evaluation.make_evaluator(args.env_id, act, seeds, args.eval_episodes, args.eval_max_steps, run.video_dir)
    if args.eval_only:  # evaluate the checkpoint's agents (eval.json, videos/ beside it); no data, no training
        run.evaluate_checkpoint(state, evaluate, eval_key)
        return

    train_chunk = make_train_chunk(args, policy_net, critic_net, optimizer, dataset.num_actions, args.updates_per_dispatch)
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
        total=args.total_steps, initial=start, desc=f"crr {args.env_id}", disable=not run.main, bar_format=runs.PROGRESS_BAR
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
            print(f"interrupted at update {step}; continue with: python crr.py --resume {run.dir}", file=sys.stderr)
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
