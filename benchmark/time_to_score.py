"""Time to score, the paper's headline claim, measured: wall-clock seconds and updates until a method's IQM first
reaches a score.

    python -m benchmark.time_to_score benchmark/results/atari_small_10k.json
    python -m benchmark.time_to_score benchmark/results/table2_50k.json --series rosmo mzu mzu_q

The paper (Section 4.1, Fig. 1) reports that ROSMO reaches 150% IQM on Atari in 5.6% of MuZero Unplugged's
wall-clock time (1 h against 17.8 h on the same hardware): the claim rests on how many updates each method needs
to reach a score times what an update costs. For each series of a kept study report (its JSON names every run),
this reads the runs' evaluation histories (runs/{run}/results.json, else the kept copy in benchmark/results/runs/)
and computes, at every evaluation, the IQM over seeds x tasks of the normalised score, and the training seconds
spent to get there: the run's wall-clock time at that evaluation less the time spent evaluating up to it, summed
over the tasks (each task's run trains on its own). The thresholds are fractions of the best final IQM of the
series compared. A series reaches a threshold at the first evaluation whose IQM is at or above it.

Every run of a comparison must have trained on the same kind of hardware (each results.json records its
`devices`): a series whose runs trained on other hardware than the first series', or on several kinds, is
reported but left out of the ratios. Wall-clock seconds on a CPU shared with other jobs are noisy; the table says
so and gives the updates too, which are not.

Writes {stem}_time_to_score.md and .json beside the study's report, and a PNG of IQM against training seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import tyro

from benchmark import aggregate as agg
from benchmark.common_bench import ROOT, write_report
from benchmark.runner import RECORDS


@dataclass
class Args:
    report: tyro.conf.Positional[str]
    """a study's kept JSON report (benchmark/results/{study}_{budget}.json)"""
    series: List[str] = field(default_factory=lambda: ["rosmo", "mzu", "mzu_q"])
    """the series (rows) to compare; the first is the reference of the ratios"""
    thresholds: List[float] = field(default_factory=lambda: [0.5, 0.75, 0.9])
    """fractions of the best final IQM among the series"""
    bootstrap_reps: int = 2000
    """stratified-bootstrap resamples of each IQM's interval"""


def load_run(run_dir: str) -> dict:
    """A run's results.json from runs/, else its kept copy."""
    live = ROOT / run_dir / "results.json"
    if live.is_file():
        return json.loads(live.read_text())
    kept = RECORDS / f"{Path(run_dir).name}.json"
    if kept.is_file():
        return json.loads(kept.read_text())
    raise SystemExit(f"error: no results for the run {run_dir} (neither {live} nor {kept}); run its study first")


def training_seconds(run: dict) -> np.ndarray:
    """Seconds spent training up to each evaluation [E]: wall-clock at the evaluation less all evaluation time
    so far (an evaluation's time is counted after its step; a run that did not record it counts none)."""
    history = run["eval_history"]
    wall = np.asarray(history["wall_clock_s"], np.float64)
    evals = np.asarray([s or 0.0 for s in history.get("eval_seconds") or [0.0] * len(wall)], np.float64)
    return wall - np.cumsum(evals)


def hardware(run: dict) -> str:
    """The kinds of device a run trained on, e.g. 'cpu' or 'NVIDIA H200 (gpu) then cpu'."""
    devices = run.get("devices") or ["1 x cpu (cpu)"]  # runs made before devices were recorded ran on this CPU
    kinds = [d.split(" x ", 1)[-1].split(", JAX")[0] for d in devices]
    return " then ".join(dict.fromkeys(kinds))


def series_curve(runs: List[dict], reps: int) -> Dict:
    """IQM [E, 3] over seeds x tasks, training seconds [E] summed over the runs (one per task, or one per task and
    seed in a study with `seed_per_run`: its seeds' seconds add up as they trained one after another), steps [E],
    and the hardware."""
    curve = agg.curves(runs)
    seconds = np.sum([training_seconds(r) for r in runs], axis=0)
    kinds = sorted({hardware(r) for r in runs})
    return {
        "steps": curve["steps"],
        "seconds": seconds,
        "iqm": agg.curve_iqm(curve["scores"], reps),
        "final_iqm": agg.iqm_with_ci(agg.final_scores(runs), reps),
        "hardware": kinds[0] if len(kinds) == 1 else " / ".join(kinds),
        "mixed": len(kinds) > 1,
    }


