"""Data that cannot be trusted is refused, never used: damaged RL Unplugged records, episodes
that contradict themselves, non-finite values (Atari and BSuite), and a cache that is stale,
corrupt, half-written by a killed process or filled by two processes at once."""

import gzip
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from common import tfrecord
from common.atari.cache import cache_problem, read_cache_meta
from common.atari.fixture import (
    bytes_feature,
    encode_example,
    encode_png,
    episode_example,
    float_feature,
    int64_feature,
    write_fixture,
    write_tfrecord_gzip,
)
from common.atari.games import cache_path
from common.atari.loader import load_atari
from common.atari.shards import read_shard
from common.episodes import Episodes, check_values
from common.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
GAME = "Breakout"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """(data dir, recorded episodes per shard): 2 shards x 4 short episodes of real Breakout play."""
    out = tmp_path_factory.mktemp("integrity_shards")
    episodes = write_fixture(out, game=GAME, run=1, num_shards=2, episodes_per_shard=4, max_steps=60, seed=2)
    return out, episodes


@pytest.fixture
def data(recorded, tmp_path) -> Path:
    """A private copy of the shards (tests change them)."""
    shutil.copytree(recorded[0], tmp_path / "data")
    return tmp_path / "data"


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def same_episodes(a, b) -> bool:
    if len(a.episodes) != len(b.episodes):
        return False
    for x, y in zip(a.episodes, b.episodes):
        if (x.checkpoint_idx, x.episode_idx) != (y.checkpoint_idx, y.episode_idx):
            return False
        if [bytes(p) for p in x.pngs] != [bytes(p) for p in y.pngs]:
            return False
        for name in ("action", "reward", "discount"):
            if not np.array_equal(getattr(x, name), getattr(y, name)):
                return False
    return True


# ----------------------------------------------------------------------------------------------
# Records and episodes
# ----------------------------------------------------------------------------------------------


def test_single_bit_flips_in_a_shard_read_at_half_never_give_different_episodes(recorded, tmp_path):
    source = recorded[0] / GAME / "run_1-00000-of-00002"
    original = source.read_bytes()
    reference = read_shard(str(source), 0.5, GAME, block_size=4096)
    assert 1 <= len(reference.episodes) < 4 and not reference.complete
    path = tmp_path / source.name
    rng = random.Random(0)
    read_end = reference.bytes_read  # flips past it cannot matter; most land where the reader looks
    positions = [rng.randrange(read_end) for _ in range(250)] + [rng.randrange(len(original)) for _ in range(50)]
    outcomes = {"error": 0, "identical": 0}
    for position in positions:
        damaged = bytearray(original)
        damaged[position] ^= 1 << rng.randrange(8)
        path.write_bytes(damaged)
        try:
            read = read_shard(str(path), 0.5, GAME, block_size=4096)
        except DataError as error:
            assert str(error).startswith(str(path)) and "\n" not in str(error)
            outcomes["error"] += 1
            continue
        assert same_episodes(read, reference), f"a flip at byte {position} changed the episodes silently"
        outcomes["identical"] += 1
    assert outcomes["error"] > 200  # nearly every flip in the part read is caught, not passed over


def framed(record: bytes, crc_of: bytes) -> bytes:
    """One TFRecord whose payload CRC is that of `crc_of` (a forged record when it is not `record`)."""
    length = struct.pack("<Q", len(record))
    return (
        length + struct.pack("<I", tfrecord.masked_crc32c(length)) + record + struct.pack("<I", tfrecord.masked_crc32c(crc_of))
    )


def test_a_changed_reward_inside_a_valid_gzip_stream_is_refused_naming_the_shard(recorded, tmp_path):
    episodes = recorded[1][0]
    records = [episode_example(0, e, ep) for e, ep in enumerate(episodes)]
    changed = episodes[1]._replace(reward=np.where(np.arange(len(episodes[1].reward)) == 3, 1.0, episodes[1].reward))
    forged = episode_example(0, 1, changed)
    assert len(forged) == len(records[1]) and forged != records[1]
    path = tmp_path / GAME / "run_1-00000-of-00001"
    path.parent.mkdir()
    path.write_bytes(
        gzip.compress(framed(records[0], records[0]) + framed(forged, records[1]) + framed(records[2], records[2]))
    )
    assert gzip.decompress(path.read_bytes())  # the gzip stream itself is valid, its CRC32 included
    for fraction in (1.0, 0.5):
        with pytest.raises(DataError) as excinfo:
            read_shard(str(path), fraction, GAME)
        assert one_line(excinfo).startswith(f"{path} is corrupt: record 1: its payload fails its CRC32C check")
    with pytest.raises(DataError, match=f"^{path} is corrupt: record 1"):
        load_atari(GAME, 1, tmp_path, 1.0, cache_dir=tmp_path / "cache", progress=False)


