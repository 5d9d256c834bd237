"""What every benchmark shares: the repository's root, the machine's description, writing a report.

Running the algorithm scripts is benchmark/runner.py's; reaching their code, benchmark/algorithms.py's.
"""

import json
import os
import platform
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]


def machine_description() -> str:
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    device = jax.devices()[0]
    return f"{os.cpu_count()} CPU cores ({cpu}), JAX {jax.__version__} on {device.platform} ({device.device_kind})"


def write_report(path: Path, lines: List[str], data: Optional[dict] = None, indent: int = 1) -> None:
    """Write a benchmark's Markdown report `lines` to `path`, and `data` as JSON beside it (same stem, .json),
    each atomically (a killed benchmark leaves the last good table), and say so."""
    from common.files import write_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "\n".join(lines).encode())
    if data is not None:
        write_atomic(path.with_suffix(".json"), (json.dumps(data, indent=indent, default=str) + "\n").encode())
    print(f"wrote {path}")
