"""Behaviour cloning (the BC baseline of Liu et al., ICLR 2023, Section 4.2), in one file.

A policy network (representation + prediction, paper Fig. 5 right-b) is fitted to the logged
actions by maximum likelihood, -mean log pi(a_data|s), ignoring the rewards. It describes the
average quality of the data and is the naive baseline of the paper. It acts by sampling from pi.

    python bc.py                                     # catch, the paper's BSuite settings
    python bc.py --env-id cartpole --num-seeds 3 --total-steps 50000
    python bc.py --noise 0.3 --eval-greedy           # noisy data, act with argmax pi
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
    "atari": {"batch_size": 512, "total_steps": 200_000, "eval_every": 10_000},
    "bsuite": {"batch_size": 128, "total_steps": 20_000, "eval_every": 2_000},
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
# ALGO LOGIC: the loss, a small pure function (tests check it on hand-made input).
# ---------------------------------------------------------------------------------------------


def bc_loss(policy_logits: jax.Array, action: jax.Array) -> jax.Array:
    """Maximum likelihood of the data actions: -mean_B log pi(a_data|s) (paper Section 4.2, BC)."""
    chex.assert_rank([policy_logits, action], [2, 1])
    chex.assert_equal_shape_prefix([policy_logits, action], 1)
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(policy_logits), action[:, None], axis=-1)[:, 0]
    return -jnp.mean(log_prob)


# ---------------------------------------------------------------------------------------------
# ALGO LOGIC: network, training state and the jitted update.
# ---------------------------------------------------------------------------------------------


@flax.struct.dataclass
class TrainState:
    # BC has no bootstrapped target, so it keeps no target network (no target_params field).
    params: flax.core.FrozenDict
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


def make_loss_fn(network: networks.PolicyNetwork):
    def loss_fn(params, window: replay.Window):
        batch_size = window.action.shape[0]
        chex.assert_shape(window.action, (batch_size, 1))
        # Every window starts at a real transition: (s, a_data) = (observation[:, 0], action[:, 0]).
        policy_logits = network.apply(params, window.observation[:, 0])  # [B, A]
        action = window.action[:, 0]  # [B]
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
    if data.is_atari(args.env_id):
        return networks.AtariPolicyNetwork(
            num_actions=num_actions, dtype=args.compute_dtype, downsample=args.downsample, size=args.network_size
        )
    return networks.PolicyNetwork(num_actions=num_actions)


def init_train_states(
    network: networks.PolicyNetwork, optimizer: optax.GradientTransformation, example_obs: jax.Array, seeds
) -> TrainState:
    """One training state per seed, stacked on a leading axis (the axis the update is vmapped over)."""

    def init_one(seed):
        key, init_key = jax.random.split(jax.random.PRNGKey(seed))
        params = network.init(init_key, example_obs)
        opt_state = optimizer.init(params)
        return TrainState(params=params, opt_state=opt_state, step=jnp.int32(0), key=key)

    return jax.jit(jax.vmap(init_one))(jnp.asarray(seeds))  # jitted: one compile, not one per operation


def make_train_chunk(args: Args, network: networks.PolicyNetwork, optimizer, num_actions: int, num_updates: int, mesh=None):
    """A jitted function running `num_updates` updates of every vmapped seed in one dispatch,
    data-parallel over the devices of `mesh` (default: all)."""
    mesh = sharding.data_mesh() if mesh is None else mesh
    loss_fn = make_loss_fn(network)

    def update(state: TrainState, store: replay.Store):
        key, sample_key = jax.random.split(state.key)
        window = replay.sample_windows(store, sample_key, args.batch_size, 1, num_actions)  # one-step windows
        window = sharding.shard_batch(window, mesh)  # the batch axis split over the devices
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, window)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics["grad_norm"] = optax.global_norm(grads)
        state = TrainState(params=params, opt_state=opt_state, step=state.step + 1, key=key)
        return state, metrics

    def chunk(state: TrainState, store: replay.Store):
        state, metrics = jax.lax.scan(lambda s, _: update(s, store), state, None, length=num_updates)
        finite = jnp.all(jnp.isfinite(metrics["loss"]))
        return state, {**jax.tree.map(jnp.mean, metrics), "finite": finite}

    return jax.jit(sharding.over_seeds(chunk, data.is_atari(args.env_id)), donate_argnums=0)


def make_act(network: networks.PolicyNetwork, greedy: bool):
    """Acting rule: sample from pi(a|s) (or its argmax with `greedy`)."""

    def act_one(params, observation, key):
        policy_logits = network.apply(params, observation)
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
            "learning_rate": "(0, inf)",
            "weight_decay": "[0, inf)",
            "warmup_steps": "[0, inf)",
            "lr_decay_rate": "(0, inf)",
            "lr_decay_steps": "[1, inf)",
            "max_grad_norm": "(0, inf)",
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
    run = runs.Run("bc", args)  # runs/{run_name}/: args.json, results.json, checkpoint.msgpack
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
    act = make_act(network, args.eval_greedy)
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
        total=args.total_steps, initial=start, desc=f"bc {args.env_id}", disable=not run.main, bar_format=runs.PROGRESS_BAR
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
            print(f"interrupted at update {step}; continue with: python bc.py --resume {run.dir}", file=sys.stderr)
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