def episode_record(frames, actions, clipped, discounts, clipped_return, episode_idx=0) -> bytes:
    """A serialized Example in the stored layout, every feature given as is (for contradictory episodes)."""
    return encode_example(
        {
            "checkpoint_idx": int64_feature([0]),
            "episode_idx": int64_feature([episode_idx]),
            "episode_return": float_feature([clipped_return]),
            "clipped_episode_return": float_feature([clipped_return]),
            "observations": bytes_feature(encode_png(f) for f in frames),
            "actions": int64_feature(actions),
            "unclipped_rewards": float_feature(clipped),
            "clipped_rewards": float_feature(clipped),
            "discounts": float_feature(discounts),
        }
    )


FRAMES = np.zeros((4, 84, 84), np.uint8)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(clipped_return=3.0), "episode 7 (record 1) has clipped rewards summing to 2 but clipped_episode_return 3"),
        (dict(actions=[1, 0, 2]), "episode 7 (record 1) has 4 frames, 3 actions, 4 clipped rewards and 4 discounts"),
        (dict(clipped=[1.0, float("nan"), 0.0, 0.0]), "episode 7 (record 1) has the clipped reward nan at step 1"),
        (dict(discounts=[1.0, 1.0, float("inf"), 0.0]), "episode 7 (record 1) has the discount inf at step 2"),
        (dict(actions=[1, 4, 0, 0]), "episode 7 (record 1) has action 4, outside Breakout's minimal action set"),
    ],
)
def test_episodes_that_contradict_themselves_are_refused_naming_shard_and_episode(tmp_path, fields, message):
    good = dict(frames=FRAMES, actions=[1, 3, 2, 0], clipped=[1.0, 0.0, 1.0, 0.0], discounts=[1.0] * 4, clipped_return=2.0)
    path = tmp_path / GAME / "run_1-00000-of-00001"
    write_tfrecord_gzip(path, [episode_record(**good), episode_record(**{**good, **fields}, episode_idx=7)])
    with pytest.raises(DataError) as excinfo:
        load_atari(GAME, 1, tmp_path, 1.0, cache_dir=tmp_path / "cache", progress=False)
    assert one_line(excinfo).startswith(f"{path}")
    assert message in str(excinfo.value)
    assert not (tmp_path / "cache" / "atari" / f"{GAME}_run_1_1.0").exists()


def small_episodes(reward, discount, action, observation=None) -> Episodes:
    """Two episodes of 3 and 2 steps (the last step of each is padding)."""
    is_first = np.asarray([1, 0, 0, 1, 0], bool)
    is_last = np.asarray([0, 0, 1, 0, 1], bool)
    obs = np.zeros((5, 2), np.float32) if observation is None else observation
    return Episodes(obs, np.asarray(action, np.int32), np.asarray(reward, np.float32), np.asarray(discount, np.float32),
                    is_first, is_last, is_last.copy())  # fmt: skip


def test_check_values_names_the_episode_and_step_of_the_first_bad_value():
    ok = dict(reward=[0, 1, 0, 0.5, 0], discount=[1, 0, 0, 1, 0], action=[0, 2, 0, 1, 0])
    check_values(small_episodes(**ok), "d", num_actions=3)
    cases = [
        (dict(reward=[0, 1, 0, np.nan, 0]), "d: the reward at episode 1, step 0 is nan"),
        (dict(discount=[1, 1.5, 0, 1, 0]), "d: the discount at episode 0, step 1 is 1.5, not in [0, 1]"),
        (dict(action=[0, 2, 0, 0, 3]), "d: the action at episode 1, step 1 is 3, outside the 3 actions 0..2"),
        (dict(observation=np.where(np.arange(10).reshape(5, 2) == 5, np.inf, 0).astype(np.float32)),
         "d: the observation at episode 0, step 2 is not finite"),
    ]  # fmt: skip
    for change, message in cases:
        with pytest.raises(DataError) as excinfo:
            check_values(small_episodes(**{**ok, **change}), "d", num_actions=3)
        assert one_line(excinfo).startswith(message)


