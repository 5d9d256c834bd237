"""benchmark/scalars.py: the TensorBoard scalars of run directories kept as JSON, later files winning on resume."""

import json
import subprocess
import sys

from scripts import ROOT
from tensorboardX import SummaryWriter


def write_run(run_dir, starts):
    """A run directory with one TensorBoard file per start (a resumed run), each a list of (tag, step, value)."""
    run_dir.mkdir()
    (run_dir / "args.json").write_text(json.dumps({"env_id": "catch"}))
    for i, points in enumerate(starts):
        writer = SummaryWriter(str(run_dir), filename_suffix=f".{i}")
        for tag, step, value in points:
            writer.add_scalar(tag, value, step)
        writer.close()


def test_scalars_of_every_start_are_kept_in_order_and_the_later_start_wins(tmp_path):
    run = tmp_path / "catch__rosmo__0__1"
    write_run(
        run,
        [
            [("train/policy_entropy", 100, 1.5), ("train/policy_entropy", 200, 1.2), ("losses/loss", 100, 3.0)],
            [("train/policy_entropy", 200, 1.1), ("train/policy_entropy", 300, 0.9)],
        ],
    )
    out = tmp_path / "kept.json"
    cmd = [sys.executable, "-m", "benchmark.scalars", str(run), "--tags", "train/policy_entropy", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    kept = json.loads(out.read_text())["runs"]["catch__rosmo__0__1"]
    assert kept["args"] == {"env_id": "catch"}
    assert set(kept) == {"args", "train/policy_entropy"}  # --tags keeps only those asked for
    assert [p[0] for p in kept["train/policy_entropy"]] == [100, 200, 300]
    assert [round(p[1], 6) for p in kept["train/policy_entropy"]] == [1.5, 1.1, 0.9]
    assert "1.5 at 100 -> 0.9 at 300" in done.stdout


def test_a_directory_without_tensorboard_files_is_a_one_line_error(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmark.scalars", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path} has no TensorBoard file")
