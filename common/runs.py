"""Run bookkeeping shared by the algorithm scripts: names, trackers, results and checkpoints.

Everything here is about files on disk under `runs/{run_name}/`: the TensorBoard writer (and
wandb when `--track`), `results.json`, and checkpoints, plus `Run`, which bundles them for the
training loop of every script (progress bar, timing, the NaN stop, evaluation history). Files
are written atomically (a temporary file renamed into place), so a crash or an interrupted
write never destroys the last good checkpoint or results. No training code lives here: the
scripts own their updates and call `Run` around them.
"""

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import flax.serialization
import numpy as np

from common.sharding import is_main_process, local_copy


class UsageError(ValueError):
    """Bad input from the user; the message is one line saying what was wrong and how to fix it."""


def normalized_scores(env_id: str, returns) -> list:
    """Normalised score of each return, or None for each where the env has no reference scores."""
    from common.scores import has_reference_scores, normalized_score

    if not has_reference_scores(env_id):
        return [None for _ in returns]
    return [normalized_score(env_id, r) for r in returns]


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error (no traceback) and exit."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def make_run_name(env_id: str, exp_name: str, seed: int) -> str:
    return f"{env_id}__{exp_name}__{seed}__{int(time.time())}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _to_builtin(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _to_builtin(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_builtin(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return x


def write_json(path: Path, payload: Dict[str, Any]) -> None:
    write_atomic(path, (json.dumps(_to_builtin(payload), indent=2) + "\n").encode())


class Tracker:
    """TensorBoard scalars under runs/{run_name}/, mirrored to wandb when tracking is on."""

    def __init__(self, run_dir: Path, args: Any, run_name: str, track: bool, project: str, entity: Optional[str]):
        from tensorboardX import SummaryWriter

        self.wandb = None
        if track:
            import wandb

            has_key = bool(os.environ.get("WANDB_API_KEY")) or _netrc_has_wandb()
            mode = os.environ.get("WANDB_MODE", "online" if has_key else "offline")
            self.wandb = wandb.init(
                project=project, entity=entity, name=run_name, config=asdict(args),
                dir=str(run_dir), mode=mode, sync_tensorboard=True,
            )
        self.writer = SummaryWriter(str(run_dir))
        hparams = "\n".join(f"|{k}|{v}|" for k, v in asdict(args).items())
        self.writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{hparams}")

    def scalars(self, values: Dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, float(value), step)

    def close(self) -> None:
        self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()


def _netrc_has_wandb() -> bool:
    netrc = Path.home() / ".netrc"
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def save_checkpoint(path: Path, state: Any, meta: Dict[str, Any]) -> None:
    """Serialise a training-state pytree with its metadata (algorithm, env, seeds, step)."""
    payload = {"meta": json.dumps(_to_builtin(meta)), "state": flax.serialization.to_state_dict(state)}
    write_atomic(path, flax.serialization.msgpack_serialize(payload))


def read_checkpoint(path: Path, expect: Dict[str, Any]) -> tuple:
    """The payload and metadata of a checkpoint written by `save_checkpoint`, checked against `expect`.

    `expect` holds metadata that must match (e.g. algo, env_id, num_seeds); a mismatch, a missing
    or an unreadable file is a one-line UsageError.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint '{path}' does not exist; pass a checkpoint.msgpack written with --save-model")
    try:
        payload = flax.serialization.msgpack_restore(path.read_bytes())
        meta = json.loads(payload["meta"])
    except Exception as e:  # noqa: BLE001 - any decoding failure means the file is not ours
        raise UsageError(f"checkpoint '{path}' could not be read ({type(e).__name__}); it is corrupt or not a checkpoint of this project")
    for key, value in expect.items():
        if meta.get(key) != value:
            raise UsageError(
                f"checkpoint '{path}' was written with {key}={meta.get(key)!r}, this run has {key}={value!r}; "
                f"use a checkpoint of the same {key}"
            )
    return payload, meta


def load_checkpoint(path: Path, template: Any, expect: Dict[str, Any]) -> tuple:
    """Restore a state saved by `save_checkpoint` into `template`'s structure (see read_checkpoint)."""
    payload, meta = read_checkpoint(path, expect)
    try:
        state = flax.serialization.from_state_dict(template, payload["state"])
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"checkpoint '{path}' does not fit this run's networks ({e}); were the network flags changed?")
    return state, meta


