"""--eval-only --checkpoint PATH and --capture-video, run as a user runs them.

A saved agent is rebuilt from its checkpoint's own arguments and shapes and evaluated without any
dataset: the data directory given stays empty, eval.json lands beside the checkpoint, and the returns
repeat the run's own evaluation at that update (same key, same environments). Videos are mp4 files
read back with imageio.
"""

import dataclasses
import json

import imageio.v3 as iio
import jax.numpy as jnp
import numpy as np
import pytest
from scripts import one_line_error, optimizer_of, run_script, run_scripts


@pytest.fixture(scope="module")
def bc_checkpoint(bc_run):
    """The session's finished two-seed bc run on the catch fixture (tests/conftest.py): its checkpoint (at
    update 300) and its results.json."""
    run_dir, _ = bc_run
    return run_dir / "checkpoint.msgpack", json.loads((run_dir / "results.json").read_text())


@pytest.mark.e2e
def test_eval_only_reads_no_data_and_repeats_the_runs_last_evaluation(bc_checkpoint, tmp_path):
    checkpoint, results = bc_checkpoint
    empty = tmp_path / "no_data"
    empty.mkdir()
    out = run_script(["--eval-only", "--checkpoint", str(checkpoint), "--data-dir", str(empty)], tmp_path, "bc.py")
    assert out.returncode == 0, out.stderr[-3000:]
    assert list(empty.iterdir()) == [] and not (tmp_path / "runs").exists()  # no dataset, no new run directory
    evaluation = json.loads((checkpoint.parent / "eval.json").read_text())
    assert evaluation["algo"] == "bc" and evaluation["step"] == 300 and evaluation["seeds"] == [0, 1]
    assert evaluation["eval_episodes"] == 3  # the checkpoint's own evaluation flags
    # The same parameters, key and environments as the run's evaluation at update 300: the same returns.
    assert evaluation["returns"] == results["final_returns"]
    assert evaluation["mean_return"] == pytest.approx(np.mean(results["final_returns"]))
    assert "checkpoint at update 300: mean return" in out.stdout and str(checkpoint.parent / "eval.json") in out.stdout
    # Evaluation time is reported apart from the training time.
    assert len(results["eval_history"]["eval_seconds"]) == 2 and min(results["eval_history"]["eval_seconds"]) > 0
    assert results["eval_history"]["episodes"] == [None, None]  # BSuite episodes end by themselves: no summary
    assert results["eval_seconds"] == pytest.approx(sum(results["eval_history"]["eval_seconds"]))


@pytest.mark.e2e
def test_eval_only_applies_evaluation_flags_and_records_a_catch_video(bc_checkpoint, tmp_path):
    checkpoint, _ = bc_checkpoint
    out = run_script(
        ["--eval-only", "--checkpoint", str(checkpoint), "--eval-episodes", "2", "--eval-greedy", "--capture-video"],
        tmp_path,
        "bc.py",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    evaluation = json.loads((checkpoint.parent / "eval.json").read_text())
    assert evaluation["eval_episodes"] == 2 and evaluation["eval_greedy"] is True
    # Catch's rewards are +1 or -1 per episode: a mean of 2 episodes is -1, 0 or 1.
    assert all(r in (-1.0, 0.0, 1.0) for r in evaluation["returns"])
    (video,) = evaluation["videos"]
    assert video.endswith("videos/update_300_seed0.mp4")
    frames = iio.imread(video)
    # A catch episode: 9 steps after the reset (the ball falls 9 rows), the 10x5 board at 20 pixels a cell.
    assert frames.shape == (10, 200, 100, 3)


def test_eval_only_without_a_checkpoint_is_a_one_line_error(tmp_path):
    line = one_line_error(run_script(["--eval-only"], tmp_path, "bc.py"))
    assert "--eval-only evaluates a saved agent; pass --checkpoint" in line


@pytest.mark.e2e
def test_eval_only_refuses_flags_that_would_change_the_agent(bc_checkpoint, tmp_path):
    checkpoint, _ = bc_checkpoint
    seeds, algo = run_scripts(
        (["--eval-only", "--checkpoint", str(checkpoint), "--num-seeds", "3"], tmp_path, "bc.py"),
        (["--eval-only", "--checkpoint", str(checkpoint)], tmp_path, "rosmo.py"),
    )
    line = one_line_error(seeds)
    assert "drop --num-seeds" in line and "--eval-episodes" in line
    assert "algo='bc'" in one_line_error(algo)


@pytest.mark.e2e
def test_eval_only_records_an_atari_video_of_the_rgb_screen(tmp_path):
    import bc
    from common.runs import save_checkpoint

    # A fresh (untrained) Pong agent saved as a run would save it: the checkpoint is all eval-only needs.
    args = bc.apply_env_defaults(
        bc.Args(env_id="Pong", total_steps=100, eval_every=100, updates_per_dispatch=100, eval_episodes=1, eval_max_steps=8)
    )
    network = bc.make_network(args, num_actions=6)  # Pong's minimal action set
    state = bc.init_train_states(network, optimizer_of(bc, args), jnp.zeros((1, 84, 84, 4), jnp.uint8), [0])
    checkpoint = tmp_path / "agent" / "checkpoint.msgpack"
    checkpoint.parent.mkdir()
    save_checkpoint(
        checkpoint,
        state,
        {
            "algo": "bc",
            "env_id": "Pong",
            "num_seeds": 1,
            "step": 0,
            "seeds": [0],
            "args": dataclasses.asdict(args),
            "num_actions": 6,
            "obs_shape": [84, 84, 4],
            "obs_dtype": "uint8",
        },
    )
    out = run_script(["--eval-only", "--checkpoint", str(checkpoint), "--capture-video"], tmp_path, "bc.py")
    assert out.returncode == 0, out.stderr[-3000:]
    evaluation = json.loads((checkpoint.parent / "eval.json").read_text())
    (video,) = evaluation["videos"]
    frames = iio.imread(video)
    # The reset screen and one per agent step, capped by the checkpoint's --eval-max-steps 8; ALE's RGB screen.
    assert frames.shape == (9, 210, 160, 3) and frames.std() > 0
    assert evaluation["episodes"]["lengths"] == [8.0]  # what the evaluation played, beside the returns
