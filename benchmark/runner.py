"""Running the algorithm scripts for the benchmarks, and finding their finished runs again.

- `run_algorithm`: one run of a script as a subprocess, its output appended to a log; `find_results`: a run's
  newest finished results.json by its name (the micro-benchmarks' single runs).
- `Config` and `run_configs`: the configurations of a study, each run once (all seeds vmapped in one process)
  and found again by its full resolved arguments (`comparable_args`: the script's `Args` parsed and passed
  through `apply_env_defaults`, bookkeeping flags left out), so any study that needs a finished run reuses it,
  from runs/ or from the records kept in benchmark/results/runs/; an unfinished run with a checkpoint is
  continued with `--resume`, and a lock per configuration (`config_lock`, fcntl) lets two studies run side by
  side without running the same configuration twice.

The scripts are reached through benchmark/algorithms.py's `script` (their flags) and as subprocesses.
"""

import contextlib
import fcntl
import functools
import glob
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from benchmark.algorithms import SCRIPTS, script
from benchmark.common_bench import ROOT


def find_results(runs_dir: Path, env_id: str, exp_name: str, seed: int, expect: dict):
    """The newest finished results.json of a run whose arguments match `expect`, or None."""
    pattern = str(runs_dir / f"{env_id}__{exp_name}__{seed}__*" / "results.json")
    for path in sorted(glob.glob(pattern), reverse=True):
        results = json.loads(Path(path).read_text())
        if results.get("status") == "finished" and all(results["args"].get(k) == v for k, v in expect.items()):
            return results
    return None


class RunFailed(SystemExit):
    """An algorithm script exited with a non-zero `returncode` (128 + N, or -N, when signal N stopped it)."""

    def __init__(self, message: str, returncode: int):
        super().__init__(message)
        self.returncode = returncode


def run_algorithm(algo: str, flags: list, cwd: Path, log_path: Path, pass_fds: tuple = ()) -> float:
    """Run `python {algo}.py FLAGS` in `cwd`, its output appended to `log_path` (a continued run's earlier
    attempts stay in it), with the file descriptors `pass_fds` open in it; returns wall-clock seconds."""
    start = time.time()
    with open(log_path, "a") as log:
        cmd = [sys.executable, str(ROOT / f"{algo}.py"), *flags]
        proc = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, pass_fds=pass_fds)
    if proc.returncode != 0:
        what = f"error: {algo}.py {' '.join(flags)} failed with code {proc.returncode}; see {log_path}"
        raise RunFailed(what, proc.returncode)
    return time.time() - start


# ---------------------------------------------------------------------------------------------
# The studies: many configurations of the algorithm scripts, each run once and found again by its
# full resolved arguments (so a finished run is reused by any study that needs the same one).

# Arguments that do not change what a run computes (on one host); ignored when matching finished runs.
BOOKKEEPING = {
    "exp_name",
    "track",
    "wandb_project_name",
    "wandb_entity",
    "save_model",
    "checkpoint",
    "data_dir",
    "updates_per_dispatch",
    "distributed",
    "resume",
}


# Flags that only the Atari networks read.
ATARI_ONLY = {"compute_dtype", "downsample", "network_size"}


@dataclass
class Config:
    """One run of an algorithm script: `python {algo}.py {flags}` with all seeds vmapped."""

    algo: str
    env_id: str
    flags: List[str]
    series: str  # the line or bar this run belongs to (e.g. "rosmo", "mzu d=1")
    x: Any = None  # its position on the study's axis (e.g. a data fraction), None for a plain comparison


def comparable_args(algo: str, flags: List[str]) -> Dict[str, Any]:
    """The resolved arguments of FLAGS that decide what a run computes: BOOKKEEPING left out, and on BSuite
    also the flags of the Atari networks alone (their compute precision and torso), which the MLPs ignore."""
    want = {k: v for k, v in resolve_args(algo, flags).items() if k not in BOOKKEEPING}
    from common.bsuite.env import BSUITE_ENVS
    from common.networks import resolve_compute_dtype

    if not want.get("noise"):  # noise-free or Atari data: where the (absent) noise acts changes nothing
        want.pop("noise_in", None)
    if want["env_id"] in BSUITE_ENVS:
        return {k: v for k, v in want.items() if k not in ATARI_ONLY}
    # The scripts record the precision that --compute-dtype auto resolved to on their devices.
    return {**want, "compute_dtype": resolve_compute_dtype(want["compute_dtype"], device_backend())}


@functools.lru_cache(maxsize=None)
def device_backend() -> str:
    """The JAX backend the algorithm scripts get on this machine ('cpu', 'gpu' or 'tpu'), asked of a child
    process so that this one never holds accelerator memory the runs need."""
    ask = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend())"], capture_output=True, text=True)
    return ask.stdout.split()[-1] if ask.returncode == 0 and ask.stdout.split() else "cpu"


