"""In-memory episodic store and on-device sampling of training windows.

`make_store` moves an `Episodes` (common/episodes.py) to the device once, together with, for
every step, the indices of the first and last steps of its episode. `sample_windows` is a pure,
jittable function: it draws `batch_size` start steps uniformly over all transitions of the data and
gathers windows of `length` consecutive steps (K + n + 1 for the model-based learners). Windows
never read across an episode boundary: steps past the episode's last step repeat that last
observation and come with masks that say so:

  has_action[j]  a real transition leaves step j (action, reward and discount are data);
  absorbing[j]   step j is a terminal state or lies past the episode's end: its value is 0,
                 the policy target there is uniform, and no behaviour term applies.

Where has_action is False the action is drawn uniformly at random (the model still unrolls
through it, towards zero reward and value), the reward is 0 and the discount 1. An n-step
return that reaches a terminal state is cut by that transition's discount of 0; one that runs
past the end of a truncated episode bootstraps from its last observation, repeated there.

Frame stacking (Atari): with `make_store(episodes, frame_stack=F)`, F > 1, the data holds single
frames [N, H, W] and a window's observation at step i is the stack [H, W, F] of the frames
max(i - F + 1 + j, episode start) for j = 0..F-1, newest last: the first frame repeats at the
start of an episode and a stack never reaches into the previous one. F is carried by the shape of
`Store.frame_offsets`, so it is static under jit; F = 1 (BSuite) returns observations unchanged.

Sampling inside the jitted update means no host round trip per batch. This module holds no
loss code and imports no network.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from common.episodes import Episodes
from common.errors import DataError
from common.sharding import PROCESS_AXIS, replicate


class Store(NamedTuple):
    observation: jax.Array  # [N, *obs_shape]
    action: jax.Array  # [N] int32
    reward: jax.Array  # [N] float32
    discount: jax.Array  # [N] float32
    is_terminal: jax.Array  # [N] bool
    episode_end: jax.Array  # [N] int32, index of the last step of the step's episode
    starts: jax.Array  # [M] int32, every step that starts a transition (not is_last)
    episode_start: jax.Array  # [N] int32, index of the first step of the step's episode
    frame_offsets: jax.Array  # [F] int32, -(F-1)..0: steps stacked into one observation (F = frame_stack)
    num_starts: jax.Array  # [] int32, entries of `starts` that are real (the rest pads a process's shard)


class Window(NamedTuple):
    observation: jax.Array  # [B, L, *obs_shape], or [B, L, *obs_shape, F] with frame stacking
    action: jax.Array  # [B, L] int32 (uniform random where not has_action)
    reward: jax.Array  # [B, L] float32 (0 where not has_action)
    discount: jax.Array  # [B, L] float32 (1 where not has_action)
    has_action: jax.Array  # [B, L] bool
    absorbing: jax.Array  # [B, L] bool


def make_store(episodes: Episodes, frame_stack: int = 1) -> Store:
    """Flat episode arrays -> device-resident Store (episode bounds precomputed on the host).

    `frame_stack` F > 1 makes windows stack the last F frames of each step (Atari: 4).
    """
    if frame_stack < 1:
        raise DataError(f"frame_stack must be at least 1, got {frame_stack}")
    first = np.flatnonzero(episodes.is_first)
    last = np.flatnonzero(episodes.is_last)
    episode_id = np.cumsum(episodes.is_first) - 1
    episode_end = last[episode_id].astype(np.int32)
    episode_start = first[episode_id].astype(np.int32)
    starts = np.flatnonzero(~episodes.is_last).astype(np.int32)
    return Store(
        observation=jnp.asarray(episodes.observation),
        action=jnp.asarray(episodes.action, jnp.int32),
        reward=jnp.asarray(episodes.reward, jnp.float32),
        discount=jnp.asarray(episodes.discount, jnp.float32),
        is_terminal=jnp.asarray(episodes.is_terminal, bool),
        episode_end=jnp.asarray(episode_end),
        starts=jnp.asarray(starts),
        episode_start=jnp.asarray(episode_start),
        frame_offsets=jnp.arange(1 - frame_stack, 1, dtype=jnp.int32),
        num_starts=jnp.asarray(len(starts), jnp.int32),
    )


def pad_store(store: Store, num_steps: int, num_starts: int) -> Store:
    """A host (numpy) copy of `store` padded with zeros to `num_steps` steps and `num_starts` starts.

    Padding is never sampled: windows begin only at the first `num_starts` entries of `starts` (the
    real ones) and never pass the last step of their episode."""

    def pad(x, size):
        x = np.asarray(x)
        return np.concatenate([x, np.zeros((size - x.shape[0], *x.shape[1:]), x.dtype)])

    steps = {
        name: pad(getattr(store, name), num_steps)
        for name in ("observation", "action", "reward", "discount", "is_terminal", "episode_end", "episode_start")
    }
    return store._replace(
        **steps,
        starts=pad(store.starts, num_starts),
        frame_offsets=np.asarray(store.frame_offsets),
        num_starts=np.asarray(store.num_starts),
    )


def stack_shards(stores: list) -> Store:
    """Stores of P disjoint parts of the data -> one host Store with leaves [P, ...] (each part padded to
    the longest); `sample_windows` draws batch_size / P windows from each part."""
    num_steps = max(int(s.action.shape[0]) for s in stores)
    num_starts = max(int(s.starts.shape[0]) for s in stores)
    padded = [pad_store(s, num_steps, num_starts) for s in stores]
    return jax.tree.map(lambda *leaves: np.stack(leaves), *padded)


def check_batch_size(store: Store, batch_size: int) -> None:
    """A batch may not hold more windows than the data has transitions."""
    num_transitions = int(store.num_starts)
    if batch_size < 1 or batch_size > num_transitions:
        raise DataError(
            f"--batch-size {batch_size} does not fit the data ({num_transitions} transitions); "
            f"use a batch between 1 and {num_transitions} or a larger --data-fraction"
        )


def gather_windows(store: Store, start: jax.Array, length: int, random_action: jax.Array) -> Window:
    """Windows of `length` steps beginning at the step indices `start` [B]."""
    idx = start[:, None] + jnp.arange(length)[None, :]  # [B, L]
    end = store.episode_end[start][:, None]  # [B, 1]
    in_episode = idx <= end
    has_action = idx < end
    idx = jnp.minimum(idx, end)  # past the end: repeat the last step
    absorbing = ~in_episode | store.is_terminal[idx]
    if store.frame_offsets.shape[0] == 1:
        observation = store.observation[idx]
    else:
        # Frames of the stack at each step, clamped to the episode's first step: [B, L, F].
        first = store.episode_start[start][:, None, None]
        frames = jnp.maximum(idx[:, :, None] + store.frame_offsets, first)
        observation = jnp.moveaxis(store.observation[frames], 2, -1)  # [B, L, *obs_shape, F]
    return Window(
        observation=observation,
        action=jnp.where(has_action, store.action[idx], random_action),
        reward=jnp.where(has_action, store.reward[idx], 0.0),
        discount=jnp.where(has_action, store.discount[idx], 1.0),
        has_action=has_action,
        absorbing=absorbing,
    )


def sample_windows(store: Store, key: jax.Array, batch_size: int, length: int, num_actions: int) -> Window:
    """Uniformly sampled windows (each transition of the data equally likely to start one).

    A store stacked from P process shards (`stack_shards`, leaves [P, ...]) gives batch_size / P
    windows from each shard, in shard order (uniform within each process's part of the data).
    """
    if store.frame_offsets.ndim == 2:
        num_shards = store.frame_offsets.shape[0]
        keys = jax.random.split(key, num_shards)
        per_shard = jax.vmap(lambda s, k: sample_windows(s, k, batch_size // num_shards, length, num_actions))(store, keys)
        return jax.tree.map(lambda x: x.reshape(batch_size, *x.shape[2:]), per_shard)
    start_key, action_key = jax.random.split(key)
    start = store.starts[jax.random.randint(start_key, (batch_size,), 0, store.num_starts)]
    random_action = jax.random.randint(action_key, (batch_size, length), 0, num_actions)
    return gather_windows(store, start, length, random_action)


def place_store(store: Any, mesh: Mesh) -> Any:
    """The data store on the devices: replicated with one process; with P processes, this process's
    part joins the others' in one global store [P, ...], part p on process p's devices."""
    if mesh.shape[PROCESS_AXIS] == 1:
        return replicate(store, mesh)
    sizes = multihost_utils.process_allgather(np.array([store.action.shape[0], store.starts.shape[0]]))
    num_steps, num_starts = (int(v) for v in np.max(sizes.reshape(-1, 2), axis=0))
    local = pad_store(store, num_steps, num_starts)
    sharding = NamedSharding(mesh, PartitionSpec(PROCESS_AXIS))
    count = mesh.shape[PROCESS_AXIS]
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x[None], (count, *x.shape)), local)
