"""Atari learner throughput and achieved FLOP/s against the device's measured peak.

    python -m benchmark.learner                                   # rosmo and mzu, batch 512, float32
    python -m benchmark.learner --compute-dtype bfloat16          # on a GPU or TPU
    python -m benchmark.learner --batch-size 16 --num-updates 4   # a quick look on a CPU
    python -m benchmark.learner --stores device stream            # also the stream path's ring (common/atari/stream.py)
    python -m benchmark.learner --flops-only                      # each update's FLOPs only, on any machine

For each script it builds the Atari networks of Appendix D.2.1 (Table 3 settings chosen from
--env-id), a device store of random 84x84 frames (the update's cost does not depend on the
pixels) and the script's own jitted `make_train_chunk`, exactly as the script trains, then times
`--num-updates` updates after a warm-up call (compilation excluded). FLOPs per update come from
XLA's cost analysis of the lowered chunk, which counts the body of its scan (one update) once (the
lowered program, not the executable: a GPU executable's analysis leaves out the convolutions that
it hands to cuDNN; `--flops-only` prints these counts on any machine without timing); for MZU
the search's loop over simulations (mctx) is counted as one simulation: its FLOP/s is a lower
bound. The peak is measured, not taken from a data sheet: the best of a few square matmuls
(`--matmul-size`) in the compute dtype. Memory per row: the store's bytes (frames once plus the
per-step arrays), the update's own memory from XLA's memory analysis (common/atari/stream.py
`update_memory`) and the device's peak bytes in use so far in this process, over the rows measured
before it too (NaN on a CPU); the
stream row's store is the ring of `--stream-capacity` steps, whatever the data fraction.
Writes benchmark/results/learner_{platform}_{precision}.md.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

import numpy as np
import tyro

from benchmark.algorithms import script, script_optimizer
from benchmark.common_bench import ROOT, machine_description, write_report


@dataclass
class Args:
    algos: List[str] = field(default_factory=lambda: ["rosmo", "mzu"])
    """algorithm scripts to measure"""
    env_id: str = "MsPacman"
    """Atari game (sets the action count and the Table 3 defaults)"""
    batch_size: int = 512
    """windows per update (paper Table 3: 512)"""
    num_updates: int = 50
    """timed updates (after one warm-up chunk)"""
    updates_per_dispatch: int = 10
    """updates fused into one jitted call"""
    network_size: str = "paper"
    """the scripts' --network-size: paper (Appendix D.2.1) or small"""
    compute_dtype: str = "auto"
    """network compute precision: float32, bfloat16 or auto (the scripts' default: bfloat16 on GPUs and TPUs)"""
    store_frames: int = 20_000
    """random frames in the device store"""
    matmul_size: int = 8192
    """side of the square matmul that measures the peak FLOP/s"""
    stores: List[str] = field(default_factory=lambda: ["device"])
    """stores to measure: device (--store-frames random frames) and/or stream (common/atari/stream.py's ring)"""
    stream_capacity: int = 131_072
    """steps of the stream ring (its default)"""
    flops_only: bool = False
    """print each update's FLOPs (XLA's count of the lowered program; no compile, no timing, any machine) and stop"""
    out: str = ""
    """output file (default benchmark/results/learner_{platform}_{precision}.md)"""


