"""Run bookkeeping shared by the algorithm scripts: names, trackers, results and checkpoints.

Everything here is about files on disk under `runs/{run_name}/`: the TensorBoard writer (and
wandb when `--track`), `results.json`, and checkpoints. Files are written atomically (a
temporary file renamed into place), so a crash or an interrupted write never destroys the last
good checkpoint or results. No training code lives here.
"""

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Optional

import flax.serialization
import numpy as np


class UsageError(ValueError):
    """Bad input from the user; the message is one line saying what was wrong and how to fix it."""


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


def load_checkpoint(path: Path, template: Any, expect: Dict[str, Any]) -> tuple:
    """Restore a state saved by `save_checkpoint` into `template`'s structure.

    `expect` holds metadata that must match (e.g. algo, env_id, num_seeds); a mismatch is a
    one-line UsageError naming both values.
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
    try:
        state = flax.serialization.from_state_dict(template, payload["state"])
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"checkpoint '{path}' does not fit this run's networks ({e}); were the network flags changed?")
    return state, meta
