"""Keep the training scalars of runs: every TensorBoard scalar of each run directory, in one JSON file.

    python -m benchmark.scalars runs/Breakout__rosmo__0__1796539856_0a6c7d --out benchmark/results/some_runs.json
    python -m benchmark.scalars runs/A runs/B --tags train/policy_entropy train/accuracy   # print only

A run's results.json keeps its evaluations; what its losses, entropies and filter rates did lives in the
run's TensorBoard file, which stays in runs/ (git-ignored). A page that quotes such a number names the file
this writes, so the number comes from a kept file. Prints, per run and tag, the first and last values and the
range; --out writes {"runs": {run directory name: {"args": its args.json, tag: [[update, value], ...]}}}.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import tyro


@dataclass
class Args:
    run_dirs: tyro.conf.Positional[List[str]]
    """run directories (each with an events.out.tfevents.* file)"""
    tags: List[str] = field(default_factory=list)
    """scalars to keep and print (default: all)"""
    out: str = ""
    """JSON file to write (default: print only)"""


def read_scalars(run_dir: Path, tags: List[str]) -> Dict[str, List[List[float]]]:
    """{tag: [[update, value], ...]} of every scalar (or those in `tags`) in a run directory's TensorBoard files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(run_dir.glob("events.out.tfevents.*"))
    if not files:
        raise SystemExit(f"error: {run_dir} has no TensorBoard file (events.out.tfevents.*); is it a run directory?")
    scalars: Dict[str, Dict[int, float]] = {}
    for file in files:  # a resumed run appends a file per start; later files win at the same update
        events = EventAccumulator(str(file), size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            if not tags or tag in tags:
                scalars.setdefault(tag, {}).update({e.step: e.value for e in events.Scalars(tag)})
    return {tag: [[step, value] for step, value in sorted(points.items())] for tag, points in sorted(scalars.items())}


def main(args: Args) -> None:
    kept = {}
    for name in args.run_dirs:
        run_dir = Path(name)
        scalars = read_scalars(run_dir, args.tags)
        arguments = json.loads((run_dir / "args.json").read_text()) if (run_dir / "args.json").is_file() else {}
        kept[run_dir.name] = {"args": arguments, **scalars}
        print(run_dir.name)
        for tag, points in scalars.items():
            values = [v for _, v in points]
            print(
                f"  {tag}: {values[0]:.4g} at {points[0][0]} -> {values[-1]:.4g} at {points[-1][0]} "
                f"(range {min(values):.4g} .. {max(values):.4g}, {len(values)} points)"
            )
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": kept}, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main(tyro.cli(Args, args=sys.argv[1:]))