def test_bsuite_episodes_with_a_non_finite_reward_or_a_bad_action_are_refused(tmp_path):
    from common.bsuite import datasets as bsuite_data

    def steps(reward, action):
        return {
            "observation": np.zeros((3, 2), np.float32), "action": np.asarray(action), "reward": np.asarray(reward),
            "discount": np.asarray([1.0, 0.0, 0.0]), "is_first": np.asarray([1, 0, 0], bool),
            "is_last": np.asarray([0, 0, 1], bool), "is_terminal": np.asarray([0, 0, 1], bool),
        }  # fmt: skip

    good = steps([0.0, 1.0, 0.0], [0, 2, 0])
    assert bsuite_data._assemble([good, good], tmp_path).num_episodes == 2
    with pytest.raises(DataError) as excinfo:
        bsuite_data._assemble([good, steps([0.0, np.nan, 0.0], [0, 2, 0])], tmp_path)
    assert one_line(excinfo) == f"{tmp_path}: the reward at episode 1, step 1 is nan; the data is corrupt"
    with pytest.raises(DataError, match="action at episode 0, step 1 is 7, outside the 3 actions"):
        bsuite_data._assemble([steps([0.0, 1.0, 0.0], [0, 7, 0]), good], tmp_path)


# ----------------------------------------------------------------------------------------------
# The cache
# ----------------------------------------------------------------------------------------------


def load(data, cache, **kwargs):
    return load_atari(GAME, 1, data, 1.0, cache_dir=cache, progress=False, **kwargs)


def assert_same(a: Episodes, b: Episodes) -> None:
    for name in Episodes._fields:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def entries(cache: Path) -> list:
    """What lies in the cache's atari directory, lock file aside."""
    return sorted(p.name for p in (cache / "atari").iterdir() if not p.name.endswith(".lock"))


def test_a_changed_source_rebuilds_and_a_corrupt_cache_is_rebuilt_or_refused(data, tmp_path, capsys):
    cache = tmp_path / "cache"
    first, _ = load(data, cache)
    path = cache_path(GAME, 1, 1.0, cache)
    manifest = read_cache_meta(path)
    assert set(manifest["arrays"]) == set(Episodes._fields) and cache_problem(path) is None
    shard = data / GAME / "run_1-00001-of-00002"
    assert manifest["shards"][1]["version"] == {"size": shard.stat().st_size, "mtime_ns": shard.stat().st_mtime_ns}

    # A shard replaced by other data (shard 0's episodes): the cache is rebuilt from it.
    shutil.copy(data / GAME / "run_1-00000-of-00002", shard)
    capsys.readouterr()
    second, _ = load(data, cache)
    assert f"{shard} changed since it was cached" in capsys.readouterr().out
    halves = [np.split(np.asarray(e.observation), [np.flatnonzero(e.is_first)[4]]) for e in (first, second)]
    assert not np.array_equal(*halves[0]) and np.array_equal(*halves[1])  # now shard 1 repeats shard 0

    # One flipped byte, or a NaN written into the rewards: detected, rebuilt.
    second = Episodes(*(np.array(field) for field in second))  # a copy: the flip below hits the mapped file
    version = path.resolve()
    with open(version / "observation.npy", "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0x10]))
    third, _ = load(data, cache)
    assert "is corrupt: observation.npy fails its CRC32C checksum" in capsys.readouterr().out
    assert_same(third, second)
    reward = np.load(path / "reward.npy")
    reward[5] = np.nan
    np.save(path / "reward.npy", reward)
    assert_same(load(data, cache)[0], second)
    assert "reward.npy fails its CRC32C checksum" in capsys.readouterr().out
    assert entries(cache) == sorted([path.name, path.resolve().name])  # the link and one version

    # Corrupt and its source gone: refused, in one line.
    np.save(path / "reward.npy", reward)
    shutil.rmtree(data)
    with pytest.raises(DataError) as excinfo:
        load(data, cache, num_shards=2)
    message = one_line(excinfo)
    assert message.startswith(f"the cache {path} is corrupt: reward.npy fails its CRC32C checksum, and rebuilding it")
    assert "no RL Unplugged Atari data" in message


def test_full_disk_cache_file_and_link_loops_are_one_line_errors(data, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=3 * 2**20))
    with pytest.raises(DataError) as excinfo:
        load(data, cache)
    message = one_line(excinfo)
    assert message.startswith(f"not enough free disk space for the cache {cache_path(GAME, 1, 1.0, cache)}: it needs")
    assert "MiB and 3.0 MiB are free" in message and entries(cache) == []
    monkeypatch.undo()

    (tmp_path / "a_file").write_text("not a directory")
    with pytest.raises(DataError) as excinfo:
        load(data, tmp_path / "a_file")
    assert one_line(excinfo).startswith(f"the cache directory {tmp_path / 'a_file' / 'atari'} cannot be made: ")
    cache_path(GAME, 1, 1.0, cache).write_text("in the way")
    with pytest.raises(DataError, match="is a file, not a directory; remove it"):
        load(data, cache)

    os.symlink(tmp_path / "loop_b", tmp_path / "loop_a")
    os.symlink(tmp_path / "loop_a", tmp_path / "loop_b")
    with pytest.raises(DataError) as excinfo:
        load(tmp_path / "loop_a", tmp_path / "cache2")
    assert one_line(excinfo).startswith(f"the data directory {tmp_path / 'loop_a'} is a symbolic link loop; fix the link")
    shutil.move(data / GAME, tmp_path / "moved")
    os.symlink(data / "elsewhere", data / GAME)
    os.symlink(data / GAME, data / "elsewhere")
    with pytest.raises(DataError) as excinfo:
        load(data, tmp_path / "cache2", num_shards=2)
    assert "is a symbolic link loop; fix or remove the link" in one_line(excinfo)
    with pytest.raises(DataError, match="is a file, not a directory of shards"):
        load(tmp_path / "a_file", tmp_path / "cache2")


