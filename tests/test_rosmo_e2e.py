"""End-to-end runs of rosmo.py as a user runs it (subprocess), and its one-line errors."""

import json

import numpy as np
import pytest
from scripts import SMALL, one_line_error, run_script


@pytest.fixture(scope="module")
def trained_run(catch_data, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("run")
    out = run_script(["--data-dir", str(catch_data), "--num-seeds", "2", "--save-model", *SMALL], cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (cwd / "runs").iterdir()
    return cwd, run_dir, out


@pytest.mark.e2e
def test_rosmo_writes_results_checkpoint_and_tensorboard(trained_run):
    cwd, run_dir, out = trained_run
    assert run_dir.name.startswith("catch__rosmo__0__")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["algo"] == "rosmo" and results["env_id"] == "catch" and results["status"] == "finished"
    assert results["seeds"] == [0, 1] and results["total_steps"] == 300
    assert len(results["final_returns"]) == 2 and results["final_returns"] == results["eval_history"]["returns"][-1]
    # Catch pays +1 or -1 per episode: the mean of 3 evaluation episodes is -1, -1/3, 1/3 or 1.
    assert all(round(3 * r) in (-3, -1, 1, 3) and abs(3 * r - round(3 * r)) < 1e-9 for r in results["final_returns"])
    expected = [(r + 0.667) / (1.0 + 0.667) for r in results["final_returns"]]
    np.testing.assert_allclose(results["normalized_scores"], expected, rtol=1e-6)
    assert results["eval_history"]["steps"] == [150, 300]
    # Measured over the training dispatches, a part of the wall-clock time: at least the overall rate.
    assert results["updates_per_s"] >= results["total_steps"] / results["wall_clock_s"]
    assert results["data"]["episodes"] == 60 and results["data"]["transitions"] == 540
    assert (run_dir / "checkpoint.msgpack").stat().st_size > 10_000
    assert list(run_dir.glob("events.out.tfevents.*"))
    assert "final mean return" in out.stdout


@pytest.mark.e2e
def test_a_saved_run_resumes_and_evaluates(trained_run, catch_data):
    cwd, run_dir, _ = trained_run
    ckpt = str(run_dir / "checkpoint.msgpack")
    resumed = run_script(
        [
            "--data-dir",
            str(catch_data),
            "--num-seeds",
            "2",
            "--checkpoint",
            ckpt,
            *SMALL[:0],
            "--total-steps",
            "400",
            "--eval-every",
            "100",
            "--eval-episodes",
            "2",
            "--batch-size",
            "32",
            "--updates-per-dispatch",
            "50",
            "--exp-name",
            "resumed",
        ],
        cwd,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.loads(next((cwd / "runs").glob("catch__resumed__*/results.json")).read_text())
    assert results["eval_history"]["steps"] == [400] and results["total_steps"] == 400
    evaluated = run_script(
        [
            "--data-dir",
            str(catch_data),
            "--num-seeds",
            "2",
            "--checkpoint",
            ckpt,
            "--total-steps",
            "300",
            "--eval-episodes",
            "2",
            "--exp-name",
            "evalonly",
        ],
        cwd,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    results = json.loads(next((cwd / "runs").glob("catch__evalonly__*/results.json")).read_text())
    assert results["eval_history"]["steps"] == [300] and len(results["final_returns"]) == 2


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
    import flax.serialization

    from common.runs import load_checkpoint, save_checkpoint  # noqa: F401 - the format under test

    _, run_dir, _ = trained_run
    payload = flax.serialization.msgpack_restore((run_dir / "checkpoint.msgpack").read_bytes())
    for key, value in [("env_id", "cartpole"), ("algo", "mzu")]:
        meta = json.loads(payload["meta"])
        meta[key] = value
        other = tmp_path / f"other_{key}.msgpack"
        other.write_bytes(flax.serialization.msgpack_serialize({"meta": json.dumps(meta), "state": payload["state"]}))
        line = one_line_error(
            run_script(["--data-dir", str(catch_data), "--num-seeds", "2", "--checkpoint", str(other)], tmp_path)
        )
        assert f"written with {key}='{value}'" in line and str(other) in line
    line = one_line_error(
        run_script(["--data-dir", str(catch_data), "--checkpoint", str(run_dir / "checkpoint.msgpack")], tmp_path)
    )
    assert "num_seeds=2" in line


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
    import flax.serialization

    payload = flax.serialization.msgpack_restore((run_dir / "checkpoint.msgpack").read_bytes())
    assert json.loads(payload["meta"])["step"] == good_step
    leaves = __import__("jax").tree_util.tree_leaves(payload["state"]["params"])
    assert all(np.all(np.isfinite(np.asarray(x))) for x in leaves)
