"""Multi-host training (`--distributed`): each process's own part of the data, sampled where it lives.

The numerics of the sharded store on a [processes, devices] mesh are checked in
test_multidevice.py; here: the split of the data, sampling from stacked parts, and a real
two-process run of a script through jax.distributed on this machine's CPU (gloo collectives).
"""

import importlib
import json
import os
import re
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from scripts import ROOT, SMALL, one_line_error
from test_replay import synthetic_episodes

from common.atari.fixture import write_fixture
from common.atari.loader import load_atari
from common.episodes import process_part
from common.errors import DataError
from common.replay import make_store, sample_windows, stack_shards


def test_process_parts_are_disjoint_and_together_are_the_data():
    episodes = synthetic_episodes([4, 7, 3, 9, 5, 6, 2])
    parts = [process_part(episodes, p, 3, "test") for p in range(3)]
    ids = [sorted(set(part.observation[:, 0].astype(int))) for part in parts]
    assert ids == [[0, 3, 6], [1, 4], [2, 5]]
    assert sum(part.num_steps for part in parts) == episodes.num_steps
    np.testing.assert_array_equal(parts[1].observation[:8], episodes.observation[5:13])  # episode 1, whole


def test_more_processes_than_episodes_is_a_one_line_error():
    try:
        process_part(synthetic_episodes([3, 4]), 0, 3, "data.tfrecord")
    except DataError as e:
        assert "2 episodes cannot be split over 3 processes" in str(e) and "\n" not in str(e)
    else:
        raise AssertionError("no error")


def test_sampling_from_stacked_parts_takes_an_equal_share_from_each_and_never_the_padding():
    episodes = synthetic_episodes([4, 7, 3, 9, 5, 6])
    stores = [make_store(process_part(episodes, p, 2, "test")) for p in range(2)]
    stacked = stack_shards(stores)
    assert stacked.observation.shape[:2] == (2, max(s.observation.shape[0] for s in stores))
    window = jax.jit(sample_windows, static_argnums=(2, 3, 4))(stacked, jax.random.PRNGKey(0), 64, 5, 3)
    episode_of_row = np.asarray(window.observation[:, 0, 0]).astype(int)
    assert set(episode_of_row[:32]) <= {0, 2, 4} and set(episode_of_row[32:]) <= {1, 3, 5}
    assert len(set(episode_of_row[:32])) == 3 and len(set(episode_of_row[32:])) == 3  # both parts fully used
    assert np.all(np.asarray(window.observation[..., 2]) == 1.0)  # padded steps (all zero) never appear


def test_atari_processes_read_disjoint_shards(tmp_path):
    out = tmp_path / "data"
    write_fixture(out, game="Pong", run=1, num_shards=2, episodes_per_shard=2, max_steps=60, seed=3)
    whole, _ = load_atari("Pong", 1, out, 1.0, cache_dir=tmp_path / "cache", progress=False)
    parts = [
        load_atari("Pong", 1, out, 1.0, cache_dir=tmp_path / "cache", progress=False, process=(p, 2))[0] for p in range(2)
    ]
    assert [p.num_episodes for p in parts] == [2, 2] and whole.num_episodes == 4
    for field in whole._fields:  # shard 0's episodes, then shard 1's: the whole data in order
        np.testing.assert_array_equal(np.concatenate([getattr(p, field) for p in parts]), getattr(whole, field))
    try:
        load_atari("Pong", 1, out, 1.0, cache_dir=tmp_path / "cache", progress=False, process=(0, 3))
    except DataError as e:
        assert "2 shards of Pong run 1 cannot be split over 3 processes" in str(e)
    else:
        raise AssertionError("no error")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.e2e
def test_two_processes_train_with_jax_distributed_and_only_process_zero_writes(catch_data, tmp_path):
    flags = [
        *SMALL,
        "--total-steps",
        "100",
        "--eval-every",
        "100",
        "--batch-size",
        "16",
        "--num-seeds",
        "2",
        "--data-dir",
        str(catch_data),
        "--distributed",
    ]
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "JAX_PLATFORMS": "cpu",
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}",
        "JAX_NUM_PROCESSES": "2",
    }
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    procs, logs = [], []
    for p in range(2):
        (tmp_path / f"p{p}").mkdir()
        logs.append((tmp_path / f"p{p}.out", tmp_path / f"p{p}.err"))
        with open(logs[p][0], "w") as stdout, open(logs[p][1], "w") as stderr:
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(ROOT / "bc.py"), *flags],
                    cwd=tmp_path / f"p{p}",
                    env={**env, "JAX_PROCESS_ID": str(p)},
                    stdout=stdout,
                    stderr=stderr,
                )
            )
    # A process that failed leaves its peer (and itself, at exit) waiting at a barrier of the coordination
    # service for minutes: stop both at the first failure.
    deadline = time.time() + 600
    while any(proc.poll() is None for proc in procs) and time.time() < deadline:
        failed = any(proc.poll() not in (None, 0) for proc in procs) or any("Traceback" in err.read_text() for _, err in logs)
        if failed:
            break
        time.sleep(0.2)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    outputs = [(out.read_text(), err.read_text()) for out, err in logs]
    assert [proc.returncode for proc in procs] == [0, 0], "\n".join(
        f"process {p}: {err[-3000:]}" for p, (_, err) in enumerate(outputs)
    )
    assert "data (part 1 of 2)" in outputs[0][0] and "data (part 2 of 2)" in outputs[1][0]
    (results_path,) = (tmp_path / "p0").glob("runs/*/results.json")
    results = json.loads(results_path.read_text())
    assert results["status"] == "finished" and results["total_steps"] == 100 and len(results["final_returns"]) == 2
    assert results["data"]["num_processes"] == 2
    # Each process held its half of the episodes (process 0 the extra one of an odd count); only process 0 wrote.
    counts = [int(re.search(r"\| (\d+) episodes", stdout).group(1)) for stdout, _ in outputs]
    assert results["data"]["episodes"] == counts[0] and counts[0] - counts[1] in (0, 1), counts
    assert not (tmp_path / "p1" / "runs").exists()


def test_distributed_without_a_coordinator_is_a_one_line_error(tmp_path):
    env_free = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COORDINATOR")}
    out = subprocess.run(
        [sys.executable, str(ROOT / "bc.py"), "--distributed"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env_free, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    line = one_line_error(out)
    assert "JAX_COORDINATOR_ADDRESS" in line and "--distributed" in line


def test_every_script_has_the_distributed_flag_off_by_default():
    for name in ("rosmo", "mzu", "mzu_q", "crr", "cql", "bc"):
        assert importlib.import_module(name).Args().distributed is False, name