def resolve_args(algo: str, flags: List[str]) -> Dict[str, Any]:
    """The full arguments `python {algo}.py FLAGS` runs with (env defaults filled), as results.json stores them."""
    import tyro

    try:
        module = script(algo)
    except ImportError as e:  # e.g. common/ changed on disk after this process imported it
        raise SystemExit(
            f"error: cannot import {algo}.py ({e}); if the code changed while this study ran, run the study again: "
            "it reuses finished runs and continues unfinished ones"
        ) from None
    args = module.apply_env_defaults(tyro.cli(module.Args, args=flags))
    return json.loads(json.dumps(vars(args), default=str))


# Flags added to a script after some kept runs were made, with the value those runs computed where it is not
# the flag's declared default (cql.py's --n-step: every earlier run used 1-step targets; its default is now
# filled from the env; every script's --noise-in: the noisy data of earlier runs had its noise in the behaviour).
EARLIER_VALUES: Dict[str, Dict[str, Any]] = {
    algo: {"noise_in": "behaviour", **({"n_step": 1} if algo == "cql" else {})}  # noise_in: as common/runs.py's
    for algo in SCRIPTS
}


def script_defaults(algo: str) -> Dict[str, Any]:
    """What a run made before a flag existed computed for it: the declared default of `{algo}.py`'s Args
    (None where a default is filled from the env), or the value in EARLIER_VALUES."""
    import dataclasses

    fields = dataclasses.fields(script(algo).Args)
    declared = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
    return json.loads(json.dumps({**declared, **EARLIER_VALUES.get(algo, {})}, default=str))


def same_run(stored: Dict[str, Any], want: Dict[str, Any], defaults: Dict[str, Any]) -> bool:
    """Whether a run stored with arguments `stored` computed what `want` asks for. A flag added to a script
    after the run was made counts as matching when it is asked at its default (the run computed that)."""
    return all(stored[k] == v if k in stored else (k in defaults and defaults[k] == v) for k, v in want.items())


# Finished runs of the studies are also kept in the repository (one results.json each, a few KB), so a
# study resumes on a fresh checkout without rerunning them.
RECORDS = ROOT / "benchmark" / "results" / "runs"


def find_finished(
    algo: str, flags: List[str], runs_dir: Path = ROOT / "runs", records: Optional[Path] = None
) -> Optional[dict]:
    """The newest finished results.json of `algo` whose arguments equal those of FLAGS (bookkeeping aside)
    under `runs_dir`, else the newest such kept record under `records` (a directory of results.json copies)."""
    want = comparable_args(algo, flags)
    defaults = script_defaults(algo)
    in_runs = glob.glob(str(runs_dir / f"{want['env_id']}__*" / "results.json"))
    kept = glob.glob(str(records / f"{want['env_id']}__*.json")) if records is not None else []
    for paths in (in_runs, kept):
        for path in sorted(paths, key=os.path.getmtime, reverse=True):
            results = json.loads(Path(path).read_text())
            if (
                results.get("algo") == algo
                and results.get("status") == "finished"
                and same_run(results["args"], want, defaults)
            ):
                run_dir = Path(path).parent if path.endswith("results.json") else Path(path).with_suffix("")
                try:
                    run_dir = run_dir.relative_to(runs_dir.parent)
                except ValueError:
                    pass
                return {**results, "run_dir": str(run_dir), "results_path": path}
    return None


def keep_record(results: dict, records: Path = RECORDS) -> None:
    """Copy a finished run's results.json into the kept records (named after its run directory)."""
    src = Path(results["results_path"])
    if not src.name == "results.json":
        return  # already a record
    records.mkdir(parents=True, exist_ok=True)
    dst = records / f"{src.parent.name}.json"
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.write_bytes(src.read_bytes())
    os.replace(tmp, dst)


def find_unfinished(algo: str, flags: List[str], runs_dir: Path) -> Optional[Path]:
    """The newest run directory under `runs_dir` of `algo` with the arguments of FLAGS (bookkeeping aside)
    that stopped before its end ('running', 'interrupted' or 'failed' in results.json) and kept a checkpoint: the run
    that `--resume` continues instead of starting again."""
    want = comparable_args(algo, flags)
    defaults = script_defaults(algo)
    paths = glob.glob(str(runs_dir / f"{want['env_id']}__*" / "results.json"))
    for path in sorted(paths, key=os.path.getmtime, reverse=True):
        try:
            results = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue  # a run directory being created, or damaged: not one to continue
        run_dir = Path(path).parent
        if (
            results.get("algo") == algo
            and results.get("status") in ("running", "interrupted", "failed")
            and (run_dir / "checkpoint.msgpack").is_file()
            and not (run_dir / RESUME_FAILED).exists()
            and set(want) <= set(results["args"])  # made before a flag existed: --resume would fill today's default
            and same_run(results["args"], want, defaults)
        ):
            return run_dir
    return None


