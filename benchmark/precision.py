"""Can bfloat16 be the accelerator default? The learning targets of one trained network in float32 and bfloat16.

    python -m common.atari.fixture --game Pong --run 1 --num-shards 2 --episodes-per-shard 4 \
        --max-steps 500 --out datasets/precision                     # real ALE frames, RL Unplugged format
    python -m benchmark.precision --data-dir datasets/precision         # on a GPU or TPU
    python -m benchmark.precision --data-dir datasets/precision --batch-size 8 --train-updates 4   # a CPU look

The MuZero network of Appendix D.2.1 (the model ROSMO and MZU share) is trained `--train-updates`
updates by rosmo.py's own update in float32 on the Atari data of `--data-dir`, so that its
predictions are no longer those of the initialisation. Then one batch of `--batch-size` windows is
drawn, and the targets of both scripts are computed from these parameters twice, with float32 and
with bfloat16 compute (parameters stay float32; common/networks.py):

- ROSMO: the exact one-step look-ahead policy target pi = softmax(log pi_prior + adv) (Eq. 6-8) and
  the decoded value v(s) at the K + 1 states of every window (rosmo.py `one_step_advantage`,
  `exact_policy_target`).
- MZU: the search's visit distribution (Eq. 4) and root value (mzu.py `mcts`, Table 3 settings,
  root noise on), with the same key for both precisions. For scale, the same statistics between two
  float32 searches that differ only in their key: the spread of MZU's target that the search's own
  randomness already has.

Reported per target: KL(pi_f32 || pi_bf16) (mean, 99th percentile, max; a floor of 1e-6 on pi_bf16
keeps a zero visit count finite), the total-variation distance, the share of states whose argmax
agrees, and the mean absolute value difference. The rule printed at the end: bfloat16 can be the
default where ROSMO's mean KL is below `--kl-threshold` (1e-2) and MZU's precision difference is no
larger than its key-to-key spread. Writes benchmark/results/precision_{platform}.md.
"""

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from benchmark.algorithms import script, script_optimizer
from benchmark.common_bench import ROOT, machine_description, write_report


@dataclass
class Args:
    data_dir: str
    """RL Unplugged Atari shards ({data_dir}/{Game}/run_{r}-*), e.g. from `python -m common.atari.fixture`"""
    env_id: str = "Pong"
    """Atari game of the shards"""
    run: int = 1
    """RL Unplugged run of the shards"""
    batch_size: int = 512
    """windows of the compared batch and of each training update (paper Table 3: 512)"""
    train_updates: int = 500
    """float32 ROSMO updates before the comparison (learning-rate warm-up over the first tenth)"""
    train_batch_size: int = 128
    """windows per training update"""
    updates_per_dispatch: int = 50
    """training updates fused into one jitted call"""
    kl_threshold: float = 1e-2
    """mean KL below which the two precisions count as agreeing"""
    seed: int = 0
    """seed of the parameters, the training batches and the compared batch"""
    out: str = ""
    """output file (default benchmark/results/precision_{platform}.md)"""


def divergence(p: np.ndarray, q: np.ndarray) -> dict:
    """KL(p || q) with a 1e-6 floor on q, total variation and argmax agreement, over the rows of [N, A] arrays."""
    p, q = p.astype(np.float64), np.maximum(q.astype(np.float64), 1e-6)
    q = q / q.sum(-1, keepdims=True)
    kl = np.sum(np.where(p > 0, p * (np.log(np.maximum(p, 1e-300)) - np.log(q)), 0.0), -1)
    return {
        "kl_mean": float(kl.mean()),
        "kl_p99": float(np.percentile(kl, 99)),
        "kl_max": float(kl.max()),
        "tv_mean": float(0.5 * np.abs(p - q).sum(-1).mean()),
        "argmax_agree": float(np.mean(p.argmax(-1) == q.argmax(-1))),
    }


