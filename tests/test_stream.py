"""The streaming Atari store (common/atari/stream.py): the ring's windows equal the device store's, padding
and dropped episodes are never sampled, shapes never change, the background readers stream the
recorded fixture's episodes exactly and report errors, and the memory check chooses a store."""

import gzip
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.atari.fixture import write_fixture
from common.atari.loader import load_atari
from common.atari.memory import FRAME_SHAPE, choose_store, device_memory_bytes, largest_fraction, store_bytes, update_memory
from common.atari.stream import Ring, StreamingStore, shard_locations
from common.episodes import Episodes
from common.errors import DataError, UsageError
from common.replay import gather_windows, make_store, sample_windows

gather = jax.jit(gather_windows, static_argnums=2)
sample = jax.jit(sample_windows, static_argnums=(2, 3, 4))
GAME = "Breakout"
LENGTH = 4  # window length of these tests


def tagged_episode(tag: int, steps: int, terminal: bool = True) -> Episodes:
    """An episode whose frame t is filled with (tag * 16 + t) % 256, action t % 4, reward tag."""
    t = np.arange(steps)
    frames = np.broadcast_to(((tag * 16 + t) % 256).astype(np.uint8)[:, None, None], (steps, *FRAME_SHAPE)).copy()
    last = t == steps - 1
    return Episodes(
        observation=frames,
        action=np.where(last, 0, t % 4).astype(np.int32),
        reward=np.where(last, 0.0, float(tag)).astype(np.float32),
        discount=np.where(last, 0.0, 1.0).astype(np.float32),
        is_first=t == 0,
        is_last=last,
        is_terminal=last & terminal,
    )


def concat(episodes) -> Episodes:
    return Episodes(*(np.concatenate(field) for field in zip(*episodes)))


def live_ranges(ring: Ring) -> list:
    """(first row, last row) of every live episode in row order."""
    meta = ring.meta
    rows = np.flatnonzero(meta.live & (np.arange(ring.capacity) == meta.episode_start))
    return [(int(r), int(meta.episode_end[r])) for r in rows]


def test_ring_windows_equal_the_device_store_windows_of_the_same_episodes():
    ring = Ring(capacity=48, frame_stack=4, refill=16)
    written = []
    for tag, steps in enumerate([5, 7, 3, 9, 6, 8, 4, 10, 5, 7, 9]):  # wraps the ring and drops the oldest
        episode = tagged_episode(tag, steps, terminal=tag % 2 == 0)
        ring.write(ring.chunk([episode]))
        written.append(episode)
    store = ring.store()
    ranges = live_ranges(ring)
    resident = {int(np.asarray(store.observation)[first, 0, 0]) // 16: (first, last) for first, last in ranges}
    assert sorted(resident) == list(range(11 - len(resident), 11))  # the newest episodes, in order of arrival
    reference_episodes = [written[tag] for tag in sorted(resident)]
    reference = make_store(concat(reference_episodes), frame_stack=4)
    offsets = np.cumsum([0] + [e.num_steps for e in reference_episodes])
    ring_starts, ref_starts = [], []
    for k, tag in enumerate(sorted(resident)):
        first, last = resident[tag]
        ring_starts += list(range(first, last))
        ref_starts += list(range(offsets[k], offsets[k + 1] - 1))
    assert int(store.num_starts) == len(ring_starts)
    np.testing.assert_array_equal(np.sort(np.asarray(store.starts)[: int(store.num_starts)]), sorted(ring_starts))
    noise = jnp.zeros((len(ring_starts), LENGTH), jnp.int32)
    got = gather(store, jnp.asarray(ring_starts), LENGTH, noise)
    want = gather(reference, jnp.asarray(ref_starts), LENGTH, noise)
    for name, a, b in zip(got._fields, got, want):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)


