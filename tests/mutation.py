"""Mutation score of the fast tests: apply small, realistic bugs to the algorithm files one at a
time and count how many the fast tests of the mutated file catch.

The bugs and the test files of each algorithm file are listed in tests/mutations.json. Every
mutation is applied to a copy of the repository in a temporary directory (the working tree is
never written), then `python -m pytest -x -q -m "not e2e" <that file's fast tests>` runs there;
the mutation is caught when the tests fail (or time out). The unmutated copy is run first: a
file whose tests already fail gives no score.

A mutation that cannot change behaviour on valid input carries `"equivalent": "<why>"`: it is listed
with its reason, not run (unless --run-equivalent) and left out of the score.

    python tests/mutation.py                       # every mutation, exits 1 below --min-score 0.9
    python tests/mutation.py --file rosmo.py       # one algorithm file
    python tests/mutation.py --only rosmo-online-bootstrap --only cql-penalty-no-gradient
    python tests/mutation.py --check               # only check that every snippet occurs exactly once
    python tests/mutation.py --run-equivalent      # also run the mutations marked equivalent (not scored)

Not collected by pytest (its name does not start with test_).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

ROOT = Path(__file__).resolve().parents[1]
MUTATIONS = ROOT / "tests" / "mutations.json"
COPIED_DIRS = ("common", "tests", "benchmark")  # with the top-level *.py files and pytest.ini
FIELDS = ("id", "file", "original", "replacement", "description", "bug_class")


class Outcome(NamedTuple):
    caught: bool
    status: str  # "caught", "survived", "timeout", "error"
    seconds: float
    detail: str  # the first failing test, or why the run was not a plain pass/fail


def load_spec(path: Path) -> dict:
    """The mutation list: {"test_files": {file: [test paths]}, "mutations": [{id, file, original, ...}]}."""
    spec = json.loads(path.read_text())
    ids = set()
    for m in spec["mutations"]:
        missing = [f for f in FIELDS if f not in m]
        if missing:
            raise SystemExit(f"error: mutation {m.get('id', '?')} in {path} lacks {', '.join(missing)}")
        if m["id"] in ids:
            raise SystemExit(f"error: mutation id {m['id']} appears twice in {path}; ids must be unique")
        ids.add(m["id"])
        if m["file"] not in spec["test_files"]:
            raise SystemExit(f"error: {m['id']} mutates {m['file']}, which has no entry in test_files of {path}")
        if "equivalent" in m and not (isinstance(m["equivalent"], str) and m["equivalent"].strip()):
            raise SystemExit(f"error: mutation {m['id']} in {path}: 'equivalent' must be a non-empty reason")
    return spec


def apply_mutation(source: str, original: str, replacement: str, mutation_id: str) -> str:
    """`source` with the single occurrence of `original` replaced; an error unless it occurs exactly once."""
    count = source.count(original)
    if count != 1:
        raise ValueError(f"mutation {mutation_id}: its original snippet occurs {count} times (must be exactly once)")
    if original == replacement:
        raise ValueError(f"mutation {mutation_id}: the replacement equals the original")
    return source.replace(original, replacement)


def copy_repository(dest: Path) -> None:
    """Copy what the fast tests need (no caches, no data, no runs) into `dest`."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis", "runs", "datasets")
    for path in ROOT.glob("*.py"):
        shutil.copy2(path, dest / path.name)
    shutil.copy2(ROOT / "pytest.ini", dest / "pytest.ini")
    for name in COPIED_DIRS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dest / name, ignore=ignore)


def first_failure(output: str) -> str:
    """The first 'FAILED ...' or 'ERROR ...' line of a pytest summary, shortened."""
    for line in output.splitlines():
        if line.startswith(("FAILED", "ERROR")):
            return line[:140]
    tail = [line for line in output.strip().splitlines() if line.strip()]
    return tail[-1][:140] if tail else ""


def failing_tests(output: str) -> List[str]:
    """The node ids of pytest's 'FAILED <id> - ...' / 'ERROR <id> - ...' summary lines."""
    ids = []
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            ids.append(line.split(" ", 1)[1].split(" - ", 1)[0].strip())
    return ids


