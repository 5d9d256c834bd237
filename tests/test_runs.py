"""Run directories (unique, resumable in place), strict results.json, checkpoints checked against the networks."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import flax.serialization
import jax
import numpy as np
import pytest
from scripts import ROOT, one_line_error, run_script

import rosmo
from common import runs
from common.errors import UsageError


def fake_args(**changes):
    args = rosmo.apply_env_defaults(rosmo.Args(**changes))
    rosmo.check_args(args)
    return args


def fake_data():
    return SimpleNamespace(info={"episodes": 1}, num_actions=3, obs_shape=(50,), obs_dtype=np.float32)


def test_runs_started_in_the_same_second_with_the_same_name_get_their_own_directories(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runs.time, "time", lambda: 1_700_000_000.0)
    suffixes = iter(["aaaaaa", "aaaaaa", "bbbbbb", "cccccc", "dddddd"])  # the second run's first pick collides
    real = runs.secrets.token_hex
    monkeypatch.setattr(runs.secrets, "token_hex", lambda n: next(suffixes) if n == 3 else real(n))
    state = SimpleNamespace(step=np.zeros(1, np.int32))
    dirs = []
    for _ in range(2):
        run = runs.Run("rosmo", fake_args())
        run.restore(state, fake_data())
        dirs.append(run.dir)
    assert dirs[0] != dirs[1] and all(d.name.startswith("catch__rosmo__0__1700000000_") for d in dirs)
    for d in dirs:
        assert json.loads((d / "args.json").read_text())["exp_name"] == "rosmo"
        assert json.loads((d / "results.json").read_text())["status"] == "running"


def test_results_json_is_strict_json_with_null_for_nan(tmp_path):
    runs.write_json(tmp_path / "r.json", {"a": float("nan"), "b": [1.0, float("inf")], "c": np.float32("nan")})
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": None}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # temporary files are renamed away


def test_a_checkpoint_that_does_not_fit_names_the_first_mismatching_leaf(tmp_path):
    saved = {
        "params": {"torso": {"kernel": np.zeros((4, 8), np.float32), "bias": np.zeros(8, np.float32)}},
        "step": np.int32(3),
    }
    runs.save_checkpoint(tmp_path / "c.msgpack", saved, {"algo": "rosmo", "env_id": "catch", "num_seeds": 1, "step": 3})
    wider = {
        "params": {"torso": {"kernel": np.zeros((4, 16), np.float32), "bias": np.zeros(8, np.float32)}},
        "step": np.int32(0),
    }
    with pytest.raises(UsageError) as error:
        runs.load_checkpoint(tmp_path / "c.msgpack", wider, {"algo": "rosmo"})
    message = str(error.value)
    assert "/params/torso/kernel" in message and "float32[4, 8]" in message and "float32[4, 16]" in message
    halves = {
        "params": {"torso": {"kernel": np.zeros((4, 8), np.float16), "bias": np.zeros(8, np.float32)}},
        "step": np.int32(0),
    }
    with pytest.raises(UsageError, match="/params/torso/kernel: the checkpoint has float32"):
        runs.load_checkpoint(tmp_path / "c.msgpack", halves, {"algo": "rosmo"})
    restored, meta = runs.load_checkpoint(tmp_path / "c.msgpack", {**saved, "step": np.int32(0)}, {"algo": "rosmo"})
    assert int(restored["step"]) == 3 and meta["step"] == 3


def test_resume_takes_the_saved_arguments_and_refuses_changed_flags(tmp_path):
    run_dir = tmp_path / "catch__rosmo__0__1_abcdef"
    run_dir.mkdir()
    runs.write_json(run_dir / "args.json", vars(fake_args(learning_rate=1e-3, total_steps=400, eval_every=200)))
    args = runs.Run.saved_args(str(run_dir), rosmo.Args, rosmo.Args(resume=str(run_dir)))
    assert args.learning_rate == 1e-3 and args.total_steps == 400 and args.resume == str(run_dir)
    with pytest.raises(UsageError, match="drop --num-seeds, --learning-rate"):
        runs.Run.saved_args(str(run_dir), rosmo.Args, rosmo.Args(resume=str(run_dir), learning_rate=0.5, num_seeds=2))


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ""])
def test_exp_names_that_leave_runs_are_refused(name):
    with pytest.raises(UsageError, match="must be a plain name"):
        runs.check_exp_name(name)


# ---------------------------------------------------------------------------------------------
# End to end.

RESUME_FLAGS = [
    "--num-seeds",
    "2",
    "--save-model",
    "--total-steps",
    "1000",
    "--eval-every",
    "200",
    "--eval-episodes",
    "2",
    "--batch-size",
    "16",
    "--updates-per-dispatch",
    "50",
]


def leaves(checkpoint: Path):
    payload = flax.serialization.msgpack_restore(checkpoint.read_bytes())
    return jax.tree_util.tree_leaves(payload["state"]), json.loads(payload["meta"])


@pytest.mark.e2e
def test_sigterm_then_resume_ends_identical_to_an_uninterrupted_run(catch_data, tmp_path):
    whole_cwd, cut_cwd = tmp_path / "whole", tmp_path / "cut"
    whole_cwd.mkdir(), cut_cwd.mkdir()
    whole = run_script(["--data-dir", str(catch_data), *RESUME_FLAGS], whole_cwd)
    assert whole.returncode == 0, whole.stderr[-3000:]
    (whole_dir,) = (whole_cwd / "runs").iterdir()

    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "rosmo.py"), "--data-dir", str(catch_data), *RESUME_FLAGS],
        cwd=cut_cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:  # wait for the first evaluation in results.json
        found = list(cut_cwd.glob("runs/*/results.json"))
        if found and json.loads(found[0].read_text() or "{}").get("eval_history", {}).get("steps"):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "--resume" in stderr and "Traceback" not in stderr
    (cut_dir,) = (cut_cwd / "runs").iterdir()
    stopped = json.loads((cut_dir / "results.json").read_text())
    assert stopped["status"] == "interrupted" and 200 <= stopped["total_steps"] < 1000
    assert leaves(cut_dir / "checkpoint.msgpack")[1]["step"] == stopped["total_steps"]

    resumed = run_script(["--resume", str(cut_dir)], cut_cwd)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [p.name for p in (cut_cwd / "runs").iterdir()] == [cut_dir.name]  # continued in place
    a, b = (json.loads((d / "results.json").read_text()) for d in (whole_dir, cut_dir))
    assert b["status"] == "finished" and b["run_id"] == stopped["run_id"]
    assert a["eval_history"]["steps"] == b["eval_history"]["steps"] == [200, 400, 600, 800, 1000]
    assert a["eval_history"]["returns"] == b["eval_history"]["returns"] and a["final_returns"] == b["final_returns"]
    (whole_leaves, whole_meta), (cut_leaves, cut_meta) = (
        leaves(whole_dir / "checkpoint.msgpack"),
        leaves(cut_dir / "checkpoint.msgpack"),
    )
    assert whole_meta["step"] == cut_meta["step"] == 1000
    assert cut_meta["num_actions"] == 3 and cut_meta["obs_shape"] == [50] and cut_meta["obs_dtype"] == "float32"
    assert all(np.array_equal(x, y) for x, y in zip(whole_leaves, cut_leaves, strict=True))
    assert len(list(cut_dir.glob("events.out.tfevents.*"))) == 2  # one TensorBoard directory, a file per process


@pytest.mark.e2e
def test_four_runs_launched_at_once_leave_four_results(catch_data, tmp_path):
    flags = [
        "--data-dir",
        str(catch_data),
        "--total-steps",
        "20",
        "--eval-every",
        "20",
        "--eval-episodes",
        "1",
        "--batch-size",
        "8",
        "--updates-per-dispatch",
        "10",
        "--exp-name",
        "same",
        "--warmup-steps",
        "0",
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "bc.py"), *flags],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=900)
        assert proc.returncode == 0, stderr[-3000:]
    found = sorted((tmp_path / "runs").glob("catch__same__0__*/results.json"))
    assert len(found) == 4
    assert all(json.loads(p.read_text())["status"] == "finished" for p in found)


def test_resuming_with_another_script_is_refused(catch_data, tmp_path):
    run_dir = tmp_path / "runs" / "catch__bc__0__1_abcdef"
    run_dir.mkdir(parents=True)
    runs.write_json(run_dir / "args.json", vars(fake_args()))
    runs.write_json(run_dir / "results.json", {"algo": "bc", "status": "interrupted"})
    line = one_line_error(run_script(["--resume", str(run_dir)], tmp_path))
    assert "is a bc run; resume it with bc.py" in line
