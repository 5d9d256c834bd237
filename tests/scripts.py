"""Helpers for the end-to-end tests: run an algorithm script as a user does, read its one-line error."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A tiny budget: 300 updates in dispatches of 50, two evaluations of 3 episodes, batch 32.
SMALL = [
    "--total-steps",
    "300",
    "--eval-every",
    "150",
    "--eval-episodes",
    "3",
    "--batch-size",
    "32",
    "--updates-per-dispatch",
    "50",
]


def run_script(args, cwd, script="rosmo.py"):
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def one_line_error(out, code=2):
    """The single 'error: ...' line of a failed run; asserts the exit code and that no traceback was shown."""
    assert out.returncode == code, (out.returncode, out.stderr[-2000:])
    lines = [line for line in out.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    return lines[0]