def run_tests(
    workdir: Path, test_files: List[str], timeout: float, stop_first: bool = True, deselect: List[str] = ()
) -> Outcome:
    """Run the fast tests in `workdir`; pytest's exit code 1 (failures) or 2 (errors) means caught.

    No bytecode is written (a mutation of the same size within the same second would otherwise
    reuse a stale .pyc). JAX's persistent compilation cache, private to this run, is keyed by the
    compiled program, so the code a mutation leaves unchanged compiles once for all mutations.
    """
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *(["-x"] if stop_first else []),
        "-q",
        "-m",
        "not e2e",
        "-p",
        "no:cacheprovider",
        *[a for d in deselect for a in ("--deselect", d)],
        *test_files,
    ]
    env = {
        **os.environ,
        "PYTHONDONTWRITEBYTECODE": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "JAX_COMPILATION_CACHE_DIR": str(workdir / ".jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    t0 = time.time()
    try:
        out = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Outcome(True, "timeout", time.time() - t0, f"no result within {timeout:.0f} s")
    seconds = time.time() - t0
    if out.returncode == 0:
        return Outcome(False, "survived", seconds, "")
    if out.returncode in (1, 2):
        detail = first_failure(out.stdout) if stop_first else "\n".join(failing_tests(out.stdout))
        return Outcome(True, "caught", seconds, detail)
    return Outcome(False, "error", seconds, f"pytest exit code {out.returncode}: {first_failure(out.stdout + out.stderr)}")


def failing_tests_of(baseline: Outcome) -> List[str]:
    """The node ids that failed in an unmutated run (its detail lists them)."""
    return baseline.detail.splitlines() if baseline.status == "caught" else []


def select(spec: dict, files: List[str], only: List[str]) -> List[dict]:
    """The mutations of `files` (all if empty) and with the ids in `only` (all if empty)."""
    known = {m["id"] for m in spec["mutations"]}
    unknown = [i for i in only if i not in known]
    if unknown:
        raise SystemExit(f"error: unknown mutation id(s) {', '.join(unknown)}; see the ids in {MUTATIONS}")
    bad_files = [f for f in files if f not in spec["test_files"]]
    if bad_files:
        raise SystemExit(f"error: no mutations for {', '.join(bad_files)}; files: {', '.join(spec['test_files'])}")
    return [m for m in spec["mutations"] if (not files or m["file"] in files) and (not only or m["id"] in only)]


def existing_tests(spec: dict, file: str, workdir: Path) -> List[str]:
    """The tests listed for `file` (paths, or pytest node ids path::test[param]) whose file exists;
    a missing one is reported, not run."""
    listed = spec["test_files"][file]
    present = [t for t in listed if (workdir / t.split("::")[0]).is_file()]
    for t in listed:
        if t not in present:
            print(f"warning: {t} (listed for {file}) does not exist; running without it", flush=True)
    return present


def is_equivalent(m: dict) -> bool:
    """Marked as unable to change behaviour on valid input (its 'equivalent' field gives the reason)."""
    return bool(m.get("equivalent"))


def score_table(results: List[tuple]) -> str:
    """Per-file and overall caught / total as text lines."""
    per_file: Dict[str, List[bool]] = {}
    for m, outcome in results:
        per_file.setdefault(m["file"], []).append(outcome.caught)
    lines = []
    for file, caught in per_file.items():
        lines.append(f"{file:<12} {sum(caught):>3} / {len(caught):<3} = {sum(caught) / len(caught):.0%}")
    total = [c for caught in per_file.values() for c in caught]
    if total:
        lines.append(f"{'overall':<12} {sum(total):>3} / {len(total):<3} = {sum(total) / len(total):.0%}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", action="append", default=[], help="only the mutations of this algorithm file (repeatable)")
    parser.add_argument("--only", action="append", default=[], help="only the mutation with this id (repeatable)")
    parser.add_argument("--min-score", type=float, default=0.9, help="exit 1 when the caught fraction is below this")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per mutation (default: 4x the unmutated run of that file, at least 120)",
    )
    parser.add_argument("--check", action="store_true", help="only check that every original snippet occurs exactly once")
    parser.add_argument(
        "--run-equivalent", action="store_true", help="also run the mutations marked equivalent (reported, never scored)"
    )
    parser.add_argument("--mutations", type=Path, default=MUTATIONS, help="the mutation list (JSON)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.min_score <= 1.0:
        raise SystemExit(f"error: --min-score must be in [0, 1], got {args.min_score}")

    spec = load_spec(args.mutations)
    chosen = select(spec, args.file, args.only)
    sources = {f: (ROOT / f).read_text() for f in {m["file"] for m in chosen}}
    for m in chosen:  # every snippet must apply before anything runs
        try:
            apply_mutation(sources[m["file"]], m["original"], m["replacement"], m["id"])
        except ValueError as e:
            raise SystemExit(f"error: {e} in {m['file']}; update {args.mutations}") from None
    if args.check:
        print(f"{len(chosen)} mutations apply cleanly ({sum(map(is_equivalent, chosen))} marked equivalent)")
        return 0
    equivalent = [m for m in chosen if is_equivalent(m)]
    if not args.run_equivalent:
        chosen = [m for m in chosen if not is_equivalent(m)]

    results, equivalent_results, unscored = [], [], []
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        workdir = Path(tmp)
        copy_repository(workdir)
        for file in dict.fromkeys(m["file"] for m in chosen):
            tests = existing_tests(spec, file, workdir)
            if not tests:
                print(f"error: none of the test files listed for {file} exists; {file} is not scored", flush=True)
                unscored.append(file)
                continue
            cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            baseline = run_tests(workdir, tests, args.timeout or 1800, stop_first=False)
            cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
            print(
                f"{file}: unmutated fast tests {'fail' if baseline.caught else 'pass'} in {baseline.seconds:.0f} s wall, "
                f"{cpu:.0f} s CPU ({' '.join(tests)})",
                flush=True,
            )
            broken = failing_tests_of(baseline)
            if baseline.status in ("timeout", "error") or (baseline.caught and not broken):
                print(
                    f"error: the fast tests of {file} do not run cleanly without any mutation ({baseline.detail}); "
                    f"{file} is not scored",
                    flush=True,
                )
                unscored.append(file)
                continue
            for node in broken:  # failing before any mutation: they cannot tell a mutation apart
                print(f"warning: {node} fails without any mutation; left out of {file}'s runs", flush=True)
            timeout = args.timeout or max(120.0, 4 * baseline.seconds)
            for m in (m for m in chosen if m["file"] == file):
                target = workdir / file
                target.write_text(apply_mutation(sources[file], m["original"], m["replacement"], m["id"]))
                try:
                    outcome = run_tests(workdir, tests, timeout, deselect=broken)
                finally:
                    target.write_text(sources[file])
                (equivalent_results if is_equivalent(m) else results).append((m, outcome))
                print(
                    f"  {outcome.status:<8} {outcome.seconds:5.0f} s  {m['id']:<34} {outcome.detail or m['description']}"
                    + (" [marked equivalent: not scored]" if is_equivalent(m) else ""),
                    flush=True,
                )

    print("\nsurviving mutations:")
    for m, outcome in results:
        if not outcome.caught:
            print(
                f"  {m['id']} ({m['file']}, {m['bug_class']}): {m['description']}"
                + (f" [{outcome.detail}]" if outcome.status == "error" else "")
            )
    if equivalent:
        ran = {m["id"]: o.status for m, o in equivalent_results}
        print("\nequivalent mutations (not scored):")
        for m in equivalent:
            print(f"  {m['id']} ({m['file']}, {ran.get(m['id'], 'not run')}): {m['equivalent']}")
    print("\nscore (caught / total, equivalent mutations left out):")
    print(score_table(results))
    if unscored:
        print(f"not scored (their fast tests fail or are missing): {', '.join(unscored)}")
    score = sum(o.caught for _, o in results) / max(1, len(results))
    if score < args.min_score:
        print(f"below --min-score {args.min_score:.0%}")
        return 1
    return 1 if unscored else 0


if __name__ == "__main__":
    sys.exit(main())
