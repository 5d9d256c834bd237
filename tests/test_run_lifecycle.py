"""A run's directory from start to end: one process owns it (a lock naming its pid and host), a run that ends
without finishing is never left "running", --track works without a W&B key, and a first run explains itself
(the compile, one rate, its return beside the data's, a short budget)."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from scripts import ENV, ROOT, one_line_error, run_script

from common import runs
from common.errors import UsageError

TINY = ["--total-steps", "20", "--eval-every", "10", "--eval-episodes", "1", "--batch-size", "8"]


def holder(path, seconds=60):
    """A separate process holding `path`'s lock (it prints 'held' once it does)."""
    code = "import sys, time; from common import runs; "
    code += f"lock = runs.hold_directory({str(path)!r}); print('held', flush=True); time.sleep({seconds})"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_directory_held_by_a_live_process_is_refused_naming_its_pid_and_host(tmp_path):
    proc = holder(tmp_path)
    try:
        with pytest.raises(UsageError) as refused:
            runs.hold_directory(tmp_path)
        message = str(refused.value)
        assert f"in use by process {proc.pid} on {socket.gethostname()}" in message and "\n" not in message
    finally:
        proc.kill()
        proc.wait()
    # The holder died (killed, no clean-up): its lock is gone with it, the file still names it.
    assert json.loads((tmp_path / runs.LOCK_FILE).read_text())["pid"] == proc.pid
    lock = runs.hold_directory(tmp_path)
    assert json.loads((tmp_path / runs.LOCK_FILE).read_text())["pid"] == os.getpid()  # taken over, rewritten
    assert runs.hold_directory(tmp_path) is None  # this process holds it already
    lock.close()


@pytest.mark.parametrize(
    "ending,status",
    [("raise RuntimeError('boom')", "failed"), ("sys.exit(2)", "failed"), ("raise KeyboardInterrupt", "interrupted")],
)
def test_a_run_that_ends_without_finishing_is_not_left_running(tmp_path, ending, status):
    code = textwrap.dedent(
        f"""
        import sys
        from types import SimpleNamespace
        import numpy as np
        import bc
        from common import runs
        run = runs.Run("bc", bc.apply_env_defaults(bc.Args()))
        data = SimpleNamespace(info={{}}, num_actions=3, obs_shape=(50,), obs_dtype=np.float32)
        run.restore(SimpleNamespace(step=np.zeros(1, np.int32)), data)
        assert runs.json.loads((run.dir / "results.json").read_text())["status"] == "running"
        {ending}
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env={**os.environ, **ENV})
    assert out.returncode != 0
    (results,) = (tmp_path / "runs").glob("*/results.json")
    assert json.loads(results.read_text())["status"] == status, out.stderr[-2000:]


@pytest.mark.e2e
def test_a_second_process_on_a_training_run_stops_at_once_naming_the_first(catch_data, tmp_path):
    flags = ["--data-dir", str(catch_data), "--total-steps", "1000000", "--eval-every", "1000", "--batch-size", "8"]
    flags += ["--updates-per-dispatch", "100", "--eval-episodes", "1"]  # a checkpoint every 1000 updates
    log = open(tmp_path / "first.log", "w")  # not a pipe: a long run's progress bar would fill it
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "bc.py"), *flags], cwd=tmp_path, stdout=log, stderr=log, env={**os.environ, **ENV}
    )
    try:
        deadline = time.time() + 300
        while not list(tmp_path.glob("runs/*/checkpoint.msgpack")) and time.time() < deadline and first.poll() is None:
            time.sleep(0.5)
        (run_dir,) = [p.parent for p in tmp_path.glob("runs/*/checkpoint.msgpack")]
        assert first.poll() is None
        for second in (["--resume", str(run_dir)], ["--eval-only", "--checkpoint", str(run_dir / "checkpoint.msgpack")]):
            start = time.time()
            line = one_line_error(run_script(second, tmp_path, script="bc.py"))
            assert time.time() - start < 60, second  # before any data is read or anything compiled
            assert f"process {first.pid} on {socket.gethostname()}" in line and str(run_dir) in line, second
        assert first.poll() is None  # the first run trains on
        assert not (run_dir / "eval.json").exists()
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=300)
        log.close()
    assert first.returncode == 128 + signal.SIGTERM
    assert json.loads((run_dir / "results.json").read_text())["status"] == "interrupted"


@pytest.mark.e2e
def test_track_without_a_wandb_key_runs_offline_and_a_first_run_explains_itself(catch_data, tmp_path):
    env = {k: v for k, v in {**os.environ, **ENV}.items() if not k.startswith("WANDB_") and k != "TF_CPP_MIN_LOG_LEVEL"}
    env["HOME"] = str(tmp_path)  # no ~/.netrc with a key
    out = subprocess.run(
        [sys.executable, str(ROOT / "bc.py"), "--data-dir", str(catch_data), *TINY, "--track"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "finished"
    assert list((run_dir / "wandb").glob("offline-run-*")) and not (tmp_path / "wandb").exists()
    assert "oneDNN" not in out.stderr and "absl::InitializeLog" not in out.stderr  # no TensorFlow start-up lines
    # The compile is announced, the bar shows ups= and not tqdm's own rate, the return is set beside the data's.
    assert "compiling the update (10 updates per call" in out.stdout
    assert "ups=" in out.stderr and "it/s" not in out.stderr and "upd/s" not in out.stderr
    data_mean = results["data"]["mean_return"]
    final = f"final mean return {results['mean_final_return']:.3f} (data's mean {data_mean:.3f}; per seed:"
    assert final in out.stdout
    if results["mean_final_return"] < data_mean:
        assert "this was a short run (20 updates; 20,000 by default)" in out.stdout
    # --resume of this finished run (no --save-model) suggests no checkpoint it does not have.
    line = one_line_error(run_script(["--resume", str(run_dir)], tmp_path, script="bc.py"))
    assert "this run has finished; start a new run" in line and "checkpoint" not in line
