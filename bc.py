"""Behaviour cloning (the BC baseline of Liu et al., ICLR 2023, Section 4.2), in one file.

A policy network (representation + prediction, paper Fig. 5 right-b) is fitted to the logged
actions by maximum likelihood, -mean log pi(a_data|s), ignoring the rewards. It describes the
average quality of the data and is the naive baseline of the paper. It acts by sampling from pi.

    python bc.py                                     # catch, the paper's BSuite settings
    python bc.py --env-id cartpole --num-seeds 3 --total-steps 50000
    python bc.py --noise 0.3 --eval-greedy           # noisy data, act with argmax pi
"""

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Literal, Optional

import chex
import flax
import jax
import jax.numpy as jnp
import optax
import tyro

from common.data import check_env_id, is_atari, load_offline_data
from common.episodes import DataError
from common.evaluation import make_evaluator
from common.networks import AtariPolicyNetwork, PolicyNetwork, weight_decay_mask
from common.replay import Store, Window, sample_windows
from common.runs import Run, UsageError, fail
from common.sharding import check_batch_divisible, data_mesh, init_distributed, place_store, replicate, shard_batch


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
    """write runs/{run_name}/checkpoint.msgpack at every evaluation and at the end"""
    checkpoint: Optional[str] = None
    """resume from (or, if it already reached --total-steps, only evaluate) this checkpoint"""

    # Data
    env_id: str = "catch"
    """BSuite task (catch, cartpole, mountain_car) or RL Unplugged Atari game (e.g. MsPacman)"""
    data_dir: Optional[str] = None
    """BSuite: data cache root (default $ROSMO_DATA_DIR or ./datasets) or one TFDS builder directory; Atari: shard directory, gs:// or http(s):// URL (default the public RL Unplugged bucket)"""
    data_fraction: float = 1.0
    """keep this uniform fraction of the episodes, in (0, 1]"""
    noise: float = 0.0
    """epsilon of the data: probability that the behaviour agent's action was replaced at random (BSuite)"""
    run: int = 1
    """RL Unplugged run of the game's data, 1..5 (Atari)"""

    # Algorithm (ROSMO paper Table 4's optimiser, this project's choice for every method)
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
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    """network compute precision on Atari (bfloat16 for GPUs and TPUs; parameters stay float32)"""
    updates_per_dispatch: int = 100
    """updates fused into one jitted call with lax.scan"""
    distributed: bool = False
    """multi-host: start jax.distributed (one process per host, each reading its own part of the data)"""


# ---------------------------------------------------------------------------------------------
# Loss: a small pure function (tests check it on hand-made input).
# ---------------------------------------------------------------------------------------------


def bc_loss(policy_logits: jax.Array, action: jax.Array) -> jax.Array:
    """Maximum likelihood of the data actions: -mean_B log pi(a_data|s) (paper Section 4.2, BC)."""
    chex.assert_rank([policy_logits, action], [2, 1])
    chex.assert_equal_shape_prefix([policy_logits, action], 1)
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(policy_logits), action[:, None], axis=-1)[:, 0]
    return -jnp.mean(log_prob)


# ---------------------------------------------------------------------------------------------
# Network, training state and the jitted update.
# ---------------------------------------------------------------------------------------------


@flax.struct.dataclass
class TrainState:
    # BC has no bootstrapped target, so it keeps no target network (no target_params field).
    params: flax.core.FrozenDict
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array


def make_learning_rate(args: Args):
    """Linear warm-up, then x `lr_decay_rate` every `lr_decay_steps` updates (staircase)."""

    def schedule(step):
        warmup = jnp.minimum(1.0, step / max(args.warmup_steps, 1))
        return args.learning_rate * warmup * args.lr_decay_rate ** (step // args.lr_decay_steps)

    return schedule


def make_optimizer(args: Args, params) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(args.max_grad_norm),
        optax.adamw(make_learning_rate(args), weight_decay=args.weight_decay, mask=weight_decay_mask(params)),
    )


def make_loss_fn(network: PolicyNetwork):
    def loss_fn(params, window: Window):
        batch_size = window.action.shape[0]
        chex.assert_shape(window.action, (batch_size, 1))
        # Every window starts at a real transition: (s, a_data) = (observation[:, 0], action[:, 0]).
        policy_logits = network.apply(params, window.observation[:, 0])
        action = window.action[:, 0]
        loss = bc_loss(policy_logits, action)

        probs = jax.nn.softmax(policy_logits)
        metrics = {
            "loss": loss,
            "policy_loss": loss,
            "accuracy": jnp.mean(jnp.argmax(policy_logits, axis=-1) == action),
            "policy_entropy": jnp.mean(-jnp.sum(probs * jnp.log(probs + 1e-12), -1)),
        }
        return loss, metrics

    return loss_fn


def make_network(args: Args, num_actions: int):
    """The policy of paper Fig. 5 right-b: the BSuite MLPs, or the Atari ResNets (Appendix D.2.1)."""
    if is_atari(args.env_id):
        return AtariPolicyNetwork(num_actions=num_actions, dtype=jnp.dtype(args.compute_dtype))
    return PolicyNetwork(num_actions=num_actions)