CHILD = """
import sys, time
from common.atari import loader, shards

decode = shards.decode_frame
shards.decode_frame = lambda png: (time.sleep(float(sys.argv[4])), decode(png))[1]  # a slow builder
episodes, _ = loader.load_atari(
    "Breakout", 1, sys.argv[1], 1.0, cache_dir=sys.argv[2], workers=1, progress=False, num_shards=int(sys.argv[3])
)
print("loaded", episodes.num_episodes, episodes.num_steps, int(episodes.observation.sum()), flush=True)
"""


def start_child(data, cache, delay):
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data), str(cache), "2", str(delay)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_two_concurrent_builders_make_one_valid_cache(data, tmp_path, recorded):
    cache = tmp_path / "cache"
    children = [start_child(data, cache, 0.01) for _ in range(2)]
    outputs = [child.communicate(timeout=300) for child in children]
    for child, (_, err) in zip(children, outputs):
        assert child.returncode == 0 and "Traceback" not in err, err
    stdout = "".join(out for out, _ in outputs)
    assert stdout.count("Reading 1.0 of every shard") == 1  # one builder; the other waited and read its cache
    assert stdout.count("Waiting for another process") == 1
    loaded = [line for line in stdout.splitlines() if line.startswith("loaded")]
    assert len(loaded) == 2 and loaded[0] == loaded[1]
    path = cache_path(GAME, 1, 1.0, cache)
    assert cache_problem(path) is None and len(entries(cache)) == 2  # the link and its version
    assert_same(load(data, cache)[0], load(recorded[0], tmp_path / "fresh")[0])


@pytest.mark.e2e
def test_kill_9_during_a_cache_write_leaves_the_old_cache_and_the_next_run_cleans_and_rebuilds(data, tmp_path, capsys):
    cache = tmp_path / "cache"
    load(data, cache)
    path = cache_path(GAME, 1, 1.0, cache)
    old = path.resolve()
    shard = data / GAME / "run_1-00001-of-00002"
    shutil.copy(data / GAME / "run_1-00000-of-00002", shard)  # a changed source: the next load rebuilds
    child = start_child(data, cache, 0.02)
    deadline = time.monotonic() + 120
    while not list((cache / "atari").glob(".*.partial-*/observation.npy")):
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.05)
    time.sleep(0.5)  # frames are being decoded into the partial directory
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    partials = list((cache / "atari").glob(".*.partial-*"))
    assert len(partials) == 1 and (partials[0] / "owner.json").is_file()
    assert path.resolve() == old and cache_problem(path) is None  # the old cache is intact and current
    capsys.readouterr()
    rebuilt, _ = load(data, cache)
    assert f"Removing {partials[0]}, left by process {child.pid} that died" in capsys.readouterr().out
    assert entries(cache) == sorted([path.name, path.resolve().name]) and path.resolve() != old
    assert cache_problem(path) is None
    assert_same(rebuilt, load(data, tmp_path / "fresh")[0])