def rosmo_targets(rosmo, network, params, observation, num_actions: int, discount: float):
    """ROSMO's exact policy target (Eq. 6-8) and decoded value v(s) at the states of `observation` [B, L, ...]."""
    import jax.numpy as jnp

    from common.networks import logits_to_scalar

    state = network.apply(params, observation, method=network.represent)
    prior_logits, value_logits, _ = network.apply(params, state, method=network.predict)
    value = logits_to_scalar(value_logits)
    candidates = jnp.broadcast_to(jnp.arange(num_actions), value.shape + (num_actions,))
    adv = rosmo.one_step_advantage(network, params, state, value, candidates, discount)
    return rosmo.exact_policy_target(prior_logits, adv), value


def train_float32(rosmo, run_args, network, store, num_actions: int, args: Args):
    """`args.train_updates` float32 ROSMO updates (rosmo.py's own update); returns the online parameters."""
    import jax
    import jax.numpy as jnp

    from common.sharding import data_mesh, replicate

    optimizer = script_optimizer(rosmo, run_args)
    state = rosmo.init_train_states(network, optimizer, jnp.zeros((1, 84, 84, 4), jnp.uint8), [args.seed])
    mesh = data_mesh()
    state, store = replicate(state, mesh), replicate(store, mesh)
    per_call = math.gcd(args.updates_per_dispatch, args.train_updates)  # dispatches that add up to train_updates
    chunk = rosmo.make_train_chunk(run_args, network, optimizer, num_actions, per_call, mesh)
    t0 = time.perf_counter()
    for call in range(args.train_updates // per_call):
        state, metrics = chunk(state, store)
        if call == 0 or (call + 1) * per_call >= args.train_updates:
            print(f"  update {(call + 1) * per_call}: loss {float(metrics['loss'][0]):.3f}", flush=True)
    jax.block_until_ready(state)
    print(f"  {args.train_updates} float32 updates in {time.perf_counter() - t0:.1f} s (compilation included)", flush=True)
    return jax.tree.map(lambda x: x[0], state.params)


def main(args: Args) -> None:
    import dataclasses

    import jax

    from common.atari.env import num_actions as game_actions
    from common.atari.loader import load_atari
    from common.data import ATARI_FRAME_STACK, host_store
    from common.replay import sample_windows

    rosmo, mzu = script("rosmo"), script("mzu")
    if min(args.batch_size, args.train_batch_size, args.train_updates, args.updates_per_dispatch) < 1:
        raise SystemExit("error: the batch sizes, --train-updates and --updates-per-dispatch must be at least 1")
    num_actions = game_actions(args.env_id)
    episodes, path = load_atari(args.env_id, args.run, args.data_dir, 1.0)
    store = host_store(episodes, frame_stack=ATARI_FRAME_STACK)
    print(f"data: {path}, {store.action.shape[0]} steps, {num_actions} actions", flush=True)

    rosmo_args = rosmo.apply_env_defaults(rosmo.Args(env_id=args.env_id, batch_size=args.batch_size, seed=args.seed))
    train_args = dataclasses.replace(
        rosmo_args, batch_size=args.train_batch_size, warmup_steps=max(args.train_updates // 10, 1)
    )
    mzu_args = mzu.apply_env_defaults(mzu.Args(env_id=args.env_id, batch_size=args.batch_size, seed=args.seed))
    nets = {
        dtype: rosmo.make_network(dataclasses.replace(rosmo_args, compute_dtype=dtype), num_actions)
        for dtype in ("float32", "bfloat16")
    }
    print(f"training the float32 network on {jax.devices()[0].device_kind}:", flush=True)
    params = train_float32(rosmo, train_args, nets["float32"], store, num_actions, args)

    K = rosmo_args.unroll_steps
    window = sample_windows(
        store, jax.random.PRNGKey(args.seed + 1), args.batch_size, K + rosmo_args.td_steps + 1, num_actions
    )
    observation = window.observation[:, : K + 1]  # the K + 1 real states whose policy targets are learned
    settings = mzu.search_settings(mzu_args)

    def targets(dtype: str, params, observation, key):  # parameters and data as arguments, not constants
        net = nets[dtype]
        policy, value = rosmo_targets(rosmo, net, params, observation, num_actions, rosmo_args.discount)
        search = mzu.mcts(net, params, observation, 2, key, **settings, dirichlet_fraction=mzu_args.dirichlet_fraction)
        return policy, value, search.action_weights, search.root_value

    compute = jax.jit(targets, static_argnums=0)
    key, other_key = jax.random.PRNGKey(args.seed + 2), jax.random.PRNGKey(args.seed + 3)
    f32 = [np.asarray(x) for x in compute("float32", params, observation, key)]
    b16 = [np.asarray(x) for x in compute("bfloat16", params, observation, key)]
    f32_other = [np.asarray(x) for x in compute("float32", params, observation, other_key)]
    flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731 - [B, K+1, A] -> [B(K+1), A]
    rows = [
        ("ROSMO policy target (Eq. 8)", "float32 vs bfloat16", divergence(flat(f32[0]), flat(b16[0])), f32[1], b16[1]),
        ("MZU search policy (Eq. 4)", "float32 vs bfloat16", divergence(flat(f32[2]), flat(b16[2])), f32[3], b16[3]),
        (
            "MZU search policy (Eq. 4)",
            "float32, key vs another key",
            divergence(flat(f32[2]), flat(f32_other[2])),
            f32[3],
            f32_other[3],
        ),
    ]
    for name, pair, d, v1, v2 in rows:
        d["value_abs_diff"] = float(np.mean(np.abs(v1 - v2)))
        d["value_scale"] = float(np.mean(np.abs(v1)))
        print(
            f"{name}, {pair}: KL mean {d['kl_mean']:.2e} (p99 {d['kl_p99']:.2e}, max {d['kl_max']:.2e}), "
            f"TV {d['tv_mean']:.3f}, argmax agrees {100 * d['argmax_agree']:.1f}%, "
            f"|dv| {d['value_abs_diff']:.4f} (|v| {d['value_scale']:.3f})",
            flush=True,
        )
    rosmo_ok = rows[0][2]["kl_mean"] < args.kl_threshold
    mzu_ok = rows[1][2]["tv_mean"] <= rows[2][2]["tv_mean"]
    verdict = (
        f"ROSMO's mean KL {rows[0][2]['kl_mean']:.1e} is {'below' if rosmo_ok else 'not below'} {args.kl_threshold:g}; "
        f"MZU's float32-bfloat16 difference (TV {rows[1][2]['tv_mean']:.3f}) is "
        f"{'within' if mzu_ok else 'larger than'} its key-to-key spread (TV {rows[2][2]['tv_mean']:.3f}). "
        f"bfloat16 {'can' if rosmo_ok and mzu_ok else 'cannot'} be the accelerator default on this evidence."
    )
    print(verdict, flush=True)

    platform = jax.devices()[0].platform
    out = Path(args.out) if args.out else ROOT / "benchmark" / "results" / f"precision_{platform}.md"
    lines = [
        f"# Learning targets in float32 and bfloat16 ({platform})",
        "",
        f"Machine: {machine_description()}. Data: {args.env_id} run {args.run} from `{args.data_dir}` "
        f"({store.action.shape[0]} steps). The Atari MuZero network trained {args.train_updates} float32 ROSMO "
        f"updates (batch {args.train_batch_size}), then one batch of {args.batch_size} windows, {K + 1} states each.",
        f"Command: `python -m benchmark.precision --data-dir {args.data_dir} --env-id {args.env_id} "
        f"--batch-size {args.batch_size} --train-updates {args.train_updates} --train-batch-size {args.train_batch_size}`",
        "",
        "| target | compared | KL mean | KL p99 | KL max | TV mean | argmax agrees | mean abs value diff | mean abs value |",
        "|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {name} | {pair} | {d['kl_mean']:.2e} | {d['kl_p99']:.2e} | {d['kl_max']:.2e} | {d['tv_mean']:.3f} | "
            f"{100 * d['argmax_agree']:.1f}% | {d['value_abs_diff']:.4f} | {d['value_scale']:.3f} |"
            for name, pair, d, _, _ in rows
        ],
        "",
        verdict,
        "",
    ]
    write_report(out, lines)


if __name__ == "__main__":
    main(tyro.cli(Args))
