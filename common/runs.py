"""The files of a training run under `runs/{run_name}/`: its arguments, results and checkpoint.

`Run` is the name the scripts use (beside the progress bar's format and wandb's mode, for the
logging they keep). It gives every run its own directory (a time stamp plus a
random suffix, created exclusively, so runs launched at the same instant with the same name and
seed never share one), writes `args.json` there at the start, keeps the evaluation history in
`results.json`, and saves and restores the full training state in `checkpoint.msgpack`.
`--resume runs/{run_name}` reopens such a directory in place: the saved arguments, the saved
state, the evaluation history so far and the same run id (for wandb) come back. Every file is
written through a uniquely named temporary file renamed into place, so an interrupted write
never destroys the last good one, and results.json is strict JSON (null, never NaN).

One process at a time owns a run directory: the run holds an exclusive lock (`fcntl.flock`) on
`runs/{run_name}/lock`, which names its process id and host, from the moment the directory is
created (or, for --resume, opened) until the process ends; --eval-only holds the lock of the
directory it writes eval.json to. A second process that asks for it stops at once with a one-line
error naming the holder. The kernel drops the lock of a process that died, and the next process
takes it over and writes its own id into the file. A run whose process ends any other way than
through `finish` (an exception, an error exit, a Ctrl-C before the training loop) is marked
"failed" (or "interrupted") in results.json as the process exits, never left "running".

The training loop, TensorBoard/wandb logging, the evaluation schedule, the progress bar and the
NaN stop are the scripts' own; this module does no training and no logging. Under
jax.distributed only process 0 writes: on the others every write here does nothing.
"""

import atexit
import dataclasses
import fcntl
import json
import math
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional, Tuple

import flax.serialization
import jax
import numpy as np

from common.errors import UsageError
from common.files import write_atomic
from common.scores import has_reference_scores, normalized_score
from common.sharding import is_main_process, local_copy

RUNS_ROOT = Path("runs")
# --eval-only: flags of the command line that still apply (the rest come from the checkpoint's saved arguments).
EVAL_FLAGS = ("eval_episodes", "eval_max_steps", "eval_greedy", "capture_video")
EVAL_IGNORED = ("checkpoint", "eval_only", "data_dir", "generate_data")  # accepted, no data is read
# Flags added after runs were saved, with what such a run computed where that is not today's default: --resume
# of an older run fills them in from here (the noisy BSuite data of earlier runs had its noise in the behaviour).
EARLIER_VALUES = {"noise_in": "behaviour"}
LOCK_FILE = "lock"  # in a run directory: the process that owns it (see `hold_directory`)
# The scripts' progress bar: tqdm's without its own rate (which counts the first dispatch's compile); the scripts
# show the training rate as ups= beside the evaluation return.
PROGRESS_BAR = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


class CheckpointData(NamedTuple):
    """What the networks need to know of the data, read from a checkpoint's metadata (--eval-only)."""

    num_actions: int
    obs_shape: Tuple[int, ...]  # one observation as the network sees it: (D,) on BSuite, (84, 84, 4) on Atari
    obs_dtype: Any


def normalized_scores(env_id: str, returns) -> list:
    """Normalised score of each return, or None for each where the env has no reference scores."""
    if not has_reference_scores(env_id):
        return [None for _ in returns]
    return [None if r is None else normalized_score(env_id, r) for r in returns]


def _to_builtin(x: Any) -> Any:
    """JSON-ready copy of `x`: arrays as lists, NaN and infinities as None, paths as strings."""
    if isinstance(x, dict):
        return {str(k): _to_builtin(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_builtin(v) for v in x]
    if isinstance(x, np.ndarray):
        return _to_builtin(x.tolist())
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, type) or callable(x):
        return getattr(x, "__name__", str(x))
    return x


def describe_devices() -> str:
    """The devices this process trains on, e.g. '1 x NVIDIA H200 (gpu), JAX 0.11.2'."""
    return f"{jax.device_count()} x {jax.devices()[0].device_kind} ({jax.default_backend()}), JAX {jax.__version__}"


def write_json(path: Path, payload: Dict[str, Any]) -> None:
    """Strict JSON (NaN and infinities become null), written atomically."""
    write_atomic(path, (json.dumps(_to_builtin(payload), indent=2, allow_nan=False) + "\n").encode())


