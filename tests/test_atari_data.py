"""RL Unplugged Atari reader: shards of real ALE gameplay written in the public on-disk format,
read back by TFDS's own parser and by common/atari/ (locally, over HTTP, from the cache),
frame-stacked windows, and the one-line errors."""

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import jax
import numpy as np
import pytest

from common.atari import games
from common.atari.cache import read_cache_meta
from common.atari.fixture import RecordedEpisode, episode_example, write_fixture, write_tfrecord_gzip
from common.atari.loader import load_atari
from common.atari.shards import read_shard
from common.episodes import Episodes, validate_episodes
from common.errors import DataError
from common.replay import gather_windows, make_store, sample_windows

# Jitted once each: compiling the whole function is much cheaper than dispatching its ops eagerly.
gather = jax.jit(gather_windows, static_argnums=2)
sample = jax.jit(sample_windows, static_argnums=(2, 3, 4))

ROOT = Path(__file__).resolve().parents[1]
GAME = "Breakout"
FIXTURE = {"game": GAME, "run": 1, "num_shards": 2, "episodes_per_shard": 3, "max_steps": 200, "seed": 1}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """(data dir, recorded episodes per shard): 2 shards x 3 episodes, some ending in a game over, some cut."""
    out = tmp_path_factory.mktemp("atari_shards")
    recorded = write_fixture(out, **FIXTURE)
    flat = [episode for shard in recorded for episode in shard]
    assert any(e.terminated for e in flat) and not all(e.terminated for e in flat)
    return out, recorded


def expected_episodes(recorded) -> Episodes:
    """The Episodes the reader must produce from the recorded gameplay (RLDS steps, last one padding)."""
    cols = {name: [] for name in Episodes._fields}
    for shard in recorded:
        for ep in shard:
            steps = len(ep.action)
            discount = np.ones(steps + 1, np.float32)
            discount[-1] = 0.0
            if ep.terminated:
                discount[steps - 1] = 0.0
            flags = np.arange(steps + 1)
            cols["observation"].append(ep.frames)
            cols["action"].append(np.append(ep.action, 0))
            cols["reward"].append(np.append(np.clip(ep.reward, -1, 1), 0.0))
            cols["discount"].append(discount)
            cols["is_first"].append(flags == 0)
            cols["is_last"].append(flags == steps)
            cols["is_terminal"].append((flags == steps) & ep.terminated)
    dtypes = {"observation": np.uint8, "action": np.int32, "reward": np.float32, "discount": np.float32}
    return Episodes(**{k: np.concatenate(v).astype(dtypes.get(k, bool)) for k, v in cols.items()})


def assert_episodes_equal(actual: Episodes, expected: Episodes) -> None:
    for name in Episodes._fields:
        a, e = getattr(actual, name), getattr(expected, name)
        assert a.dtype == e.dtype, name
        np.testing.assert_array_equal(a, e, err_msg=name)


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


@pytest.fixture
def http_server():
    """Serve directories over http://127.0.0.1 from a thread; yields (serve(dir) -> URL, requested paths)."""
    requested, servers = [], []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            requested.append(self.path)
            try:
                super().do_GET()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the reader closed the stream once it had what it needed

    def serve(directory) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve, requested
    for server in servers:
        server.shutdown()
        server.server_close()