def synthetic_store(num_frames: int, episode_length: int = 500):
    """A Store of random uint8 frames cut into whole episodes of `episode_length` steps, 4-frame stacking."""
    from common.data import ATARI_FRAME_STACK
    from common.episodes import Episodes
    from common.replay import make_store

    rng = np.random.default_rng(0)
    n = max(num_frames // episode_length, 1) * episode_length
    step = np.arange(n) % episode_length
    last = step == episode_length - 1
    episodes = Episodes(
        observation=rng.integers(0, 256, size=(n, 84, 84), dtype=np.uint8),
        action=np.where(last, 0, rng.integers(0, 4, size=n)).astype(np.int32),
        reward=np.where(last, 0.0, rng.choice([0.0, 1.0], size=n, p=[0.9, 0.1])).astype(np.float32),
        discount=np.where(last, 0.0, 1.0).astype(np.float32),
        is_first=step == 0,
        is_last=last,
        is_terminal=last,
    )
    return make_store(episodes, frame_stack=ATARI_FRAME_STACK)


def synthetic_ring(capacity: int, episode_length: int = 500):
    """The stream path's Store: a Ring (common/atari/stream.py) of `capacity` steps filled with random episodes."""
    from common.atari.stream import Ring
    from common.episodes import Episodes

    full = synthetic_store(capacity)
    frames = np.asarray(full.observation)
    ring = Ring(capacity, refill=min(capacity // 2, 32_768))
    step = np.arange(episode_length)
    last = step == episode_length - 1
    for first in range(0, capacity - episode_length + 1, episode_length):
        rows = slice(first, first + episode_length)
        ring.write(
            ring.chunk(
                [
                    Episodes(
                        frames[rows],
                        np.asarray(full.action)[rows],
                        np.asarray(full.reward)[rows],
                        np.asarray(full.discount)[rows],
                        step == 0,
                        last,
                        last,
                    )
                ]
            )
        )
    return ring.store()


def measured_peak(size: int, dtype) -> float:
    import jax

    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), dtype)
    b = jax.random.normal(jax.random.PRNGKey(1), (size, size), dtype)
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best


def measure(algo: str, args: Args, store) -> dict:
    import jax
    import jax.numpy as jnp

    from common.atari.env import num_actions
    from common.sharding import data_mesh, replicate

    module = script(algo)
    run_args = module.apply_env_defaults(
        module.Args(
            env_id=args.env_id, batch_size=args.batch_size, compute_dtype=args.compute_dtype, network_size=args.network_size
        )
    )
    actions = num_actions(args.env_id)
    network = module.make_network(run_args, actions)
    optimizer = script_optimizer(module, run_args)
    state = module.init_train_states(network, optimizer, jnp.zeros((1, 84, 84, 4), jnp.uint8), [0])
    mesh = data_mesh()
    state, store = replicate(state, mesh), replicate(store, mesh)

    # XLA's cost analysis of the lowered program (before the backend rewrites convolutions into library calls,
    # which a GPU executable's analysis leaves uncounted) counts the body of the chunk's scan once: one update.
    lowered = module.make_train_chunk(run_args, network, optimizer, actions, args.updates_per_dispatch, mesh).lower(
        state, store
    )
    cost = lowered.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    if args.flops_only:
        return {"algo": algo, "flops_per_update": flops}
    chunk = lowered.compile()

    state, metrics = chunk(state, store)  # warm up
    jax.block_until_ready(metrics)
    dispatches = max(args.num_updates // args.updates_per_dispatch, 1)
    t0 = time.perf_counter()
    for _ in range(dispatches):
        state, metrics = chunk(state, store)
    jax.block_until_ready(metrics)
    seconds = time.perf_counter() - t0
    ups = dispatches * args.updates_per_dispatch / seconds
    from common.atari.memory import store_bytes, update_memory

    memory = update_memory(chunk, state, store)
    stats = jax.local_devices()[0].memory_stats() or {}
    return {
        "algo": algo,
        "updates_per_s": ups,
        "flops_per_update": flops,
        "flops_per_s": flops * ups,
        "store_gb": store_bytes(store.action.shape[0]) / 1e9,
        "update_gb": memory.bytes / 1e9,
        "memory_source": memory.source,
        "peak_gb": stats.get("peak_bytes_in_use", float("nan")) / 1e9,
    }


def main(args: Args) -> None:
    import jax
    import jax.numpy as jnp

    if args.updates_per_dispatch < 1 or args.num_updates < 1 or args.batch_size < 1:
        raise SystemExit("error: --batch-size, --num-updates and --updates-per-dispatch must be at least 1")
    from common.networks import resolve_compute_dtype

    if args.compute_dtype not in ("auto", "float32", "bfloat16"):
        raise SystemExit("error: --compute-dtype must be auto, float32 or bfloat16")
    if args.network_size not in ("paper", "small"):
        raise SystemExit("error: --network-size must be paper or small")
    args.compute_dtype = resolve_compute_dtype(args.compute_dtype)  # the table names the precision measured
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[args.compute_dtype]
    if args.flops_only:
        store = synthetic_store(args.store_frames)
        for algo in args.algos:
            flops = measure(algo, args, store)["flops_per_update"]
            print(f"{algo}: {flops / 1e9:.1f} GFLOP per update at batch {args.batch_size} (XLA, lowered program)")
        return
    peak = measured_peak(args.matmul_size, dtype)
    print(f"measured peak ({args.matmul_size}^3 {args.compute_dtype} matmul): {peak / 1e12:.2f} TFLOP/s", flush=True)
    if not set(args.stores) <= {"device", "stream"}:
        raise SystemExit("error: --stores takes device and/or stream")
    rows = []
    stores = {
        kind: synthetic_store(args.store_frames) if kind == "device" else synthetic_ring(args.stream_capacity)
        for kind in args.stores
    }
    for kind, algo in [(kind, algo) for kind in args.stores for algo in args.algos]:
        row = {**measure(algo, args, stores[kind]), "store": kind}
        rows.append(row)
        print(
            f"{algo} ({kind} store): {row['updates_per_s']:.2f} updates/s, "
            f"{row['flops_per_update'] / 1e9:.1f} GFLOP/update, "
            f"{row['flops_per_s'] / 1e12:.3f} TFLOP/s = {100 * row['flops_per_s'] / peak:.1f}% of the measured peak, "
            f"store {row['store_gb']:.2f} GB + update {row['update_gb']:.2f} GB ({row['memory_source']}), "
            f"device peak so far {row['peak_gb']:.2f} GB",
            flush=True,
        )
    platform = jax.devices()[0].platform
    size = "" if args.network_size == "paper" else f"_{args.network_size}"
    path = Path(args.out) if args.out else ROOT / "benchmark" / "results" / f"learner_{platform}_{args.compute_dtype}{size}.md"
    lines = [
        f"# Atari learner throughput ({platform})",
        "",
        f"Machine: {machine_description()}; {len(jax.devices())} device(s). {args.env_id} networks (Table 3, "
        f"--network-size {args.network_size}), batch "
        f"{args.batch_size}, compute {args.compute_dtype}, {args.num_updates} timed updates in dispatches of "
        f"{args.updates_per_dispatch}, compilation excluded. Peak: best {args.matmul_size}^3 matmul, "
        f"{peak / 1e12:.2f} TFLOP/s.",
        f"Command: `python -m benchmark.learner --algos {' '.join(args.algos)} --network-size {args.network_size} "
        f"--batch-size {args.batch_size} "
        f"--compute-dtype {args.compute_dtype} --num-updates {args.num_updates} --stores {' '.join(args.stores)}`",
        "",
        "| algorithm | store | updates/s | GFLOP per update (XLA) | achieved TFLOP/s | share of measured peak "
        "| store GB | update GB (XLA memory analysis) | device's peak GB in use, this process so far |",
        "|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {r['algo']} | {r['store']} | {r['updates_per_s']:.2f} | {r['flops_per_update'] / 1e9:.1f} | "
            f"{r['flops_per_s'] / 1e12:.3f} | {100 * r['flops_per_s'] / peak:.1f}% | {r['store_gb']:.2f} | "
            f"{r['update_gb']:.2f} | {r['peak_gb']:.2f} |"
            for r in rows
        ],
        "",
        "MZU's FLOPs count its search loop once (XLA's cost analysis of a while loop), so its figures are lower bounds.",
        "",
    ]
    write_report(path, lines)


if __name__ == "__main__":
    main(tyro.cli(Args))