def wandb_mode() -> str:
    """$WANDB_MODE if set, else "online" when a wandb API key is configured ($WANDB_API_KEY or
    ~/.netrc), else "offline" (the run is logged locally and can be synced later)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    netrc = Path.home() / ".netrc"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"))
    return "online" if has_key else "offline"


def hold_directory(path: Path) -> Optional[Any]:
    """An exclusive lock on the directory `path` for as long as this process lives (or the returned file stays
    open): `fcntl.flock` on `path`/lock, which then names this process and host. Held by another live process:
    a one-line UsageError naming it. A lock left by a process that died is free (the kernel released it) and
    is taken over. Returns the open lock file, or None when this process holds the lock already."""
    handle = open(Path(path) / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        text = handle.read()
        handle.close()
        try:
            holder = json.loads(text)
            pid, host = int(holder["pid"]), str(holder["host"])
        except (ValueError, KeyError, TypeError):  # the holder has not written its name yet
            raise UsageError(f"{path} is in use by another process; wait for it to end or stop it") from None
        if pid == os.getpid() and host == socket.gethostname():
            return None  # this process holds it (a second Run of the same directory in one process)
        raise UsageError(
            f"{path} is in use by process {pid} on {host} (one process per run directory); "
            f"wait for it to end or stop it (kill {pid} on {host})"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}) + "\n")
    handle.flush()
    return handle


def check_exp_name(exp_name: str) -> None:
    """--exp-name becomes part of a directory name under runs/: no path separators, no '..'."""
    if not exp_name or "/" in exp_name or "\\" in exp_name or os.sep in exp_name or ".." in exp_name:
        raise UsageError(f"--exp-name {exp_name!r} must be a plain name (no '/', '\\' or '..'); e.g. --exp-name my_test")


def save_checkpoint(path: Path, state: Any, meta: Dict[str, Any]) -> None:
    """Serialise a training-state pytree with its metadata (algorithm, env, seeds, step, args, data shapes)."""
    payload = {"meta": json.dumps(_to_builtin(meta)), "state": flax.serialization.to_state_dict(state)}
    write_atomic(path, flax.serialization.msgpack_serialize(payload))


def read_checkpoint(path: Path, expect: Dict[str, Any]) -> tuple:
    """The payload and metadata of a checkpoint written by `save_checkpoint`, checked against `expect`.

    `expect` holds metadata that must match (e.g. algo, env_id, num_seeds); a mismatch, a missing
    or an unreadable file is a one-line UsageError.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint '{path}' does not exist; pass the checkpoint.msgpack of a run directory")
    try:
        payload = flax.serialization.msgpack_restore(path.read_bytes())
        meta = json.loads(payload["meta"])
    except Exception as e:  # noqa: BLE001 - any decoding failure means the file is not ours
        raise UsageError(
            f"checkpoint '{path}' could not be read ({type(e).__name__}); it is corrupt or not a checkpoint of this project"
        ) from None
    for key, value in expect.items():
        if meta.get(key) != value:
            raise UsageError(
                f"checkpoint '{path}' was written with {key}={meta.get(key)!r}, this run has {key}={value!r}; "
                f"use a checkpoint of the same {key}"
            )
    return payload, meta


def first_mismatch(template: Any, saved: Any, where: str = "") -> Optional[str]:
    """The first leaf (as a path) where the state dict `saved` differs from `template` in
    structure, shape or dtype, with what each holds; None when they fit."""
    if isinstance(template, dict):
        if not isinstance(saved, dict):
            return f"{where or '/'}: the checkpoint has a leaf where the network has a subtree"
        for key in template:
            if key not in saved:
                return f"{where}/{key}: missing from the checkpoint"
            found = first_mismatch(template[key], saved[key], f"{where}/{key}")
            if found:
                return found
        extra = [k for k in saved if k not in template]
        return f"{where}/{extra[0]}: in the checkpoint but not in the network" if extra else None
    if isinstance(saved, dict):
        return f"{where}: the checkpoint has a subtree where the network has a leaf"
    want, got = np.asarray(template), np.asarray(saved)
    if want.shape != got.shape or want.dtype != got.dtype:
        return f"{where}: the checkpoint has {got.dtype}{list(got.shape)}, the network {want.dtype}{list(want.shape)}"
    return None


