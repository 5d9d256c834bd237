"""Run directories (unique, resumable in place), strict results.json, checkpoints checked against the networks."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from scripts import BC_FLAGS, one_line_error, run_script, run_scripts

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


def test_results_list_each_machine_a_run_trained_on_across_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state = SimpleNamespace(step=np.zeros(1, np.int32))
    run = runs.Run("rosmo", fake_args())
    run.restore(state, fake_data())
    here = runs.describe_devices()
    assert json.loads((run.dir / "results.json").read_text())["devices"] == [here]
    # The run began elsewhere (as the results of a GPU session say), then is resumed here: one entry more.
    results = json.loads((run.dir / "results.json").read_text())
    results.update(status="interrupted", devices=["1 x NVIDIA H200 (gpu), JAX 0.11.2"])
    (run.dir / "results.json").write_text(json.dumps(results))
    again = runs.Run("rosmo", fake_args(resume=str(run.dir)))
    again.restore(state, fake_data())
    assert json.loads((run.dir / "results.json").read_text())["devices"] == ["1 x NVIDIA H200 (gpu), JAX 0.11.2", here]
    # Resumed again on the same machine: no new entry.
    third = runs.Run("rosmo", fake_args(resume=str(run.dir)))
    third.restore(state, fake_data())
    assert len(json.loads((run.dir / "results.json").read_text())["devices"]) == 2


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
# End to end (SIGTERM and --resume in place: tests/test_rosmo_e2e.py).


@pytest.mark.e2e
def test_four_runs_launched_at_once_leave_four_results(bc_run, catch_data, tmp_path):
    # bc_run's flags with a budget of one dispatch: its compiled programs are reused.
    flags = ["--data-dir", str(catch_data), *BC_FLAGS, "--total-steps", "50", "--eval-every", "50", "--exp-name", "same"]
    for out in run_scripts(*[(flags, tmp_path, "bc.py")] * 4):
        assert out.returncode == 0, out.stderr[-3000:]
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
