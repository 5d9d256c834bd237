"""End-to-end Atari runs of the scripts on an RL Unplugged fixture recorded from real ALE play.

`python -m common.atari.fixture` writes a few short Pong episodes in the exact RL Unplugged
shard format; the scripts train on them for a few updates with the Atari networks of
Appendix D.2.1 and evaluate in the real game (episodes capped at a few steps, a one-step unroll:
these ResNets take a minute to compile on a CPU).
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from scripts import ROOT, one_line_error, optimised_env, run_script, run_scripts

from common.atari.memory import MIN_RING_STEPS

# One dispatch of 2 updates at batch 4, one evaluation episode capped at 12 agent steps.
BUDGET = "--batch-size 4 --total-steps 4 --eval-every 4 --updates-per-dispatch 2 --eval-episodes 1 --eval-max-steps 12"
TINY = ["--env-id", "Pong", *BUDGET.split(), "--unroll-steps", "1", "--td-steps", "1"]


@pytest.fixture(scope="module")
def pong_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("rlu")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "common.atari.fixture",
            "--game",
            "Pong",
            "--run",
            "1",
            "--num-shards",
            "2",
            "--episodes-per-shard",
            "2",
            "--max-steps",
            "40",
            "--out",
            str(root),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return root


# rosmo.py covers the model-based path with the full Atari networks (6x6x64 states); benchmark/atari.py
# drives bc.py, the cheapest script to compile, since it checks the protocol around the scripts (every script
# trains on this fixture in tests/test_store.py, and the Atari MuZero network's methods are in test_networks.py).
# Both runs start together (a core each).
@pytest.fixture(scope="module")
def atari_runs(pong_shards, tmp_path_factory):
    """rosmo.py on the Pong fixture, and benchmark/atari.py training bc.py on it: {name: (cwd, output)}."""
    rosmo_cwd, bench_cwd = tmp_path_factory.mktemp("rosmo"), tmp_path_factory.mktemp("benchmark")
    # A budget below what anything needs: --store auto (the default) still trains, on the smallest ring.
    bench_flags = [
        *"--games Pong --algos bc --num-seeds 2 --total-steps 4 --eval-every 4 --eval-episodes 1".split(),
        "--extra=--batch-size 4 --eval-max-steps 12 --updates-per-dispatch 2 --device-memory-gb 0.01",
        *["--bootstrap-reps", "100", "--data-dir", str(pong_shards)],
        *["--workdir", str(bench_cwd), "--out-dir", str(bench_cwd / "results")],
    ]
    # Full-size ResNets: compiled with XLA's full optimisation they run faster than the cheap compile saves.
    rosmo, bench = run_scripts(
        ([*TINY, "--data-dir", str(pong_shards)], rosmo_cwd, "rosmo.py", optimised_env()),
        (bench_flags, bench_cwd, "benchmark/atari.py", optimised_env()),
    )
    return {"rosmo": (rosmo_cwd, rosmo), "benchmark": (bench_cwd, bench)}


@pytest.mark.e2e
def test_rosmo_trains_on_rl_unplugged_shards_and_evaluates_in_the_real_game(atari_runs):
    cwd, out = atari_runs["rosmo"]
    assert out.returncode == 0, out.stderr[-3000:]
    (results_path,) = (cwd / "runs").glob("Pong__*/results.json")
    results = json.loads(results_path.read_text())
    assert results["status"] == "finished" and results["env_id"] == "Pong" and results["total_steps"] == 4
    assert results["args"]["num_bins"] == 601 and results["args"]["batch_size"] == 4  # Atari defaults, flag wins
    assert results["data"]["episodes"] == 4 and results["data"]["transitions"] == 160
    # Pong's raw return over 12 agent steps of real play is 0 or a lost point; normalised with Pong's table.
    (ret,) = results["final_returns"]
    assert -12 <= ret <= 1 and results["normalized_scores"][0] == pytest.approx((ret + 20.3) / (18.25 + 20.3))
    # What the evaluation played: one 12-step episode (Pong outlasts the cap), its shares over Pong's 6 actions.
    (episodes,) = results["eval_history"]["episodes"]
    assert episodes["lengths"] == [12.0] and len(episodes["action_shares"][0]) == 6
    assert sum(episodes["action_shares"][0]) == pytest.approx(1.0, abs=1e-3)  # shares kept to 4 decimals


def test_a_run_outside_the_five_rl_unplugged_runs_is_a_one_line_error(tmp_path):
    line = one_line_error(run_script(["--env-id", "Pong", "--run", "6"], tmp_path))
    assert "--run must be in [1, 5]" in line


def test_unknown_env_id_lists_bsuite_tasks_and_atari_games(tmp_path):
    line = one_line_error(run_script(["--env-id", "Pacman"], tmp_path, "bc.py"))
    assert "catch, cartpole, mountain_car" in line and "MsPacman" in line and "Pong" in line


def test_a_non_positive_evaluation_cap_is_a_one_line_error(tmp_path):
    line = one_line_error(run_script(["--env-id", "Pong", "--eval-max-steps", "0"], tmp_path, "cql.py"))
    assert "--eval-max-steps must be at least 1" in line


@pytest.mark.e2e
def test_atari_protocol_script_trains_on_the_game_and_reports_the_iqm(atari_runs):
    cwd, out = atari_runs["benchmark"]
    out_dir = cwd / "results"
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    table = json.loads((out_dir / "atari_4.json").read_text())
    (row,) = table["rows"]
    (run_dir,) = row["runs"]
    results = json.loads((cwd / run_dir / "results.json").read_text())
    assert results["algo"] == "bc" and results["status"] == "finished" and results["total_steps"] == 4
    assert results["args"]["batch_size"] == 4 and len(results["final_returns"]) == 2
    assert results["data"]["store"] == "stream" and results["data"]["capacity_steps"] == MIN_RING_STEPS
    (log,) = (cwd / "runs" / "benchmark_logs").glob("Pong_*.log")
    assert f"store: stream store on a ring of {MIN_RING_STEPS} steps, not 131072" in log.read_text()
    assert all(-12 <= r <= 1 for r in results["final_returns"])  # 12 agent steps of real Pong
    assert row["returns"]["Pong"][0] == pytest.approx(sum(results["final_returns"]) / 2)
    assert row["iqm"][0] == pytest.approx(np.mean(results["normalized_scores"]))  # IQM of 2 values is their mean
    md = (out_dir / "atari_4.md").read_text()
    assert "| Pong |" in md and "| bc |" in md
