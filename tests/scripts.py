"""Helpers for the end-to-end tests: run an algorithm script as a user does, read its one-line error."""

import os
import subprocess
import sys
from pathlib import Path

# The optimiser an algorithm script's main() builds from its flags; one helper for the tests and the benchmarks.
from benchmark.algorithms import script_optimizer as optimizer_of  # noqa: F401

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
# The session's bc run (tests/conftest.py `bc_run`): two seeds, SMALL, its checkpoint saved.
BC_FLAGS = ["--num-seeds", "2", "--save-model", *SMALL]
ENV = {"TF_CPP_MIN_LOG_LEVEL": "3"}
# XLA's cheaper CPU compile settings, which tests/conftest.py adds to XLA_FLAGS for the whole session.
CHEAP_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def optimised_env() -> dict:
    """The environment for a run that executes more than it compiles: XLA_FLAGS without CHEAP_COMPILE."""
    return {"XLA_FLAGS": os.environ.get("XLA_FLAGS", "").replace(CHEAP_COMPILE, "").strip()}


def start_script(args, cwd, script="rosmo.py", env=None):
    """`script` started with `args` in `cwd` (not waited for): a Popen with text stdout and stderr pipes; a
    benchmark ("benchmark/atari.py") runs as a module (python -m benchmark.atari), as its users run it."""
    command = ["-m", script[: -len(".py")].replace("/", ".")] if script.startswith("benchmark/") else [str(ROOT / script)]
    return subprocess.Popen(
        [sys.executable, *command, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **ENV, **(env or {})},
    )


def finish(proc, timeout=600):
    """Wait for a process of `start_script`: its CompletedProcess (returncode, stdout, stderr)."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def run_script(args, cwd, script="rosmo.py"):
    return finish(start_script(args, cwd, script))


def run_scripts(*runs):
    """Several (args, cwd, script[, env]) runs started together (they use both cores), each one's CompletedProcess."""
    return [finish(proc) for proc in [start_script(*run) for run in runs]]


def one_line_error(out, code=2):
    """The single 'error: ...' line of a failed run; asserts the exit code and that no traceback was shown."""
    assert out.returncode == code, (out.returncode, out.stderr[-2000:])
    lines = [line for line in out.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    return lines[0]