def test_fixture_shards_parse_unchanged_with_tfds_atari_utils(shards, tmp_path):
    atari_utils = pytest.importorskip("tensorflow_datasets.rl_unplugged.atari_utils")  # requirements-dev.txt
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")  # TensorFlow takes no accelerator memory from JAX

    out, recorded = shards
    image = atari_utils.features_dict()["steps"].feature["observation"]
    loaded, _ = load_atari(GAME, 1, out, 1.0, cache_dir=tmp_path, progress=False)
    offset = 0
    for index, shard in enumerate(recorded):
        path = out / games.shard_name(GAME, 1, index, 2)
        examples = list(tf.data.TFRecordDataset(str(path), compression_type="GZIP"))  # checks framing CRCs
        assert len(examples) == len(shard)
        for e, (serialized, ep) in enumerate(zip(examples, shard)):
            rlds = atari_utils.atari_example_to_rlds(serialized)
            steps = {k: v.numpy() for k, v in rlds["steps"].items()}
            frames = np.stack([image.decode_example(png).numpy() for png in steps["observation"]])
            T = len(ep.action)
            assert (int(rlds["checkpoint_id"]), int(rlds["episode_id"])) == (index, e)
            assert frames.shape == (T + 1, 84, 84, 1) and frames.dtype == np.uint8
            np.testing.assert_array_equal(frames[..., 0], ep.frames)
            np.testing.assert_array_equal(steps["action"][:T], ep.action)
            np.testing.assert_array_equal(steps["reward"][:T], ep.reward)
            expected_discount = np.ones(T, np.float32)
            expected_discount[-1] = 0.0 if ep.terminated else 1.0
            np.testing.assert_array_equal(steps["discount"][:T], expected_discount)
            np.testing.assert_array_equal(steps["is_first"].astype(bool), np.arange(T + 1) == 0)
            np.testing.assert_array_equal(steps["is_last"].astype(bool), np.arange(T + 1) == T)
            np.testing.assert_array_equal(steps["is_terminal"].astype(bool), (np.arange(T + 1) == T) & ep.terminated)
            # The reader agrees with TFDS's conversion step for step (rewards clipped; last step padding).
            part = slice(offset, offset + T + 1)
            np.testing.assert_array_equal(loaded.observation[part], frames[..., 0])
            np.testing.assert_array_equal(loaded.action[part][:T], steps["action"][:T])
            np.testing.assert_array_equal(loaded.reward[part][:T], np.clip(steps["reward"][:T], -1, 1))
            np.testing.assert_array_equal(loaded.discount[part][:T], steps["discount"][:T])
            for flag in ("is_first", "is_last", "is_terminal"):
                np.testing.assert_array_equal(getattr(loaded, flag)[part], steps[flag].astype(bool))
            offset += T + 1
    assert offset == loaded.num_steps


def test_loader_returns_the_recorded_frames_actions_rewards_and_flags(shards, tmp_path):
    out, recorded = shards
    episodes, source = load_atari(GAME, 1, out, 1.0, cache_dir=tmp_path, progress=False)
    assert source == str(out / GAME / "run_1")
    assert episodes.observation.shape[1:] == (84, 84)
    validate_episodes(episodes, "loaded")
    assert_episodes_equal(episodes, expected_episodes(recorded))


def reference_window(expected: Episodes, start: int, length: int):
    """Frames, has_action and absorbing of one window, computed step by step from the flat episodes."""
    first = start - int(np.flatnonzero(expected.is_first[: start + 1][::-1])[0])  # the episode's first step
    end = start + int(np.flatnonzero(expected.is_last[start:])[0])
    frames, has_action, absorbing = [], [], []
    for i in range(start, start + length):
        idx = min(i, end)
        frames.append(np.stack([expected.observation[max(idx - 3 + j, first)] for j in range(4)], axis=-1))
        has_action.append(i < end)
        absorbing.append(i > end or bool(expected.is_terminal[idx]))
    return np.stack(frames), np.asarray(has_action), np.asarray(absorbing)