RESUME_FAILED = "resume_failed"  # marker: `--resume` of this run directory failed once; a study starts afresh


@contextlib.contextmanager
def config_lock(algo: str, flags: List[str], logs: Path, wait: bool = True):
    """Hold an exclusive lock on this configuration (its resolved arguments) while it runs, so that two
    studies started at once never run or resume the same configuration together. With `wait`, a study
    that finds the lock taken waits for it (then finds the other study's finished run); without, it gets
    None at once and can come back to the configuration later."""
    want = comparable_args(algo, flags)
    digest = hashlib.sha1(json.dumps(want, sort_keys=True).encode()).hexdigest()[:12]
    with open(logs / f".{want['env_id']}_{algo}_{digest}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield None
                return
            print(f"    another study is running {algo}.py {' '.join(flags)}; waiting for it", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield lock.fileno()  # passed to the run, so the lock lasts as long as the run even if the study dies


def local_data(algo: str, flags: List[str], workdir: Path) -> Dict[str, float]:
    """{transitions, mean_return} of the BSuite dataset a run of `algo` FLAGS reads in `workdir` (generated first
    where it is missing, as the run itself would)."""
    from common.bsuite import datasets as bsuite_data

    args = resolve_args(algo, flags)
    data_dir = args["data_dir"] if args["data_dir"] is None else str(Path(workdir) / args["data_dir"])
    key = (args["env_id"], args["noise"], data_dir, args["data_fraction"], args["noise_in"], str(workdir))
    if key not in _LOCAL_DATA:
        here = os.getcwd()
        os.chdir(workdir)  # the default data root, ./datasets, is the run's
        try:
            episodes, _ = bsuite_data.load_bsuite(
                args["env_id"], args["noise"], data_dir, args["data_fraction"], noise_in=args["noise_in"]
            )
        finally:
            os.chdir(here)
        _LOCAL_DATA[key] = {
            "transitions": int(episodes.num_transitions),
            "mean_return": float(episodes.episode_returns().mean()),
        }
    return _LOCAL_DATA[key]


_LOCAL_DATA: Dict[tuple, Dict[str, float]] = {}


def other_data_here(i: int, configs: List["Config"], found: List[Optional[dict]], workdir: Path) -> Optional[str]:
    """Why configuration i would not compare with the finished runs of its study (one line), or None: where the
    runs of its task that read the same dataset by their flags (aggregate.data_settings) read data whose mean
    return differs from the data here (a dataset generated on another machine: the behaviour DQN is not
    bit-reproducible across CPUs), a run here would train on other data than theirs."""
    from benchmark.aggregate import data_settings, usual_data_return
    from common.bsuite.env import BSUITE_ENVS

    c = configs[i]
    if c.env_id not in BSUITE_ENVS:  # Atari: the data is the generator's or the bucket's, checked by their summaries
        return None
    mine = data_settings([{"env_id": c.env_id, "args": resolve_args(c.algo, c.flags)}])[c.env_id]
    theirs = [
        r["data"]["mean_return"]
        for r in found
        if r is not None
        and r["env_id"] == c.env_id
        and "mean_return" in r.get("data", {})
        and data_settings([r])[c.env_id] == mine
    ]
    if not theirs:
        return None
    usual = usual_data_return(theirs)
    here = local_data(c.algo, c.flags, workdir)
    if round(here["mean_return"], 6) == usual:
        return None
    return (
        f"the study's other {c.env_id} runs read data with mean return {usual:.3f}, this machine's has "
        f"{here['mean_return']:.3f} ({here['transitions']} transitions): a run here would not compare with them"
    )


def run_configs(configs: List[Config], exp_prefix: str, dry_run: bool = False, workdir: Path = ROOT) -> List[Optional[dict]]:
    """Run every configuration that has no finished run under `workdir`/runs yet (one at a time, in
    `workdir`); their results, in order. A run of the same configuration that stopped early (a killed
    session, a crash) is continued from its last checkpoint with `--resume`, not started again. A
    configuration another study is running (its lock is taken) is left for last, then waited for, so two
    studies that share configurations run side by side instead of one behind the other."""
    workdir = Path(workdir)
    # Kept records belong to the repository's own studies; a study in another workdir (e.g. a test) keeps none.
    records = RECORDS if workdir.resolve() == ROOT.resolve() else None
    logs = workdir / "runs" / "benchmark_logs"
    logs.mkdir(parents=True, exist_ok=True)
    out: List[Optional[dict]] = [None] * len(configs)
    found = [find_finished(c.algo, c.flags, workdir / "runs", records) for c in configs]
    deferred = []  # configurations another study is running: come back to them after the others
    for i, c in enumerate(configs):
        results = found[i] or find_finished(c.algo, c.flags, workdir / "runs", records)  # or another study finished it since
        clash = None if results is not None or dry_run else other_data_here(i, configs, found, workdir)
        if clash is not None:
            print(f"[{i + 1}/{len(configs)}] not running {c.algo}.py {' '.join(c.flags)}: {clash}", flush=True)
            continue
        if results is None and not dry_run:
            with config_lock(c.algo, c.flags, logs, wait=False) as lock:
                if lock is None:
                    print(f"[{i + 1}/{len(configs)}] another study is running {c.algo}.py {' '.join(c.flags)}; later")
                    deferred.append(i)
                    continue
                results = _run_locked(i, configs, exp_prefix, workdir, logs, records, lock)
        elif results is None:
            partial = find_unfinished(c.algo, c.flags, workdir / "runs")
            again = f" (continues {partial})" if partial is not None else ""
            print(f"[{i + 1}/{len(configs)}] to run: python {c.algo}.py {' '.join(c.flags)}{again}")
        else:
            print(f"[{i + 1}/{len(configs)}] reusing {c.algo}.py {' '.join(c.flags)}")
        out[i] = as_record(results, records)
    for i in deferred:
        c = configs[i]
        with config_lock(c.algo, c.flags, logs) as lock:  # waits for the other study's run
            out[i] = as_record(_run_locked(i, configs, exp_prefix, workdir, logs, records, lock), records)
    return out


def as_record(results: Optional[dict], records: Optional[Path]) -> Optional[dict]:
    """A finished run's results pointing at its kept record (copied there first) when the study keeps records,
    so a report names files the repository holds, not a run directory that only this machine has."""
    if results is None or records is None or not results["results_path"].endswith("results.json"):
        return results
    keep_record(results, records)
    record = records / f"{Path(results['results_path']).parent.name}.json"
    try:
        run_dir = record.with_suffix("").relative_to(ROOT)
    except ValueError:
        run_dir = record.with_suffix("")
    return {**results, "run_dir": str(run_dir), "results_path": str(record)}


def _run_locked(i: int, configs: List[Config], exp_prefix: str, workdir: Path, logs: Path, records, lock: int):
    """Configuration i's results with its lock held: another study's run that finished meanwhile, else
    this study's own run (kept as a record when the study keeps records)."""
    c = configs[i]
    results = find_finished(c.algo, c.flags, workdir / "runs", records)
    if results is not None:
        print(f"[{i + 1}/{len(configs)}] reusing {c.algo}.py {' '.join(c.flags)} (another study's)")
        return results
    results = _run_config(i, len(configs), c, exp_prefix, workdir, logs, lock)
    if results is not None and records is not None:
        keep_record(results, records)
    return results


def _run_config(i: int, total: int, c: Config, exp_prefix: str, workdir: Path, logs: Path, lock: int) -> Optional[dict]:
    """Run (or continue, from the newest checkpoint of an unfinished run) configuration `c`, with the
    configuration's lock `lock` held by the run too; its results."""
    tag = f"{exp_prefix}_{c.algo}_{i}"
    log = logs / f"{c.env_id}_{tag}.log"
    partial = find_unfinished(c.algo, c.flags, workdir / "runs")
    if partial is not None:
        step = json.loads((partial / "results.json").read_text()).get("total_steps", 0)
        print(f"[{i + 1}/{total}] continuing {c.algo}.py {' '.join(c.flags)} from update {step} ({partial})", flush=True)
        try:
            seconds = run_algorithm(c.algo, ["--resume", os.path.relpath(partial, workdir)], workdir, log, (lock,))
        except RunFailed as failed:
            if failed.returncode < 0 or failed.returncode >= 128:
                raise  # stopped by a signal (a killed session): it stays the run to continue
            # It could not continue (say its saved --data-dir is gone): never try this directory again.
            (partial / RESUME_FAILED).write_text(f"{failed}\n")
            print(f"    {failed}; starting it afresh", flush=True)
            partial = None
    if partial is None:
        print(f"[{i + 1}/{total}] running {c.algo}.py {' '.join(c.flags)}", flush=True)
        seconds = run_algorithm(c.algo, [*c.flags, "--exp-name", tag], workdir, log, (lock,))
    print(f"    done in {seconds / 60:.1f} min", flush=True)
    return find_finished(c.algo, c.flags, workdir / "runs")
