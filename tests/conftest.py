"""The repository root on every test process's path (`common`, `benchmark`, the algorithm scripts); shared fixtures.

Most of the suite's time is compiling: the end-to-end tests start the scripts as a user does, and every
fresh process compiles its programs again (parameter initialisation, the update, acting); in-process
tests build the same jitted functions anew (a new function object compiles again). JAX's persistent
compilation cache, in a directory private to the test session and shared by every process it starts,
compiles each program once: runs that share a script's flags share its programs. The test process
caches programs that take half a second or more to compile, the processes it starts every program (the
many small ones of initialisation add up). A cache directory given in the environment
(JAX_COMPILATION_CACHE_DIR, as tests/mutation.py does) is used as given.
"""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from scripts import BC_FLAGS, CHEAP_COMPILE, run_script

# The tests compile far more than they run (most programs run once or a few hundred times on tiny inputs):
# XLA's CPU backend compiles with its cheaper LLVM settings here, in this process and every process it
# starts (12-16% less CPU time for the suite). The operations computed are the same; only machine-code
# optimisation is skipped. Flags already given in XLA_FLAGS come first and are kept.
# The runs of the full-size Atari networks execute enough convolutions to be faster fully optimised
# (scripts.optimised_env).
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {CHEAP_COMPILE}".strip()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# This process finds `common` and `benchmark` through pytest.ini's pythonpath; the processes the tests start (the
# studies run as `python -m benchmark.reproduce` from a temporary directory) through PYTHONPATH.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_SESSION_CACHE = None  # the compilation cache directory this session made (removed at its end)


def pytest_configure(config):
    global _SESSION_CACHE
    if "JAX_COMPILATION_CACHE_DIR" in os.environ or _SESSION_CACHE is not None:
        return
    _SESSION_CACHE = tempfile.mkdtemp(prefix="rosmo-jax-tests-compile-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _SESSION_CACHE
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # in the processes the tests start
    import jax

    jax.config.update("jax_compilation_cache_dir", _SESSION_CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)  # in this one


def pytest_unconfigure(config):
    global _SESSION_CACHE
    if _SESSION_CACHE is not None:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)
        os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
        os.environ.pop("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", None)
        _SESSION_CACHE = None


@pytest.fixture(scope="session")
def catch_data(tmp_path_factory):
    """A small catch dataset (60 episodes of the DQN behaviour agent), generated once: its dataset directory
    (the name records the episode count, so it never stands in for the standard dataset of a data root)."""
    root = tmp_path_factory.mktemp("data")
    out = subprocess.run(
        [sys.executable, "-m", "common.bsuite.datasets", "--env-id", "catch", "--num-episodes", "60", "--data-dir", str(root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    return root / "bsuite" / "catch_0.0_episodes60"


@pytest.fixture(scope="session")
def bc_run(catch_data, tmp_path_factory):
    """A finished two-seed bc run on `catch_data` (BC_FLAGS: its checkpoint saved): (its run directory, the
    CompletedProcess). tests/test_bc.py checks what it wrote, tests/test_eval_only.py evaluates its checkpoint,
    and other runs with its flags reuse its compiled programs."""
    cwd = tmp_path_factory.mktemp("bc_run")
    out = run_script(["--data-dir", str(catch_data), *BC_FLAGS], cwd, script="bc.py")
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (cwd / "runs").iterdir()
    return run_dir, out