def init_train_states(args: Args, network: PolicyNetwork, example_obs: jax.Array, seeds) -> TrainState:
    """One training state per seed, stacked on a leading axis (the axis the update is vmapped over)."""

    def init_one(seed):
        key, init_key = jax.random.split(jax.random.PRNGKey(seed))
        params = network.init(init_key, example_obs)
        opt_state = make_optimizer(args, params).init(params)
        return TrainState(params=params, opt_state=opt_state, step=jnp.int32(0), key=key)

    return jax.jit(jax.vmap(init_one))(jnp.asarray(seeds))  # jitted: half the time of op-by-op


def make_train_chunk(args: Args, network: PolicyNetwork, optimizer, num_actions: int, num_updates: int, mesh=None):
    """A jitted function running `num_updates` updates of every vmapped seed in one dispatch,
    data-parallel over the devices of `mesh` (default: all)."""
    mesh = data_mesh() if mesh is None else mesh
    loss_fn = make_loss_fn(network)

    def update(state: TrainState, store: Store):
        key, sample_key = jax.random.split(state.key)
        window = shard_batch(sample_windows(store, sample_key, args.batch_size, 1, num_actions), mesh)  # one-step windows
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, window)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics["grad_norm"] = optax.global_norm(grads)
        state = TrainState(params=params, opt_state=opt_state, step=state.step + 1, key=key)
        return state, metrics

    def chunk(state: TrainState, store: Store):
        state, metrics = jax.lax.scan(lambda s, _: update(s, store), state, None, length=num_updates)
        finite = jnp.all(jnp.isfinite(metrics["loss"]))
        return state, {**jax.tree.map(jnp.mean, metrics), "finite": finite}

    return jax.jit(jax.vmap(chunk, in_axes=(0, None)), donate_argnums=0)


def make_act(network: PolicyNetwork, greedy: bool):
    """Acting rule: sample from pi(a|s) (or its argmax with `greedy`)."""

    def act_one(params, observation, key):
        policy_logits = network.apply(params, observation)
        if greedy:
            return jnp.argmax(policy_logits, axis=-1)
        return jax.random.categorical(key, policy_logits)

    return jax.jit(jax.vmap(act_one))  # over seeds: params [S, ...], observation [S, E, D], key [S]


# ---------------------------------------------------------------------------------------------
# Main: data, training loop, evaluation, logging, saving.
# ---------------------------------------------------------------------------------------------


def apply_env_defaults(args: Args) -> Args:
    """Fill the flags left at None from the env kind: Table 4 on BSuite, Table 3 on Atari (but a 20k-update
    BSuite budget, for a CPU; the paper trains 200k)."""
    atari = is_atari(args.env_id)
    defaults = {
        "batch_size": 512 if atari else 128,
        "total_steps": 200_000 if atari else 20_000,
        "eval_every": 10_000 if atari else 2_000,
    }
    return dataclasses.replace(args, **{k: v for k, v in defaults.items() if getattr(args, k) is None})


def check_args(args: Args) -> None:
    check_env_id(args.env_id)
    if args.eval_max_steps is not None and args.eval_max_steps < 1:
        raise UsageError(f"--eval-max-steps must be at least 1 (or None for the protocol's 27,000), got {args.eval_max_steps}")
    if args.run not in range(1, 6):
        raise UsageError(f"--run must be one of the RL Unplugged runs 1..5, got {args.run}")
    for name in ("num_seeds", "total_steps", "batch_size", "eval_every", "eval_episodes", "updates_per_dispatch"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")


def main(args: Args) -> None:
    args = apply_env_defaults(args)
    check_args(args)
    if args.distributed:
        init_distributed()  # before any device is touched
    run = Run("bc", args)  # outputs of this run; a wrong --checkpoint fails here, before the data
    seeds = [args.seed + i for i in range(args.num_seeds)]  # agent i of the vmapped batch

    # Data: RLDS episodes -> one flat array store on the device (generated on first use).
    data = load_offline_data(args.env_id, args.noise, args.data_dir, args.data_fraction, args.batch_size, args.run)

    # Network, optimiser and one training state per seed (stacked for vmap).
    network = make_network(args, data.num_actions)
    state = init_train_states(args, network, jnp.zeros((1, *data.obs_shape), data.obs_dtype), seeds)
    optimizer = make_optimizer(args, jax.tree.map(lambda x: x[0], state.params))
    state = run.start(state, data.info)
    mesh = data_mesh()  # every device of every process; the batch is split over all of them
    check_batch_divisible(args.batch_size, mesh)
    state, store = replicate(state, mesh), place_store(data.store, mesh)  # one store part per process
    act = make_act(network, args.eval_greedy)
    evaluate = make_evaluator(
        args.env_id, act, seeds, args.eval_episodes, jax.random.PRNGKey(args.seed + 1_000_003), args.eval_max_steps
    )

    # Training loop: `updates_per_dispatch` jitted updates per call, an evaluation every `eval_every`.
    chunks = {}  # one compiled function per chunk length
    while run.step < args.total_steps:
        num_updates = run.chunk_size()
        compiling = num_updates not in chunks
        if compiling:
            chunks[num_updates] = make_train_chunk(args, network, optimizer, data.num_actions, num_updates, mesh)
        t0 = time.time()
        state, metrics = chunks[num_updates](state, store)
        metrics = jax.device_get(metrics)
        run.trained(num_updates, time.time() - t0, metrics, compiling, learning_rate=make_learning_rate(args)(run.step))
        if run.eval_due():
            run.evaluated(evaluate(state.params), state)
    run.finish(state, evaluate)


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except (UsageError, DataError) as e:
        fail(str(e))