def test_stacked_windows_match_recorded_frames_at_episode_starts_and_ends(shards, tmp_path):
    out, recorded = shards
    expected = expected_episodes(recorded)
    episodes, _ = load_atari(GAME, 1, out, 1.0, cache_dir=tmp_path, progress=False)
    store = make_store(episodes, frame_stack=4)
    firsts = np.flatnonzero(expected.is_first)
    lasts = np.flatnonzero(expected.is_last)
    # Windows at and just after every episode start, and running past every episode's end.
    starts = np.unique(np.concatenate([firsts, firsts + 1, firsts + 2, lasts - 1, lasts - 3]))
    length = 6
    window = jax.device_get(gather(store, starts, length, np.zeros((len(starts), length), np.int32)))
    assert window.observation.shape == (len(starts), length, 84, 84, 4)
    assert window.observation.dtype == np.uint8
    for b, start in enumerate(starts):
        frames, has_action, absorbing = reference_window(expected, int(start), length)
        np.testing.assert_array_equal(window.observation[b], frames)
        np.testing.assert_array_equal(window.has_action[b], has_action)
        np.testing.assert_array_equal(window.absorbing[b], absorbing)
        steps = int(start) + np.arange(length)
        np.testing.assert_array_equal(window.action[b][has_action], expected.action[steps[has_action]])
        np.testing.assert_array_equal(window.reward[b][has_action], expected.reward[steps[has_action]])
        np.testing.assert_array_equal(window.discount[b][has_action], expected.discount[steps[has_action]])
    # Both episode endings occur: a game over (absorbing at the end) and a cut (bootstraps there).
    assert window.absorbing[:, -1].any() and np.any(window.discount == 0.0)
    sampled = sample(store, jax.random.PRNGKey(0), 8, 3, 4)
    assert sampled.observation.shape == (8, 3, 84, 84, 4) and sampled.observation.dtype == np.uint8


def test_frame_stack_repeats_the_first_frame_and_never_reaches_the_previous_episode():
    lengths = [2, 5, 1, 3]
    obs, flags = [], []
    for e, T in enumerate(lengths):
        for i in range(T + 1):
            obs.append(np.full((2, 2), 10 * e + i, np.uint8))
            flags.append((i == 0, i == T))
    n = len(obs)
    is_first, is_last = np.asarray(flags).T
    episodes = Episodes(
        np.stack(obs), np.zeros(n, np.int32), np.zeros(n, np.float32), np.ones(n, np.float32) * ~is_last,
        is_first, is_last, is_last.copy(),
    )  # fmt: skip
    store = make_store(episodes, frame_stack=4)
    starts = np.flatnonzero(~is_last)
    window = jax.device_get(gather(store, starts, 2, np.zeros((len(starts), 2), np.int32)))
    stacks = window.observation[:, 0, 0, 0, :]  # [B, 4] frame ids at the start step
    for stack, start in zip(stacks, starts):
        episode, step = divmod(int(episodes.observation[start, 0, 0]), 10)
        assert list(stack) == [10 * episode + max(step - 3 + j, 0) for j in range(4)]
    unstacked = jax.device_get(gather(make_store(episodes), starts, 2, np.zeros((len(starts), 2), np.int32)))
    assert unstacked.observation.shape == (len(starts), 2, 2, 2)


def test_remote_streaming_over_http_matches_local_and_stops_early(shards, tmp_path, http_server):
    out, recorded = shards
    serve, requested = http_server
    url = serve(out)
    remote, source = load_atari(GAME, 1, url, 1.0, cache_dir=tmp_path / "remote", num_shards=2, progress=False)
    assert source == f"{url}/{GAME}/run_1"
    assert_episodes_equal(remote, expected_episodes(recorded))
    assert sorted(requested) == [f"/{GAME}/run_1-0000{i}-of-00002" for i in range(2)]

    # A fraction stops each stream once that share of its compressed bytes is in (and one episode).
    shard_url = f"{url}/{GAME}/run_1-00000-of-00002"
    full = read_shard(shard_url, 1.0)
    part = read_shard(shard_url, 0.3, block_size=4096)
    assert full.complete and full.bytes_read == full.size == os.path.getsize(out / GAME / "run_1-00000-of-00002")
    assert not part.complete and 1 <= len(part.episodes) < len(full.episodes)
    assert part.bytes_read < full.size and part.bytes_read >= 0.3 * full.size
    for a, b in zip(part.episodes, full.episodes):
        np.testing.assert_array_equal(a.action, b.action)

    # The same fraction over HTTP and from local files gives the same episodes: the first of each shard.
    half_remote, _ = load_atari(GAME, 1, url, 0.5, cache_dir=tmp_path / "remote", num_shards=2, progress=False)
    half_local, _ = load_atari(GAME, 1, out, 0.5, cache_dir=tmp_path / "local", progress=False)
    assert_episodes_equal(half_remote, half_local)
    meta = read_cache_meta(games.cache_path(GAME, 1, 0.5, tmp_path / "remote"))
    # Reading stops before the end of every stream (past the kept records only to check the next one).
    assert all(s["bytes_read"] <= s["size"] and not s["complete"] for s in meta["shards"])
    kept = [s["episodes"] for s in meta["shards"]]
    assert 2 <= half_remote.num_episodes == sum(kept) < sum(map(len, recorded))
    prefix = [[ep for ep in shard[:k]] for shard, k in zip(recorded, kept)]
    assert_episodes_equal(half_remote, expected_episodes(prefix))


