"""The type of benchmark/studies.py's entries: `Study`, everything one study of benchmark/reproduce.py is.

A `Study` holds its name, its default tasks and budget, the configurations it runs (`configs(args, add)` calls
`add(algo, series, x=None, **flags)` once per configuration; reproduce.py turns each call into one run per task,
all seeds vmapped in one process, or with `seed_per_run` one run per task and seed), the paper's claims it checks
(`claims(rows, args, measure)`, built from benchmark/claims.py), and the few things its report does differently
from the others'. Here too the pieces
that several studies share: the BSuite tasks, the paper's budget, the line on the data's mean return.

`args` is the parsed command line, reproduce.Args; `rows` the study's rows (aggregate.summarise_runs, one per
configuration, `missing` where it has not run); `measure` the scores its verdicts compare ('late' or 'final',
claims.verdict_measure).
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

BSUITE = ["catch", "cartpole", "mountain_car"]


@dataclass(frozen=True)
class Budget:
    """The defaults of --num-seeds, --total-steps and --eval-episodes."""

    num_seeds: int
    total_steps: int
    eval_episodes: int


PAPER_BUDGET = Budget(num_seeds=5, total_steps=200_000, eval_episodes=20)


def bsuite_tasks_only(envs: List[str]) -> None:
    """Stop with an error when --envs names anything but the BSuite tasks."""
    unknown = [e for e in envs if e not in BSUITE]
    if unknown:
        raise SystemExit(f"error: --envs {' '.join(unknown)} are not BSuite tasks; use some of {', '.join(BSUITE)}")


def mean_data_return(args, envs: List[str], data: Optional[Dict[str, float]]) -> List[str]:
    """The report's line of the data's mean return per task (`data`: a measured row's data_returns), if known."""
    return ["Mean return of the data: " + ", ".join(f"{e} {data[e]:.2f}" for e in envs) + "."] if data else []


@dataclass(frozen=True)
class Study:
    """One study: what it runs, what it checks, and how its report differs from the others'."""

    name: str
    configs: Callable[[Any, Callable[..., None]], None]
    """configs(args, add): add(algo, series, x=None, **flags) for each configuration, in the table's order"""
    claims: Callable[[List[dict], Any, str], List[tuple]]
    """claims(rows, args, measure): (the paper's claim, what was measured, verdict) for each claim checked"""
    envs: Tuple[str, ...] = tuple(BSUITE)
    """the tasks without --envs (a report of other tasks names them)"""
    budget: Budget = PAPER_BUDGET
    """the budget without --num-seeds, --total-steps, --eval-episodes"""
    in_all: bool = True
    """whether `--study all` runs it (the BSuite reproduction)"""
    check_envs: Callable[[List[str]], None] = bsuite_tasks_only
    """check_envs(--envs): stop with an error for a task the study cannot run"""
    seed_per_run: bool = False
    """each seed its own run (then joined per task, aggregate.join_seed_runs), so that a study whose configurations
    take longer than a sitting finishes over several, each finished seed kept; else all seeds vmapped in one run"""
    run_order: Optional[Callable[[Any], Any]] = None
    """a sort key of its runs (runner.Config) where they should not run in the order `configs` adds them (the
    report's rows keep that order)"""
    prepare: Optional[Callable[[Any, List[str]], None]] = None
    """prepare(args, envs): made before its runs (not with --dry-run or --report-only), e.g. its data"""
    # The report.
    xlabel: Optional[str] = None
    """the plot's x axis, for a study whose configurations lie on one (their x)"""
    categorical: bool = False
    """the x values evenly spaced as categories, not on a numeric axis"""
    schedule: Optional[str] = None
    """the budget line's learning-rate schedule, for a study that sets it per configuration"""
    name_suffix: Callable[[Any], str] = lambda args: ""
    """added to the report's name for settings that make another report (before the seeds and the budget)"""
    command_flags: Callable[[Any], str] = lambda args: ""
    """the study's own flags in the report's command line, where they differ from the defaults"""
    notes: Callable[[Any], List[str]] = lambda args: []
    """lines of the report's header after the general ones"""
    speed_column: Callable[[Any], bool] = lambda args: False
    """whether the table has a column of each configuration's updates per second"""
    data_lines: Callable[[Any, List[str], Optional[Dict[str, float]]], List[str]] = lambda args, envs, data: []
    """data_lines(args, envs, data returns of a measured row or None): the report's paragraph on the data"""
    best_setting: bool = False
    """whether the report names the configurations with the highest final and late IQM (a sweep's choice)"""
