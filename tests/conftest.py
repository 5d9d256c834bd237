"""Put the repository root on sys.path so tests import `common` and the algorithm scripts; shared fixtures."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def catch_data(tmp_path_factory):
    """A small catch dataset (60 episodes of the DQN behaviour agent), generated once: its dataset directory
    (the name records the episode count, so it never stands in for the standard dataset of a data root)."""
    root = tmp_path_factory.mktemp("data")
    out = subprocess.run(
        [sys.executable, "-m", "common.bsuite_data", "--env-id", "catch", "--num-episodes", "60", "--data-dir", str(root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    return root / "bsuite" / "catch_0.0_episodes60"