class Run:
    """The outputs of one training run of an algorithm script, under runs/{run_name}/.

    `start` restores a checkpoint and opens the outputs. The script's loop asks `chunk_size` how many updates to fuse into the next dispatch (never
    past an evaluation or the end), reports each dispatch to `trained` (progress, TensorBoard,
    updates/s without compilation, and a one-line stop with the last good checkpoint kept when
    a loss is not finite), and hands every evaluation to `evaluated` (history, checkpoint,
    results.json). `finish` writes the final results. `args` must have the common command line
    (env_id, exp_name, seed, num_seeds, total_steps, eval_every, updates_per_dispatch, track,
    wandb_project_name, wandb_entity, save_model, checkpoint).

    Under jax.distributed only process 0 evaluates and writes; on the other processes `start`
    opens nothing, `eval_due` is never true and `trained`/`finish` only keep the step count.
    """

    def __init__(self, algo: str, args: Any):
        """Checks --checkpoint's metadata at once, so a wrong checkpoint fails before any data is read."""
        self.algo, self.args, self.data_info = algo, args, {}
        self.seeds = [args.seed + i for i in range(args.num_seeds)]
        self.meta = {"algo": algo, "env_id": args.env_id, "num_seeds": args.num_seeds}
        if args.checkpoint:
            read_checkpoint(Path(args.checkpoint), self.meta)
        self.name = make_run_name(args.env_id, args.exp_name, args.seed)
        self.dir = Path("runs") / self.name
        self.results_path = self.dir / "results.json"
        self.checkpoint_path = self.dir / "checkpoint.msgpack"
        self.history: Dict[str, list] = {"steps": [], "returns": [], "wall_clock_s": []}
        self.train_time, self.updates_done = 0.0, 0
        self.all_time, self.all_updates = 0.0, 0  # including the dispatches that compiled
        self.step = self.last_good_step = 0
        self.main = is_main_process()

    def start(self, state: Any, data_info: Dict[str, Any]) -> Any:
        """Restore --checkpoint into `state` (algorithm, env and seed count must match), then open
        the run directory, the tracker and the progress bar. Returns the state to train.
        `data_info` describes the data in results.json."""
        from tqdm import tqdm

        self.data_info = data_info
        if self.args.checkpoint:
            state, _ = load_checkpoint(Path(self.args.checkpoint), state, self.meta)
            print(f"resumed from {self.args.checkpoint} at update {int(np.asarray(state.step).ravel()[0])}")
        self.step = self.last_good_step = int(np.asarray(state.step).ravel()[0])
        self.start_time = time.time()
        if not self.main:
            return state
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tracker = Tracker(self.dir, self.args, self.name, self.args.track, self.args.wandb_project_name, self.args.wandb_entity)
        self.bar = tqdm(total=self.args.total_steps, initial=self.step, desc=f"{self.algo} {self.args.env_id}",
                        unit="upd", dynamic_ncols=True)
        return state

    def chunk_size(self) -> int:
        """Updates in the next dispatch: at most --updates-per-dispatch, ending at the next evaluation or the end."""
        next_eval = (self.step // self.args.eval_every + 1) * self.args.eval_every
        return min(self.args.updates_per_dispatch, next_eval - self.step, self.args.total_steps - self.step)

    def trained(self, num_updates: int, seconds: float, metrics: Dict[str, Any], compiled: bool, **scalars: float) -> None:
        """Record one dispatch of `num_updates` updates (metrics: means over them, per seed, and 'finite')."""
        metrics = dict(metrics)
        finite = bool(np.all(metrics.pop("finite")))
        self.all_time += seconds
        self.all_updates += num_updates
        if not compiled:  # updates/s excludes compilation (and evaluation)
            self.train_time += seconds
            self.updates_done += num_updates
        self.step += num_updates
        if not self.main:
            if not finite:
                fail(f"the loss became NaN or infinite between updates {self.step - num_updates} and {self.step}; stopping", code=1)
            return
        self.bar.update(num_updates)
        if not finite:
            self.bar.close()
            self._write("diverged")
            self.tracker.close()
            kept = (f"; the last good checkpoint (update {self.last_good_step}) is kept at {self.checkpoint_path}"
                    if self.checkpoint_path.exists() else "")
            fail(f"the loss became NaN or infinite between updates {self.step - num_updates} and {self.step}; stopping{kept}", code=1)
        self.tracker.scalars({f"losses/{k}": np.mean(v) for k, v in metrics.items()}, self.step)
        self.tracker.scalars({"charts/updates_per_s": self.updates_per_s, **{f"charts/{k}": v for k, v in scalars.items()}}, self.step)
        self._last_loss = float(np.mean(metrics.get("loss", np.nan)))

    def eval_due(self) -> bool:
        return self.main and (self.step % self.args.eval_every == 0 or self.step == self.args.total_steps)

    def evaluated(self, returns: np.ndarray, state: Any = None) -> None:
        """Record an evaluation at the current step (mean return per seed); checkpoint and results.json."""
        returns = np.asarray(returns, np.float64)
        self.history["steps"].append(self.step)
        self.history["returns"].append(returns.tolist())
        self.history["wall_clock_s"].append(time.time() - self.start_time)  # since start, with data, compilation, evaluations
        self.last_good_step = self.step
        scores = normalized_scores(self.args.env_id, returns)
        self.tracker.scalars({
            "charts/eval_return": returns.mean(),
            **({"charts/normalized_score": np.mean(scores)} if scores[0] is not None else {}),
            **{f"charts/eval_return_seed{s}": r for s, r in zip(self.seeds, returns)},
        }, self.step)
        if state is not None and self.args.save_model:
            self.save(state)
        self._write("running")
        self.bar.set_postfix(eval_return=f"{returns.mean():.3f}", loss=f"{getattr(self, '_last_loss', float('nan')):.3f}",
                             ups=f"{self.updates_per_s:.0f}")

    def save(self, state: Any) -> None:
        save_checkpoint(self.checkpoint_path, local_copy(state), {**self.meta, "step": self.step, "seeds": self.seeds, "args": vars(self.args)})

    def finish(self, state: Any, evaluate: Callable[[Any], np.ndarray]) -> Dict[str, Any]:
        """Final results (evaluating once if the loop ran no update, e.g. a finished checkpoint)."""
        if not self.main:
            return {}
        self.bar.close()
        if not self.history["returns"]:
            self.evaluated(evaluate(state.params))
        if self.args.save_model:
            self.save(state)
        results = self._write("finished")
        self.tracker.close()
        final = np.asarray(results["final_returns"])
        scores = results["normalized_scores"]
        normalised = f"normalised {np.mean(scores):.3f}" if scores[0] is not None else "no reference scores to normalise"
        print(
            f"final mean return {final.mean():.3f} (per seed: {', '.join(f'{r:.3f}' for r in final)}), "
            f"{normalised}; {self.updates_per_s:.0f} updates/s x {self.args.num_seeds} seeds; results in {self.results_path}"
        )
        return results

    @property
    def updates_per_s(self) -> float:
        """Updates per second without compilation; a run whose every dispatch compiled counts it in."""
        if self.updates_done == 0:
            return self.all_updates / max(self.all_time, 1e-9)
        return self.updates_done / max(self.train_time, 1e-9)

    def _write(self, status: str) -> Dict[str, Any]:
        final = self.history["returns"][-1] if self.history["returns"] else [float("nan")] * len(self.seeds)
        results = {
            "algo": self.algo, "env_id": self.args.env_id, "status": status, "seeds": self.seeds,
            "total_steps": self.step if status != "diverged" else self.last_good_step,
            "final_returns": final, "mean_final_return": float(np.mean(final)),
            "normalized_scores": normalized_scores(self.args.env_id, final),
            "eval_history": self.history, "wall_clock_s": time.time() - self.start_time,
            "updates_per_s": self.updates_per_s,  # training-loop steps (every vmapped seed advances)
            "agent_updates_per_s": self.updates_per_s * len(self.seeds),
            "data": self.data_info, "args": vars(self.args),
        }
        write_json(self.results_path, results)
        return results