def test_gs_urls_read_over_https_from_storage_googleapis():
    assert games.to_url("gs://rl_unplugged/atari_episodes_ordered/Pong/run_1-00000-of-00050") == (
        "https://storage.googleapis.com/rl_unplugged/atari_episodes_ordered/Pong/run_1-00000-of-00050"
    )
    assert games.resolve_data_dir(None) in (games.PUBLIC_DATA_DIR, os.environ.get("ROSMO_ATARI_DATA_DIR"))
    assert [games.num_checkpoints(g) for g in ("Pong", "Carnival", "Gravitar", "StarGunner")] == [50, 49, 49, 49]
    assert len(games.GAMES) == 46


def test_second_load_reads_only_the_cache(shards, tmp_path, http_server):
    out, recorded = shards
    data = tmp_path / "data"
    shutil.copytree(out, data)
    load_atari(GAME, 1, data, 1.0, cache_dir=tmp_path, progress=False)
    shutil.rmtree(data)  # the shards are gone: only the cache can answer
    second, _ = load_atari(GAME, 1, data, 1.0, cache_dir=tmp_path, num_shards=2, progress=False)
    assert_episodes_equal(second, expected_episodes(recorded))
    assert isinstance(second.observation, np.memmap)
    serve, requested = http_server
    url = serve(out)
    load_atari(GAME, 1, url, 1.0, cache_dir=tmp_path / "http", num_shards=2, progress=False)
    count = len(requested)
    load_atari(GAME, 1, url, 1.0, cache_dir=tmp_path / "http", num_shards=2, progress=False)
    assert len(requested) == count


def test_unknown_game_error_lists_the_rl_unplugged_games(tmp_path):
    with pytest.raises(DataError) as excinfo:
        load_atari("Tetris", 1, tmp_path, 0.01, cache_dir=tmp_path)
    message = one_line_error(excinfo)
    assert "'Tetris' is not an RL Unplugged Atari game" in message and ", ".join(games.GAMES) in message


def test_missing_local_data_error_gives_the_fetch_commands(tmp_path):
    with pytest.raises(DataError) as excinfo:
        load_atari("Pong", 1, tmp_path, 0.01, cache_dir=tmp_path)
    message = one_line_error(excinfo)
    assert f"no {tmp_path}/Pong/run_1-00000-of-00050" in message
    assert "gsutil -m cp 'gs://rl_unplugged/atari_episodes_ordered/Pong/run_1-*'" in message
    assert "python -m common.atari.loader --game Pong --run 1 --fraction 0.01" in message


def test_a_missing_shard_is_named(shards, tmp_path):
    out, _ = shards
    (tmp_path / GAME).mkdir()
    shutil.copy(out / GAME / "run_1-00000-of-00002", tmp_path / GAME)
    with pytest.raises(DataError) as excinfo:
        load_atari(GAME, 1, tmp_path, 1.0, cache_dir=tmp_path)
    assert one_line_error(excinfo).startswith(f"{tmp_path}/{GAME}/run_1-00001-of-00002 is missing (1 of 2 shards")


def damaged_copy(out: Path, tmp_path: Path, damage) -> Path:
    shutil.copytree(out, tmp_path / "data")
    path = tmp_path / "data" / GAME / "run_1-00001-of-00002"
    path.write_bytes(damage(path.read_bytes()))
    return path


def test_truncated_shard_error_names_the_file(shards, tmp_path):
    path = damaged_copy(shards[0], tmp_path, lambda data: data[: int(len(data) * 0.6)])
    with pytest.raises(DataError) as excinfo:
        load_atari(GAME, 1, tmp_path / "data", 1.0, cache_dir=tmp_path, progress=False)
    message = one_line_error(excinfo)
    assert message.startswith(f"{path} is truncated") and "gsutil cp" in message