def test_sampling_from_the_ring_never_reads_dropped_episodes_or_padding():
    ring = Ring(capacity=40, frame_stack=4, refill=16)
    for tag in range(12):
        ring.write(ring.chunk([tagged_episode(tag, 6 + tag % 5)]))
    store = ring.store()
    resident = {int(np.asarray(store.observation)[first, 0, 0]) // 16 for first, _ in live_ranges(ring)}
    window = sample(store, jax.random.key(0), 128, LENGTH, 4)
    tags = np.unique(np.asarray(window.observation) // 16)
    assert set(tags.tolist()) <= resident and len(resident) >= 3
    assert set(np.unique(np.asarray(window.reward)[np.asarray(window.has_action)]).tolist()) <= resident


def test_every_store_of_the_ring_has_the_same_shapes_so_the_update_compiles_once():
    ring = Ring(capacity=64, frame_stack=4, refill=32)
    total = jax.jit(lambda store, key: jnp.sum(sample_windows(store, key, 8, LENGTH, 4).observation, dtype=jnp.int32))
    shapes = set()
    for tag in range(8):
        ring.write(ring.chunk([tagged_episode(tag, 3 + 4 * (tag % 4)), tagged_episode(tag + 100, 5)]))
        store = ring.store()
        shapes.add(tuple((x.shape, x.dtype) for x in store))
        total(store, jax.random.key(tag)).block_until_ready()
    assert len(shapes) == 1
    assert total._cache_size() == 1


def test_a_chunk_larger_than_the_refill_is_refused():
    ring = Ring(capacity=32, refill=8)
    with pytest.raises(ValueError, match="refill"):
        ring.chunk([tagged_episode(0, 9)])


# ----------------------------------------------------------------------------------------------
# The stream over a recorded fixture
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """2 shards x 3 short Breakout episodes of real ALE play, in the public on-disk format."""
    out = tmp_path_factory.mktemp("stream_shards")
    write_fixture(out, GAME, 1, num_shards=2, episodes_per_shard=3, max_steps=60, seed=3)
    return out


def episode_list(episodes: Episodes) -> list:
    """Flat Episodes -> [Episodes] one per episode."""
    bounds = np.flatnonzero(episodes.is_last) + 1
    return [Episodes(*(f[a:b] for f in episodes)) for a, b in zip(np.r_[0, bounds[:-1]], bounds)]


def resident_episodes(ring: Ring, store) -> list:
    """The live episodes of a ring's Store, read back from the devices."""
    host = jax.tree.map(np.asarray, store)
    out = []
    for first, last in live_ranges(ring):
        rows = slice(first, last + 1)
        n = last + 1 - first
        out.append(
            Episodes(
                host.observation[rows],
                host.action[rows],
                host.reward[rows],
                host.discount[rows],
                np.arange(n) == 0,
                np.arange(n) == n - 1,
                host.is_terminal[rows],
            )
        )
    return out


def same_episode(a: Episodes, b: Episodes) -> bool:
    return a.num_steps == b.num_steps and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_shard_selection_is_the_device_paths_including_the_process_split(shards):
    everything = shard_locations(GAME, 1, shards)
    assert [p.rsplit("/", 1)[-1] for p in everything] == ["run_1-00000-of-00002", "run_1-00001-of-00002"]
    assert shard_locations(GAME, 1, shards, process=(1, 2)) == everything[1:]
    with pytest.raises(DataError, match="cannot be split over 3 processes"):
        shard_locations(GAME, 1, shards, process=(0, 3))
    with pytest.raises(DataError, match="missing") as excinfo:
        shard_locations(GAME, 1, shards, num_shards=3)
    assert "\n" not in str(excinfo.value)


def test_the_stream_fills_the_store_with_exactly_the_fixtures_episodes_and_visits_them_all(shards, tmp_path):
    expected = episode_list(load_atari(GAME, 1, shards, 1.0, cache_dir=tmp_path, progress=False)[0])
    seen = set()
    with StreamingStore(
        shard_locations(GAME, 1, shards),
        GAME,
        capacity_steps=512,
        refill_steps=128,
        pool_steps=128,
        shuffle_episodes=4,
        workers=2,
        warm_steps=300,
        seed=1,
    ) as stream:
        for _ in range(60):
            store = stream.next_store()
            assert store.observation.shape == (512, *FRAME_SHAPE) and int(store.num_starts) >= 1
            for episode in resident_episodes(stream.ring, store):
                matches = [k for k, e in enumerate(expected) if same_episode(episode, e)]
                assert matches, "a resident episode is not one of the fixture's"
                seen.update(matches)
            if len(seen) == len(expected):
                break
        assert stream.ring.meta.live_steps >= 300
    assert seen == set(range(len(expected)))


def test_a_process_streams_only_its_own_shards(shards, tmp_path):
    part = load_atari(GAME, 1, shards, 1.0, cache_dir=tmp_path, progress=False, process=(1, 2))[0]
    expected = episode_list(part)
    with StreamingStore(
        shard_locations(GAME, 1, shards, process=(1, 2)),
        GAME,
        capacity_steps=256,
        refill_steps=128,
        pool_steps=64,
        shuffle_episodes=2,
        workers=1,
        warm_steps=60,
    ) as stream:
        store = stream.next_store()
        for episode in resident_episodes(stream.ring, store):
            assert any(same_episode(episode, e) for e in expected)


def test_a_corrupt_shard_stops_the_stream_with_a_one_line_error(shards, tmp_path):
    broken = tmp_path / GAME
    broken.mkdir()
    good = shard_locations(GAME, 1, shards)[0]
    with open(good, "rb") as f:
        data = gzip.decompress(f.read())
    with gzip.open(broken / "run_1-00000-of-00001", "wb") as f:
        f.write(data[: len(data) // 2])  # a record cut in the middle
    stream = StreamingStore(
        shard_locations(GAME, 1, tmp_path), GAME, capacity_steps=256, refill_steps=64, pool_steps=64, workers=1, warm_steps=100
    )
    with pytest.raises(DataError) as excinfo:
        stream.next_store()
    assert "run_1-00000-of-00001" in str(excinfo.value) and "\n" not in str(excinfo.value)
    assert not any(t.is_alive() for t in stream._threads)


def test_close_stops_every_background_thread(shards):
    before = threading.active_count()
    stream = StreamingStore(
        shard_locations(GAME, 1, shards), GAME, capacity_steps=256, refill_steps=64, pool_steps=64, workers=3, warm_steps=10
    )
    stream.next_store()
    stream.close()
    assert not any(t.is_alive() for t in stream._threads)
    assert threading.active_count() <= before


def test_bad_stream_settings_are_one_line_usage_errors(shards):
    with pytest.raises(UsageError, match="refill"):
        StreamingStore(shard_locations(GAME, 1, shards), GAME, capacity_steps=100, refill_steps=64)


# ----------------------------------------------------------------------------------------------
# The memory check
# ----------------------------------------------------------------------------------------------


def test_store_bytes_count_frames_once_and_the_per_step_arrays():
    assert store_bytes(1) == 84 * 84 + 25
    assert store_bytes(500_000) == pytest.approx(3.54e9, rel=0.01)  # 1% of a run: about 3.5 GB


def test_update_memory_reads_xla_and_subtracts_the_store():
    store = make_store(concat([tagged_episode(0, 20)]), frame_stack=4)
    state = {"w": jnp.ones((64, 64))}
    reads_all = lambda st: sum(jnp.mean(x.astype(jnp.float32)) for x in st)  # noqa: E731 - as an update reads every array
    step = jax.jit(lambda s, st: {"w": s["w"] * reads_all(st)})
    memory = update_memory(step.lower(state, store).compile(), state, store)
    if memory.source == "XLA memory analysis":
        assert 2 * 64 * 64 * 4 <= memory.bytes < 2 * 64 * 64 * 4 + store_bytes(20)  # state in and out, no store
    else:
        assert memory.bytes == 4 * 64 * 64 * 4

    class NoAnalysis:
        def memory_analysis(self):
            return None

    assert update_memory(NoAnalysis(), state, store) == (4 * 64 * 64 * 4, update_memory(NoAnalysis(), state, store).source)
    assert "estimate" in update_memory(NoAnalysis(), state, store).source


def test_device_memory_override_and_bad_values():
    assert device_memory_bytes(0.5) == 500_000_000
    with pytest.raises(UsageError, match="device-memory-gb"):
        device_memory_bytes(-1.0)
    reported = device_memory_bytes(None)
    assert reported is None or reported > 0


def test_the_largest_fraction_that_fits_rounds_down_to_two_digits():
    per_run = 50_000_000
    fraction = largest_fraction(int(10e9), int(1e9), per_run)
    assert store_bytes(int(fraction * per_run)) + 1e9 <= 10e9
    assert store_bytes(int(fraction * per_run * 1.02)) + 1e9 > 10e9
    assert largest_fraction(int(1e9), int(2e9), per_run) == 0.0
    assert largest_fraction(int(1e15), 0, per_run) == 1.0


def test_choose_store_takes_the_device_store_when_it_fits_and_the_stream_otherwise():
    # device store: 50k steps x 7,081 bytes + 10 MB = 364 MB; stream: 4096 steps + 2 x 1024 frames + 10 MB = 53 MB
    small = dict(data_steps=50_000, data_fraction=0.01, update_bytes=10_000_000, capacity_steps=4096, refill_steps=1024)
    assert choose_store("auto", available=device_memory_bytes(1.0), **small).store == "device"
    assert choose_store("auto", available=device_memory_bytes(0.1), **small).store == "stream"
    assert choose_store("stream", available=device_memory_bytes(1.0), **small).store == "stream"
    assert choose_store("auto", available=None, **small).store == "device"


def test_auto_streams_on_a_smaller_ring_where_the_requested_one_does_not_fit_and_never_stops():
    from common.atari.memory import MIN_RING_STEPS, shrunk_ring, stream_device_bytes

    plan = dict(data_steps=500_000, data_fraction=0.01, update_bytes=5_000_000, capacity_steps=131_072, refill_steps=32_768)
    # 0.1 GB: the default ring needs 1.39 GB; halved 5 times, 4096 steps need 29 + 14.5 + 5 = 48.5 MB, 8192 steps 97 MB.
    choice = choose_store("auto", available=int(0.1e9), **plan)
    assert choice.store == "stream" and choice.capacity_steps == 8192 and choice.stream_bytes <= int(0.1e9)
    assert choice.stream_bytes == stream_device_bytes(8192, 2048) + 5_000_000 and "\n" not in choice.reason
    assert "ring of 8192 steps, not 131072" in choice.reason and "longer than 2048 steps" in choice.reason
    assert shrunk_ring(131_072, 5_000_000, int(0.1e9)) == (8192, True)
    # 0.01 GB holds not even the smallest ring beside the update: auto still streams on it, and says so.
    choice = choose_store("auto", available=int(0.01e9), **plan)
    assert choice.store == "stream" and choice.capacity_steps == MIN_RING_STEPS and choice.stream_bytes > int(0.01e9)
    assert "more than the 0.01 GB a device has" in choice.reason
    # Only auto adapts the ring: an explicit --store stream keeps the one asked for (or stops), and a ring that
    # fits is kept.
    assert choose_store("stream", available=int(10e9), **plan).capacity_steps == 131_072
    assert choose_store("auto", available=int(2e9), **plan).capacity_steps == 131_072
    with pytest.raises(UsageError, match="--store stream needs"):
        choose_store("stream", available=int(0.1e9), **plan)


def test_a_device_store_that_does_not_fit_is_a_one_line_error_naming_the_fraction_that_does():
    with pytest.raises(UsageError) as excinfo:
        choose_store(
            "device", data_steps=500_000, data_fraction=0.01, update_bytes=500_000_000, available=device_memory_bytes(2.0)
        )
    message = str(excinfo.value)
    assert "\n" not in message and "--store stream" in message
    fraction = float(message.split("--data-fraction ")[2].split()[0])
    assert fraction == 0.0042  # (2 GB - 0.5 GB) / 7,081 bytes a step / 50M steps a run = 0.00424
    with pytest.raises(UsageError, match=r"no data fraction fits.*or --store auto \(it streams on a smaller ring\)"):
        choose_store("device", data_steps=500_000, data_fraction=0.01, update_bytes=int(3e9), available=int(2e9))
    with pytest.raises(UsageError, match="--store stream needs"):
        choose_store("stream", data_steps=500_000, data_fraction=0.01, update_bytes=0, available=int(0.01e9))
    with pytest.raises(UsageError, match="auto, device or stream"):
        choose_store("disk", data_steps=1, data_fraction=0.01, update_bytes=0, available=None)


def test_check_store_lowers_the_update_on_a_ring_and_applies_the_device_memory_override():
    from common.atari.memory import check_store

    state = {"w": jnp.ones((32, 32))}
    update = jax.jit(lambda s, st: ({"w": s["w"] * sum(jnp.mean(x.astype(jnp.float32)) for x in st)}, {}))
    # 0.01 of Breakout's 50 shards is about 500k steps (3.5 GB): the device store cannot fit in 0.05 GB.
    choice = check_store("auto", update, state, GAME, 0.01, device_memory_gb=0.05, capacity_steps=4096, refill_steps=1024)
    assert choice.store == "stream" and "XLA memory analysis" in choice.reason
    with pytest.raises(UsageError) as excinfo:
        check_store("device", update, state, GAME, 0.01, device_memory_gb=0.05, capacity_steps=4096, refill_steps=1024)
    assert "\n" not in str(excinfo.value) and "--data-fraction 0.0001" in str(excinfo.value)
    assert check_store("device", update, state, GAME, 0.001, device_memory_gb=1.0, data_steps=5_000).store == "device"
