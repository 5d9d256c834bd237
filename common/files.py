"""Atomic file writes: a reader sees the old file or the whole new one, never a part. Shared by the run
files (common/runs.py: results.json, checkpoints) and the data modules (common/atari/behaviour.py); no JAX
here, so any data module can use it."""

import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a uniquely named temporary file in the same directory."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
