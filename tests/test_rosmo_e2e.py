"""End-to-end runs of rosmo.py as a user runs it (subprocess), and its one-line errors.

One finished two-seed run (`trained_run`) is the reference for the others: a copy of it stopped by
SIGTERM and resumed in place must end identical to it, and its checkpoint is continued (--checkpoint)
and evaluated. They share its flags, so they share its compiled programs (tests/conftest.py).
"""

import json
import signal
import time
from pathlib import Path

import flax.serialization
import jax
import numpy as np
import pytest
from scripts import finish, one_line_error, run_script, run_scripts, start_script

# 1000 updates in dispatches of 50, evaluated every 250 with 3 episodes: after the first evaluation
# 15 dispatches are left, ample time to stop a run there.
BATCHES = ["--eval-episodes", "3", "--batch-size", "16", "--updates-per-dispatch", "50"]
FLAGS = ["--num-seeds", "2", "--save-model", "--total-steps", "1000", "--eval-every", "250", *BATCHES]


@pytest.fixture(scope="module")
def trained_run(catch_data, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("run")
    out = run_script(["--data-dir", str(catch_data), *FLAGS], cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (cwd / "runs").iterdir()
    return cwd, run_dir, out


def checkpoint_leaves(checkpoint: Path):
    payload = flax.serialization.msgpack_restore(checkpoint.read_bytes())
    return jax.tree_util.tree_leaves(payload["state"]), json.loads(payload["meta"])


@pytest.mark.e2e
def test_rosmo_writes_results_checkpoint_and_tensorboard(trained_run):
    cwd, run_dir, out = trained_run
    assert run_dir.name.startswith("catch__rosmo__0__")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["algo"] == "rosmo" and results["env_id"] == "catch" and results["status"] == "finished"
    assert results["seeds"] == [0, 1] and results["total_steps"] == 1000
    assert len(results["final_returns"]) == 2 and results["final_returns"] == results["eval_history"]["returns"][-1]
    # Catch pays +1 or -1 per episode: the mean of 3 evaluation episodes is -1, -1/3, 1/3 or 1.
    assert all(round(3 * r) in (-3, -1, 1, 3) and abs(3 * r - round(3 * r)) < 1e-9 for r in results["final_returns"])
    expected = [(r + 0.667) / (1.0 + 0.667) for r in results["final_returns"]]
    np.testing.assert_allclose(results["normalized_scores"], expected, rtol=1e-6)
    assert results["eval_history"]["steps"] == [250, 500, 750, 1000]
    # Measured over the training dispatches, a part of the wall-clock time: at least the overall rate.
    assert results["updates_per_s"] >= results["total_steps"] / results["wall_clock_s"]
    assert results["data"]["episodes"] == 60 and results["data"]["transitions"] == 540
    assert (run_dir / "checkpoint.msgpack").stat().st_size > 10_000
    assert list(run_dir.glob("events.out.tfevents.*"))
    assert "final mean return" in out.stdout


@pytest.mark.e2e
def test_sigterm_then_resume_ends_identical_to_an_uninterrupted_run(trained_run, catch_data, tmp_path):
    _, whole_dir, _ = trained_run
    proc = start_script(["--data-dir", str(catch_data), *FLAGS], tmp_path)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:  # wait for the first evaluation in results.json
        found = list(tmp_path.glob("runs/*/results.json"))
        if found and json.loads(found[0].read_text() or "{}").get("eval_history", {}).get("steps"):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    cut = finish(proc)
    assert cut.returncode == 128 + signal.SIGTERM, cut.stderr[-3000:]
    assert "--resume" in cut.stderr and "Traceback" not in cut.stderr
    (cut_dir,) = (tmp_path / "runs").iterdir()
    stopped = json.loads((cut_dir / "results.json").read_text())
    assert stopped["status"] == "interrupted" and 250 <= stopped["total_steps"] < 1000
    assert checkpoint_leaves(cut_dir / "checkpoint.msgpack")[1]["step"] == stopped["total_steps"]

    resumed = run_script(["--resume", str(cut_dir)], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [cut_dir.name]  # continued in place
    a, b = (json.loads((d / "results.json").read_text()) for d in (whole_dir, cut_dir))
    assert b["status"] == "finished" and b["run_id"] == stopped["run_id"]
    assert a["eval_history"]["steps"] == b["eval_history"]["steps"] == [250, 500, 750, 1000]
    assert a["eval_history"]["returns"] == b["eval_history"]["returns"] and a["final_returns"] == b["final_returns"]
    (whole_leaves, whole_meta), (cut_leaves, cut_meta) = (
        checkpoint_leaves(whole_dir / "checkpoint.msgpack"),
        checkpoint_leaves(cut_dir / "checkpoint.msgpack"),
    )
    assert whole_meta["step"] == cut_meta["step"] == 1000
    assert cut_meta["num_actions"] == 3 and cut_meta["obs_shape"] == [50] and cut_meta["obs_dtype"] == "float32"
    assert all(np.array_equal(x, y) for x, y in zip(whole_leaves, cut_leaves, strict=True))
    assert len(list(cut_dir.glob("events.out.tfevents.*"))) == 2  # one TensorBoard directory, a file per process


@pytest.mark.e2e
def test_a_saved_run_resumes_and_evaluates(trained_run, catch_data):
    cwd, run_dir, _ = trained_run
    common = ["--data-dir", str(catch_data), "--num-seeds", "2", "--checkpoint", str(run_dir / "checkpoint.msgpack")]
    continued, evaluated = run_scripts(
        # From the checkpoint at update 1000 on to 1100: one evaluation, at 1100.
        ([*common, *BATCHES, "--total-steps", "1100", "--eval-every", "100", "--exp-name", "resumed"], cwd, "rosmo.py"),
        # A checkpoint at --total-steps: nothing to train, it is evaluated.
        ([*common, "--total-steps", "1000", "--eval-episodes", "3", "--exp-name", "evalonly"], cwd, "rosmo.py"),
    )
    assert continued.returncode == 0, continued.stderr[-3000:]
    results = json.loads(next((cwd / "runs").glob("catch__resumed__*/results.json")).read_text())
    assert results["eval_history"]["steps"] == [1100] and results["total_steps"] == 1100
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    results = json.loads(next((cwd / "runs").glob("catch__evalonly__*/results.json")).read_text())
    assert results["eval_history"]["steps"] == [1000] and len(results["final_returns"]) == 2


def test_unknown_env_id_lists_the_valid_ones(tmp_path):
    line = one_line_error(run_script(["--env-id", "pong"], tmp_path))
    assert "unknown --env-id 'pong'" in line and "catch, cartpole, mountain_car" in line


@pytest.mark.parametrize("fraction", ["0", "1.5"])
def test_data_fraction_out_of_range(tmp_path, fraction):
    line = one_line_error(run_script(["--data-fraction", fraction], tmp_path))
    assert "--data-fraction must be in (0, 1]" in line


def test_batch_larger_than_the_data(tmp_path, catch_data):
    line = one_line_error(
        run_script(["--data-dir", str(catch_data), "--data-fraction", "0.05", "--batch-size", "128"], tmp_path)
    )
    assert "--batch-size 128 does not fit the data (27 transitions)" in line


def test_corrupt_dataset_names_the_path(tmp_path):
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "dataset_info.json").write_text("{ not json")
    line = one_line_error(run_script(["--data-dir", str(bad)], tmp_path))
    assert str(bad) in line


@pytest.mark.e2e
def test_checkpoint_from_another_env_or_algorithm(trained_run, catch_data, tmp_path):
    _, run_dir, _ = trained_run
    payload = flax.serialization.msgpack_restore((run_dir / "checkpoint.msgpack").read_bytes())
    changed = [("env_id", "cartpole"), ("algo", "mzu")]
    runs = []
    for key, value in changed:
        meta = {**json.loads(payload["meta"]), key: value}
        other = tmp_path / f"other_{key}.msgpack"
        other.write_bytes(flax.serialization.msgpack_serialize({"meta": json.dumps(meta), "state": payload["state"]}))
        runs.append(["--num-seeds", "2", "--checkpoint", str(other)])
    runs.append(["--checkpoint", str(run_dir / "checkpoint.msgpack")])  # 2 seeds saved, 1 asked for
    outs = run_scripts(*[(["--data-dir", str(catch_data), *flags], tmp_path, "rosmo.py") for flags in runs])
    for (key, value), out in zip(changed, outs):
        line = one_line_error(out)
        assert f"written with {key}='{value}'" in line and str(tmp_path / f"other_{key}.msgpack") in line
    assert "num_seeds=2" in one_line_error(outs[-1])


@pytest.mark.e2e
def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(catch_data, tmp_path):
    # The learning rate jumps by 1e30 after 40 updates: the loss diverges, the run must stop.
    out = run_script(
        [
            "--data-dir",
            str(catch_data),
            "--save-model",
            "--total-steps",
            "400",
            "--eval-every",
            "20",
            "--eval-episodes",
            "1",
            "--batch-size",
            "16",
            "--updates-per-dispatch",
            "10",
            "--warmup-steps",
            "1",
            "--lr-decay-steps",
            "40",
            "--lr-decay-rate",
            "1e30",
        ],
        tmp_path,
    )
    line = one_line_error(out, code=1)
    assert "NaN or infinite" in line and "last good checkpoint" in line
    (run_dir,) = (tmp_path / "runs").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "diverged"
    good_step = results["total_steps"]
    assert 20 <= good_step < 400 and good_step % 20 == 0
    payload = flax.serialization.msgpack_restore((run_dir / "checkpoint.msgpack").read_bytes())
    assert json.loads(payload["meta"])["step"] == good_step
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(payload["state"]["params"]))
