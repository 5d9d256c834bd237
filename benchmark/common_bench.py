"""Helpers of the benchmark scripts: run an algorithm script, find its results, describe the machine."""

import glob
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine_description() -> str:
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    device = jax.devices()[0]
    return f"{os.cpu_count()} CPU cores ({cpu}), JAX {jax.__version__} on {device.platform} ({device.device_kind})"


def find_results(runs_dir: Path, env_id: str, exp_name: str, seed: int, expect: dict):
    """The newest finished results.json of a run whose arguments match `expect`, or None."""
    pattern = str(runs_dir / f"{env_id}__{exp_name}__{seed}__*" / "results.json")
    for path in sorted(glob.glob(pattern), reverse=True):
        results = json.loads(Path(path).read_text())
        if results.get("status") == "finished" and all(results["args"].get(k) == v for k, v in expect.items()):
            return results
    return None


def run_algorithm(algo: str, flags: list, cwd: Path, log_path: Path) -> float:
    """Run `python {algo}.py FLAGS` in `cwd`, its output to `log_path`; returns wall-clock seconds."""
    start = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.run([sys.executable, str(ROOT / f"{algo}.py"), *flags], cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"error: {algo}.py {' '.join(flags)} failed with code {proc.returncode}; see {log_path}")
    return time.time() - start