def first_reach(curve: Dict, level: float) -> Optional[tuple]:
    """(updates, training seconds) at the first evaluation whose IQM is at least `level`, else None."""
    hits = np.flatnonzero(curve["iqm"][:, 0] >= level - 1e-12)
    if hits.size == 0:
        return None
    i = int(hits[0])
    return int(curve["steps"][i]), float(curve["seconds"][i])


def main(args: Args) -> None:
    path = Path(args.report)
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist; run its study first (python -m benchmark.reproduce --study ...)")
    report = json.loads(path.read_text())
    rows = {r["series"]: r for r in report["rows"] if r.get("x") is None}
    missing = [s for s in args.series if s not in rows or rows[s].get("missing")]
    if missing:
        raise SystemExit(f"error: {path} has no finished rows for {', '.join(missing)}; run the study to its end first")
    curves = {s: series_curve([load_run(d) for d in rows[s]["runs"]], args.bootstrap_reps) for s in args.series}
    best = max(c["final_iqm"][0] for c in curves.values())
    reference = args.series[0]
    same_kind = {s: not c["mixed"] and c["hardware"] == curves[reference]["hardware"] for s, c in curves.items()}

    table = []
    for fraction in args.thresholds:
        level = fraction * best
        reached = {s: first_reach(c, level) for s, c in curves.items()}
        ratios = {
            s: (reached[s][1] / reached[reference][1])
            if reached[s] and reached[reference] and same_kind[s] and reached[reference][1] > 0
            else None
            for s in args.series
        }
        table.append({"fraction": fraction, "level": level, "reached": reached, "time_ratio_to_reference": ratios})

    envs = report["envs"]
    lines = [
        f"# Time to score: {report['study']} ({', '.join(envs)})",
        "",
        f"From [{path.name}]({path.name}) and the runs it names. IQM over seeds x tasks of the normalised score at each "
        f"evaluation; training seconds summed over the tasks' runs, evaluation time left out. Thresholds: fractions "
        f"of the best final IQM among {', '.join(args.series)} ({best:.3f}). Machine of the report: {report['machine']}.",
        "Wall-clock seconds on a shared machine are noisy; the updates are exact.",
        "",
        "| series | hardware | final IQM [95% CI] | updates/s (training) | "
        + " | ".join(f"{f:.0%} of best ({f * best:.3f}): updates, seconds" for f in args.thresholds)
        + " |",
        "|---|---|---|---|" + "---|" * len(args.thresholds),
    ]
    for s, c in curves.items():
        rate = c["steps"][-1] / c["seconds"][-1] if c["seconds"][-1] > 0 else float("nan")
        cells = []
        for row in table:
            hit = row["reached"][s]
            ratio = row["time_ratio_to_reference"][s]
            cells.append(
                "not reached"
                if hit is None
                else f"{hit[0]}, {hit[1]:.0f} s"
                + (f" (x{ratio:.2f} of {reference})" if ratio is not None and s != reference else "")
            )
        flag = " (mixed: left out of the ratios)" if c["mixed"] else ("" if same_kind[s] else " (other hardware: no ratio)")
        lines.append(
            f"| {s} | {c['hardware']}{flag} | {agg.fmt_ci(c['final_iqm'])} | {rate:.1f} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "The paper: ROSMO reached 150% IQM in 5.6% of MuZero Unplugged's time on Atari (1 h against 17.8 h, the same "
        "TPU hardware for both): MZU took 17.8x ROSMO's time.",
        "",
        f"![IQM against training seconds]({path.stem}_time_to_score.png)",
        "",
    ]
    out = path.with_name(f"{path.stem}_time_to_score.md")
    data = {
        "report": path.name,
        "series": args.series,
        "best_final_iqm": best,
        "thresholds": table,
        "curves": {
            s: {
                "steps": c["steps"].tolist(),
                "seconds": c["seconds"].tolist(),
                "iqm": c["iqm"].tolist(),
                "final_iqm": list(c["final_iqm"]),
                "hardware": c["hardware"],
            }
            for s, c in curves.items()
        },
    }
    write_report(out, lines, data)
    plot(out.with_suffix(".png"), f"{report['study']}: IQM against training time", curves, [row["level"] for row in table])


def plot(path: Path, title: str, curves: Dict[str, Dict], levels: List[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, c in curves.items():
        ax.plot(c["seconds"], c["iqm"][:, 0], marker="o", markersize=3, label=f"{name} ({c['hardware']})")
        ax.fill_between(c["seconds"], c["iqm"][:, 1], c["iqm"][:, 2], alpha=0.2)
    for level in levels:
        ax.axhline(level, color="grey", linewidth=0.6, linestyle=":")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("training seconds (summed over tasks)")
    ax.set_ylabel("IQM normalised score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main(tyro.cli(Args))
