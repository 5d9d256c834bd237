"""Which Atari store fits a GPU: the device store of a data fraction or the stream's ring, each beside ROSMO's
update at batch 512, for 24, 40 and 80 GB of device memory (an estimate; nothing is trained).

    python -m benchmark.store_memory                      # ROSMO, Table 3 settings, 18 actions
    python -m benchmark.store_memory --num-actions 9 --fractions 0.01 0.1

The store sizes are common/atari/stream.py's `store_bytes` (frames once, 84 x 84 uint8, plus 25 bytes of per-step
arrays: about 7.1 KB a step, 1M steps a checkpoint shard, 50 shards a run) and `stream_device_bytes` (the
default ring of 131,072 steps and two staged chunks). The update's own memory is XLA's memory analysis of
rosmo.py's jitted update, compiled here for the CPU on shapes only (`jax.eval_shape`, no parameters are
made): arguments, outputs and temporaries, less the store and the donated state. A GPU compile fuses and
schedules differently (and bfloat16 halves the activations), so the figures are estimates. The choice is
`--store auto`'s (common/atari/stream.py `choose_store`): the device store when it fits, else the stream.
"""

from dataclasses import dataclass, field
from typing import List

import tyro

from benchmark.algorithms import script, script_optimizer


@dataclass
class Args:
    batch_size: int = 512
    """windows per update (paper Table 3)"""
    num_actions: int = 18
    """actions of the game (18, the most of any game, is the largest update; MsPacman has 9, Pong 6)"""
    fractions: List[float] = field(default_factory=lambda: [0.01, 0.02, 0.05, 0.1, 0.2, 1.0])
    """data fractions of one run (50 checkpoint shards of about 1M steps)"""
    memory_gb: List[float] = field(default_factory=lambda: [24.0, 40.0, 80.0])
    """device memory to plan for (GB)"""
    compute_dtype: str = "float32"
    """the update's compute precision (bfloat16 for GPUs)"""


def update_bytes(args: Args) -> tuple:
    """(bytes, where they come from) of ROSMO's update besides the store, from XLA's analysis on this machine."""
    import jax
    import jax.numpy as jnp

    from common.atari.memory import DEFAULT_CAPACITY_STEPS, store_shapes, update_memory

    rosmo = script("rosmo")

    run_args = rosmo.apply_env_defaults(
        rosmo.Args(env_id="MsPacman", batch_size=args.batch_size, compute_dtype=args.compute_dtype)
    )
    network = rosmo.make_network(run_args, args.num_actions)
    example = jnp.zeros((1, 84, 84, 4), jnp.uint8)
    optimizer = script_optimizer(rosmo, run_args)
    state = jax.eval_shape(lambda: rosmo.init_train_states(network, optimizer, example, [0]))
    chunk = rosmo.make_train_chunk(run_args, network, optimizer, args.num_actions, run_args.updates_per_dispatch)
    ring = store_shapes(DEFAULT_CAPACITY_STEPS)
    memory = update_memory(chunk.lower(state, ring).compile(), state, ring)
    return memory.bytes, memory.source


def main(args: Args) -> None:
    from common.atari.memory import (
        DEFAULT_CAPACITY_STEPS,
        DEFAULT_REFILL_STEPS,
        STEPS_PER_SHARD,
        choose_store,
        store_bytes,
        stream_device_bytes,
    )
    from common.errors import UsageError

    update, source = update_bytes(args)
    gb = lambda b: f"{b / 1e9:.1f} GB"  # noqa: E731
    stream = stream_device_bytes(DEFAULT_CAPACITY_STEPS, DEFAULT_REFILL_STEPS)
    print(
        f"ROSMO update at batch {args.batch_size}, {args.num_actions} actions, {args.compute_dtype}: {gb(update)} "
        f"({source}, CPU compile); stream ring and chunks {gb(stream)}, with the update {gb(stream + update)}"
    )
    header = " | ".join(f"{m:g} GB" for m in args.memory_gb)
    print(f"| `--data-fraction` | device store + update | {header} |")
    print("|---|---|" + "---|" * len(args.memory_gb))
    for fraction in args.fractions:
        steps = int(fraction * 50 * STEPS_PER_SHARD)
        cells = []
        for memory in args.memory_gb:
            try:
                choice = choose_store(
                    "auto", data_steps=steps, data_fraction=fraction, update_bytes=update, available=int(memory * 1e9)
                ).store
            except UsageError:
                choice = "neither"
            cells.append(choice)
        print(f"| {fraction:g} | {store_bytes(steps) / 1e9:.1f} + {gb(update)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(tyro.cli(Args))