def test_corrupt_shard_error_names_the_file(shards, tmp_path):
    def flip(data: bytes) -> bytes:
        middle = len(data) // 2
        return data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 64]) + data[middle + 64 :]

    path = damaged_copy(shards[0], tmp_path, flip)
    with pytest.raises(DataError) as excinfo:
        load_atari(GAME, 1, tmp_path / "data", 1.0, cache_dir=tmp_path, progress=False)
    assert one_line_error(excinfo).startswith(f"{path} is corrupt")
    path.write_bytes(b"not a gzip file")
    with pytest.raises(DataError, match="is corrupt"):
        read_shard(str(path))


def test_action_outside_the_minimal_action_set_is_an_error(tmp_path):
    episode = RecordedEpisode(np.zeros((3, 84, 84), np.uint8), np.asarray([1, 9]), np.zeros(2, np.float32), False)
    path = tmp_path / GAME / "run_1-00000-of-00001"
    write_tfrecord_gzip(path, [episode_example(0, 0, episode)])
    with pytest.raises(DataError) as excinfo:
        load_atari(GAME, 1, tmp_path, 1.0, cache_dir=tmp_path, progress=False)
    assert one_line_error(excinfo) == (
        f"{path}: episode 0 (record 0) has action 9, outside Breakout's minimal action set of 4 actions (ALE); "
        "is this Breakout data?"
    )


def test_command_lines_write_and_cache_a_fixture(shards, tmp_path):
    run = functools.partial(subprocess.run, cwd=ROOT, capture_output=True, text=True, timeout=300)
    args = [f"--{k.replace('_', '-')}={v}" for k, v in FIXTURE.items()]
    out = run([sys.executable, "-m", "common.atari.fixture", *args, "--out", str(tmp_path / "data")])
    assert out.returncode == 0, out.stderr
    for name in ("run_1-00000-of-00002", "run_1-00001-of-00002"):  # deterministic: the same bytes
        assert (tmp_path / "data" / GAME / name).read_bytes() == (shards[0] / GAME / name).read_bytes()
    command = ["--game", GAME, "--fraction", "1.0", "--data-dir", str(tmp_path / "data"), "--cache-dir", str(tmp_path)]
    out = run([sys.executable, "-m", "common.atari.loader", *command])
    assert out.returncode == 0, out.stderr
    assert f"episodes 6  transitions {sum(len(e.action) for s in shards[1] for e in s)}" in out.stdout
    assert (games.cache_path(GAME, 1, 1.0, tmp_path) / "observation.npy").is_file()
    out = run([sys.executable, "-m", "common.atari.loader", "--game", "Tetris"])
    assert out.returncode == 2 and out.stderr.startswith("error: 'Tetris' is not an RL Unplugged Atari game")


def test_the_data_mean_return_is_the_game_score_beside_the_clipped_one(tmp_path):
    """Evaluation reports game scores, so the data's mean return is the stored episode_return (raw rewards 4 and 7
    here), with the mean of the clipped rewards the agent trains on kept beside it."""
    frames = np.zeros((4, 84, 84), np.uint8)
    rewards = [np.asarray([4.0, 0.0, 7.0], np.float32), np.asarray([0.0, -3.0, 1.0], np.float32)]
    path = tmp_path / GAME / "run_1-00000-of-00001"
    write_tfrecord_gzip(
        path, [episode_example(0, i, RecordedEpisode(frames, np.ones(3), r, True)) for i, r in enumerate(rewards)]
    )
    load_atari(GAME, 1, tmp_path, 1.0, cache_dir=tmp_path, progress=False)
    manifest = read_cache_meta(games.cache_entry(GAME, 1, 1.0, tmp_path))
    assert manifest["mean_return"] == pytest.approx((11.0 + -2.0) / 2)
    assert manifest["mean_clipped_return"] == pytest.approx((2.0 + 0.0) / 2)
