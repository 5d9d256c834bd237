"""Helpers of the benchmark scripts: run an algorithm script, find its results, describe the machine."""

import glob
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

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


# ---------------------------------------------------------------------------------------------
# Studies: many configurations of the algorithm scripts, each run once and found again by its
# full resolved arguments (so a finished run is reused by any study that needs the same one).

# Arguments that do not change what a run computes (on one host); ignored when matching finished runs.
BOOKKEEPING = {"exp_name", "track", "wandb_project_name", "wandb_entity", "save_model", "checkpoint", "data_dir",
               "updates_per_dispatch", "distributed"}


@dataclass
class Config:
    """One run of an algorithm script: `python {algo}.py {flags}` with all seeds vmapped."""

    algo: str
    env_id: str
    flags: List[str]
    series: str  # the line or bar this run belongs to (e.g. "rosmo", "mzu d=1")
    x: Any = None  # its position on the study's axis (e.g. a data fraction), None for a plain comparison


def resolve_args(algo: str, flags: List[str]) -> Dict[str, Any]:
    """The full arguments `python {algo}.py FLAGS` runs with (env defaults filled), as results.json stores them."""
    import importlib

    import tyro

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    module = importlib.import_module(algo)
    args = module.apply_env_defaults(tyro.cli(module.Args, args=flags))
    return json.loads(json.dumps(vars(args), default=str))


def find_finished(algo: str, flags: List[str], runs_dir: Path = ROOT / "runs") -> Optional[dict]:
    """The newest finished results.json of `algo` whose arguments equal those of FLAGS (bookkeeping aside)."""
    want = {k: v for k, v in resolve_args(algo, flags).items() if k not in BOOKKEEPING}
    for path in sorted(glob.glob(str(runs_dir / f"{want['env_id']}__*" / "results.json")), key=os.path.getmtime, reverse=True):
        results = json.loads(Path(path).read_text())
        if results.get("algo") == algo and results.get("status") == "finished" and all(
            results["args"].get(k) == v for k, v in want.items()
        ):
            return {**results, "run_dir": str(Path(path).parent.relative_to(runs_dir.parent))}
    return None


def run_configs(configs: List[Config], exp_prefix: str, dry_run: bool = False, workdir: Path = ROOT) -> List[Optional[dict]]:
    """Run every configuration that has no finished run under `workdir`/runs yet (one at a time, in
    `workdir`); their results, in order."""
    workdir = Path(workdir)
    logs = workdir / "runs" / "benchmark_logs"
    logs.mkdir(parents=True, exist_ok=True)
    out = []
    for i, c in enumerate(configs):
        results = find_finished(c.algo, c.flags, workdir / "runs")
        if results is None and not dry_run:
            tag = f"{exp_prefix}_{c.algo}_{i}"
            print(f"[{i + 1}/{len(configs)}] running {c.algo}.py {' '.join(c.flags)}", flush=True)
            seconds = run_algorithm(c.algo, [*c.flags, "--exp-name", tag], workdir, logs / f"{c.env_id}_{tag}.log")
            print(f"    done in {seconds / 60:.1f} min", flush=True)
            results = find_finished(c.algo, c.flags, workdir / "runs")
        elif results is None:
            print(f"[{i + 1}/{len(configs)}] to run: python {c.algo}.py {' '.join(c.flags)}")
        else:
            print(f"[{i + 1}/{len(configs)}] reusing {c.algo}.py {' '.join(c.flags)}")
        out.append(results)
    return out