def load_checkpoint(path: Path, template: Any, expect: Dict[str, Any]) -> tuple:
    """Restore a state saved by `save_checkpoint` into `template`'s structure (see read_checkpoint);
    a parameter whose shape or dtype differs is a one-line UsageError naming the first such leaf."""
    payload, meta = read_checkpoint(path, expect)
    mismatch = first_mismatch(flax.serialization.to_state_dict(local_copy(template)), payload["state"])
    if mismatch:
        raise UsageError(
            f"checkpoint '{path}' does not fit the requested networks ({mismatch}); use the network flags it was trained with"
        )
    return flax.serialization.from_state_dict(template, payload["state"]), meta


def empty_history() -> Dict[str, list]:
    """The evaluation history of a run before its first evaluation (results.json's `eval_history`)."""
    return {"steps": [], "returns": [], "wall_clock_s": [], "eval_seconds": [], "episodes": []}


class Run:
    """One run's directory and files; see the module docstring.

    `Run(algo, args)` checks --exp-name, --resume's directory and --checkpoint's metadata, so a
    wrong one fails before any data is read. `restore` creates the new run directory (after the
    data loaded, so a data error leaves none behind) and gives the state to train and its step;
    `record` keeps an evaluation (history, checkpoint, results.json); `save` writes the checkpoint
    alone; `write` writes results.json with a status ("running", "finished", "interrupted",
    "diverged" or "failed"); `finish` writes the final results and drops the checkpoint unless
    --save-model; `summary` is the final line the scripts print. The directory's lock is taken in
    `__init__` (--resume, --eval-only) or `restore` (a new run).
    """

    @staticmethod
    def saved_args(run_dir: str, args_type: Any, given: Any) -> Any:
        """The arguments saved in `run_dir`/args.json as an `args_type`, for --resume `run_dir`.

        `given` is the parsed command line; any flag it sets away from its default besides
        --resume is refused (a resumed run continues with exactly its saved arguments)."""
        run_dir = Path(run_dir)
        if not (run_dir / "args.json").is_file():
            raise UsageError(f"--resume {run_dir}: not a run directory (no args.json); pass runs/<run_name> of an earlier run")
        fields = {f.name: f for f in dataclasses.fields(args_type)}
        changed = [
            name
            for name, f in fields.items()
            if name != "resume" and f.default is not dataclasses.MISSING and getattr(given, name) != f.default
        ]
        if changed:
            flags = ", ".join(f"--{name.replace('_', '-')}" for name in changed)
            raise UsageError(f"--resume continues a run with its saved arguments; drop {flags}")
        try:
            saved = json.loads((run_dir / "args.json").read_text())
        except (OSError, ValueError) as e:
            raise UsageError(
                f"--resume {run_dir}: args.json could not be read ({type(e).__name__}); is the run directory intact?"
            ) from None
        earlier = {k: v for k, v in EARLIER_VALUES.items() if k in fields and k not in saved}
        return args_type(**{**earlier, **{k: v for k, v in saved.items() if k in fields}, "resume": str(run_dir)})

    @staticmethod
    def checkpoint_args(given: Any, args_type: Any) -> Any:
        """For --eval-only: the arguments saved in --checkpoint's metadata as an `args_type` (env, network
        flags, seeds), with the evaluation flags `EVAL_FLAGS` that `given` (the command line) sets away
        from their defaults. Any other flag set on the command line is refused (the agent is rebuilt as
        it was trained); `EVAL_IGNORED` ones are accepted, as no data is read."""
        if not given.checkpoint:
            raise UsageError("--eval-only evaluates a saved agent; pass --checkpoint runs/<run_name>/checkpoint.msgpack")
        if given.resume:
            raise UsageError("--eval-only evaluates --checkpoint and trains nothing; drop --resume")
        _, meta = read_checkpoint(Path(given.checkpoint), {})
        if not isinstance(meta.get("args"), dict) or "num_actions" not in meta:
            raise UsageError(
                f"checkpoint '{given.checkpoint}' holds no saved arguments or data shapes (an older "
                "format); evaluate it by training from it with --checkpoint and --total-steps at its step"
            )
        fields = {f.name: f for f in dataclasses.fields(args_type)}
        changed = [
            name
            for name, f in fields.items()
            if name not in EVAL_FLAGS + EVAL_IGNORED
            and f.default is not dataclasses.MISSING
            and getattr(given, name) != f.default
        ]
        if changed:
            flags = ", ".join(f"--{name.replace('_', '-')}" for name in changed)
            allowed = ", ".join(f"--{name.replace('_', '-')}" for name in EVAL_FLAGS)
            raise UsageError(
                f"--eval-only rebuilds the agent from the checkpoint's saved arguments; drop {flags} (only {allowed} apply)"
            )
        explicit = {
            name: getattr(given, name)
            for name in EVAL_FLAGS
            if name in fields and getattr(given, name) != fields[name].default
        }
        saved = {k: v for k, v in meta["args"].items() if k in fields}
        return args_type(
            **{**saved, **explicit, "checkpoint": given.checkpoint, "eval_only": True, "resume": None, "track": False}
        )

    def __init__(self, algo: str, args: Any):
        self.algo, self.args, self.main = algo, args, is_main_process()
        self.seeds = [args.seed + i for i in range(args.num_seeds)]
        self.meta = {"algo": algo, "env_id": args.env_id, "num_seeds": args.num_seeds}
        self.history: Dict[str, list] = empty_history()
        self.data_info: Dict[str, Any] = {}
        self.updates_per_s = float("nan")
        self.devices: list = []  # where the run trained, one entry per change of machine across resumes
        self.status, self.step, self.lock = None, 0, None  # as results.json last said; the directory's lock
        atexit.register(self._mark_unfinished)
        elapsed = 0.0
        if args.resume:
            if args.checkpoint:
                raise UsageError("--resume continues a run from its own checkpoint; drop --checkpoint")
            self.dir = Path(args.resume)
            if self.main:
                self.lock = hold_directory(self.dir)  # before anything is read: a second process stops here
            previous = self._read_results()
            if previous.get("algo") != algo:
                raise UsageError(
                    f"--resume {self.dir} is a {previous.get('algo')} run; resume it with {previous.get('algo')}.py"
                )
            if previous.get("status") == "finished":
                kept = self.checkpoint_path.is_file()  # only with --save-model
                raise UsageError(
                    f"--resume {self.dir}: this run has finished; start a new run"
                    + (f" (or start one from its agent with --checkpoint {self.checkpoint_path})" if kept else "")
                )
            self.id = previous.get("run_id") or secrets.token_hex(8)
            self.history = previous.get("eval_history", self.history)
            self.devices = previous.get("devices", [])
            elapsed = float(previous.get("wall_clock_s") or 0.0)
        else:
            check_exp_name(args.exp_name)
            if args.checkpoint:
                self.checkpoint_meta = read_checkpoint(Path(args.checkpoint), self.meta)[1]
            if getattr(args, "eval_only", False) and self.main:  # eval.json is written beside the checkpoint
                self.lock = hold_directory(Path(args.checkpoint).parent)
            self.dir, self.id = None, secrets.token_hex(8)  # created by `restore`, once the data has loaded
        self.start_time = time.time() - elapsed  # wall-clock seconds count on across a resume

    def checkpoint_data(self) -> CheckpointData:
        """--eval-only's stand-in for the data: the action count and observation shape and dtype that
        --checkpoint's metadata records (no dataset is read or generated)."""
        meta = self.checkpoint_meta
        return CheckpointData(int(meta["num_actions"]), tuple(meta["obs_shape"]), np.dtype(meta["obs_dtype"]))

    @property
    def video_dir(self) -> Optional[Path]:
        """Where --capture-video writes its mp4 files: runs/{run_name}/videos/, or videos/ beside the
        checkpoint under --eval-only; None without --capture-video (and on processes other than 0)."""
        if not getattr(self.args, "capture_video", False) or not self.main:
            return None
        return (Path(self.args.checkpoint).parent if getattr(self.args, "eval_only", False) else self.dir) / "videos"

    def evaluate_checkpoint(self, state: Any, evaluate: Any, eval_key: Any) -> Dict[str, Any]:
        """--eval-only: --checkpoint's parameters loaded into `state` (stacked over seeds) and evaluated with
        `evaluate(params, key, step)` under `fold_in(eval_key, step)`, the key its run used at that update (so
        with the same evaluation flags the returns repeat that evaluation). Prints the returns and writes
        them to eval.json beside the checkpoint (replacing an earlier one); returns what it wrote."""
        path = Path(self.args.checkpoint)
        state, meta = load_checkpoint(path, state, {k: self.meta[k] for k in ("algo", "env_id", "num_seeds")})
        step = int(meta["step"])
        start = time.time()
        returns = np.asarray(evaluate(state.params, jax.random.fold_in(eval_key, step), step), np.float64)  # [S]
        seconds = time.time() - start
        videos = sorted(str(p) for p in self.video_dir.glob(f"update_{step}_*.mp4")) if self.video_dir else []
        result = {
            "algo": self.algo,
            "env_id": self.args.env_id,
            "checkpoint": str(path),
            "step": step,
            "seeds": self.seeds,
            "returns": returns.tolist(),
            "mean_return": float(returns.mean()),
            "normalized_scores": normalized_scores(self.args.env_id, returns.tolist()),
            "eval_episodes": self.args.eval_episodes,
            "eval_max_steps": self.args.eval_max_steps,
            "eval_greedy": self.args.eval_greedy,
            "eval_seconds": seconds,
            "episodes": evaluate.episodes[-1],  # Atari: mean length and action shares per seed; BSuite: None
            "videos": videos,
        }
        out = path.parent / "eval.json"
        if self.main:
            write_json(out, result)
            print(
                f"checkpoint at update {step}: mean return {returns.mean():.3f} (per seed: "
                f"{', '.join(f'{s}: {r:.3f}' for s, r in zip(self.seeds, returns))}) over {self.args.eval_episodes} "
                f"episodes each in {seconds:.1f}s; written to {out}"
            )
        return _to_builtin(result)

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / "checkpoint.msgpack"

    def _new_dir(self, args: Any) -> Path:
        """A fresh directory runs/{env}__{exp}__{seed}__{time}_{random}, created exclusively."""
        for _ in range(100):
            path = RUNS_ROOT / f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}_{secrets.token_hex(3)}"
            if not self.main:
                return path
            try:
                path.mkdir(parents=True, exist_ok=False)
                self.lock = hold_directory(path)
                return path
            except FileExistsError:
                continue
        raise UsageError(f"could not create a new run directory under {RUNS_ROOT}; remove old runs or check its permissions")

    def _read_results(self) -> Dict[str, Any]:
        try:
            return json.loads((self.dir / "results.json").read_text())
        except (OSError, ValueError):
            raise UsageError(
                f"--resume {self.dir}: results.json is missing or unreadable; is the run directory intact?"
            ) from None

    def restore(self, state: Any, data: Any) -> Tuple[Any, int]:
        """(state to train, its update step): --resume's own checkpoint, else --checkpoint's, else
        `state` at step 0. `data` (the script's OfflineData) is described in results.json and its
        action count and observation shape and dtype in every checkpoint."""
        if self.dir is None:
            self.dir = self._new_dir(self.args)
            if self.main:
                write_json(self.dir / "args.json", vars(self.args))
        self.data_info = dict(data.info)
        here = describe_devices()
        if self.devices[-1:] != [here]:
            self.devices.append(here)
        self.meta.update(
            num_actions=int(data.num_actions), obs_shape=list(data.obs_shape), obs_dtype=np.dtype(data.obs_dtype).name
        )
        path = self.checkpoint_path if self.args.resume else (Path(self.args.checkpoint) if self.args.checkpoint else None)
        if path is not None and (path.exists() or not self.args.resume):
            state, meta = load_checkpoint(path, state, {k: self.meta[k] for k in ("algo", "env_id", "num_seeds")})
            print(f"{'resumed' if self.args.resume else 'restored'} from {path} at update {meta['step']}")
        elif self.args.resume:  # stopped before its first checkpoint: start again, in place
            self.history = empty_history()
        step = int(np.asarray(local_copy(state.step)).ravel()[0])
        if step % self.args.updates_per_dispatch:
            raise UsageError(
                f"the checkpoint is at update {step}, not a multiple of --updates-per-dispatch "
                f"{self.args.updates_per_dispatch}; pass a dispatch size that divides {step}"
            )
        done = self.history["steps"]
        if done and done[-1] > step:  # evaluations logged after the checkpoint are redone
            keep = sum(s <= step for s in done)
            self.history = {k: v[:keep] for k, v in self.history.items()}
        self.write("running", step)
        return state, step

    def save(self, state: Any, step: int) -> None:
        """The full training state at `step` (atomically) with its metadata."""
        if self.main:
            meta = {**self.meta, "step": step, "seeds": self.seeds, "args": vars(self.args)}
            save_checkpoint(self.checkpoint_path, jax.device_get(local_copy(state)), meta)

    def record(
        self,
        step: int,
        returns: np.ndarray,
        state: Any,
        updates_per_s: float,
        eval_seconds: Optional[float] = None,
        episodes: Optional[Dict[str, list]] = None,
    ) -> Dict[str, Any]:
        """An evaluation at `step` (mean return per seed) that took `eval_seconds` of wall clock and played
        `episodes` (Atari: mean length and action shares per seed, common/evaluation.py's `episode_summary`):
        history, checkpoint, results.json (returned)."""
        self.updates_per_s = updates_per_s
        for key in ("eval_seconds", "episodes"):  # older results.json lack them
            self.history.setdefault(key, [None] * len(self.history["steps"]))
        self.history["steps"].append(step)
        self.history["returns"].append(np.asarray(returns, np.float64).tolist())
        self.history["wall_clock_s"].append(time.time() - self.start_time)
        self.history["eval_seconds"].append(eval_seconds)
        self.history["episodes"].append(episodes)
        self.save(state, step)
        return self.write("running", step)

    def write(self, status: str, step: int) -> Dict[str, Any]:
        """results.json with `status`; the final returns are those of the last evaluation."""
        self.status, self.step = status, step
        final = self.history["returns"][-1] if self.history["returns"] else [None] * len(self.seeds)
        finite = [r for r in final if r is not None and math.isfinite(r)]
        results = {
            "algo": self.algo,
            "env_id": self.args.env_id,
            "status": status,
            "seeds": self.seeds,
            "total_steps": step,
            "final_returns": final,
            "mean_final_return": float(np.mean(finite)) if len(finite) == len(final) else None,
            "normalized_scores": normalized_scores(self.args.env_id, final),
            "eval_history": self.history,
            "wall_clock_s": time.time() - self.start_time,
            "eval_seconds": float(sum(t for t in self.history.get("eval_seconds", []) if t is not None)),
            "updates_per_s": self.updates_per_s,  # training-loop steps (every vmapped seed advances)
            "agent_updates_per_s": self.updates_per_s * len(self.seeds),
            "data": self.data_info,
            "devices": self.devices,
            "args": vars(self.args),
            "run_name": self.name,
            "run_id": self.id,
        }
        if self.main:
            write_json(self.dir / "results.json", results)
        return _to_builtin(results)

    def finish(self, status: str, step: int) -> Dict[str, Any]:
        """Final results.json; a finished run keeps its checkpoint only with --save-model."""
        if self.main and status == "finished" and not self.args.save_model and self.checkpoint_path.exists():
            self.checkpoint_path.unlink()
        return self.write(status, step)

    def summary(self, updates_per_s: float, default_steps: int) -> str:
        """The line a finished run ends with: the final mean return beside the data's (when the data were read
        whole), per seed, the training rate and where the results are. A run of fewer than half the script's
        default budget (`default_steps` updates) that ends below the data's mean return gets a second line
        saying it was short."""
        final = np.asarray(self.history["returns"][-1], np.float64)  # [num_seeds]
        data_mean = self.data_info.get("mean_return")
        beside = f"data's mean {data_mean:.3f}; " if data_mean is not None else ""
        line = (
            f"final mean return {final.mean():.3f} ({beside}per seed: {', '.join(f'{r:.3f}' for r in final)}); "
            f"{updates_per_s:.0f} updates/s x {len(self.seeds)} seeds; results in {self.dir / 'results.json'}"
        )
        if data_mean is not None and final.mean() < data_mean and self.step < default_steps / 2:
            line += (
                f"\nthis was a short run ({self.step:,} updates; {default_steps:,} by default): an agent below the "
                "data's mean return has not finished learning"
            )
        return line

    def _mark_unfinished(self) -> None:
        """At exit: a run whose results.json still says "running" did not reach `finish`; it is marked
        "interrupted" after a Ctrl-C, else "failed" (an exception or an error exit)."""
        if self.status != "running" or self.dir is None:
            return
        ended_by = getattr(sys, "last_value", None)  # set when an exception went unhandled
        try:
            self.write("interrupted" if isinstance(ended_by, KeyboardInterrupt) else "failed", self.step)
        except OSError:  # the directory is gone: nothing to mark
            pass
