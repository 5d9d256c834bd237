"""Every figure of the reports comes from a kept file: the paths the pages name exist, each committed study
report is recomputed from what it keeps, and every verdict is one of holds / inconclusive / does not hold."""

import json
import re
import shutil

import numpy as np
import pytest
from scripts import ROOT

from benchmark import aggregate as agg

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "benchmark" / "results").glob("*.md"))]
# A run file or a results file named in a page: runs/..., benchmark/results/... (also as ../benchmark/results/...).
PATH = re.compile(r"(?<![\w./-])((?:\.\./)*(?:benchmark/results|runs)/[^\s`'\"),;|\]]*)")
STUDY_REPORTS = [p for p in sorted((ROOT / "benchmark" / "results").glob("*.json")) if "study" in json.loads(p.read_text())]
VERDICT_WORDS = ("holds", "inconclusive", "does not hold", "not measured")


def named_paths(page):
    """The concrete paths of run and results files a page names (templates such as runs/<run_name> or
    runs/.../results.json left out)."""
    for match in PATH.finditer(page.read_text()):
        path = match.group(1).rstrip(".:")
        bare_folder = path.lstrip("./").rstrip("/") in ("runs", "benchmark/results")
        if not bare_folder and not re.search(r"[<>{}*]|\.\.\.", path):
            yield path


def test_every_run_or_results_file_a_page_names_exists():
    missing = [
        f"{page.relative_to(ROOT)} -> {path}"
        for page in PAGES
        for path in named_paths(page)
        # runs/ is git-ignored, so a file there is missing from a clean checkout even where this machine has it.
        if path.startswith("runs/") or not ((page.parent if path.startswith("..") else ROOT) / path).exists()
    ]
    assert not missing, "pages name files the repository does not have: " + "; ".join(missing)


def test_the_path_finder_sees_paths_in_prose_code_and_links_but_not_templates(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "see `runs/catch__x__0__1/results.json`, [t](../benchmark/results/t.md) and benchmark/results/a.md. "
        "Not runs/<run_name>/checkpoint.msgpack, runs/.../results.json, benchmark/results/{study}_{budget} "
        "nor the folder runs/ itself."
    )
    assert list(named_paths(page)) == [
        "runs/catch__x__0__1/results.json",
        "../benchmark/results/t.md",
        "benchmark/results/a.md",
    ]


@pytest.mark.parametrize("report", STUDY_REPORTS, ids=lambda p: p.stem)
def test_a_study_report_is_recomputed_from_the_files_it_keeps(report):
    # Rows with every seed's history: the runs they name are kept files that give the stored final IQM again.
    # Rows read back from their intervals: recomputing every stored interval from the seeds gives it again.
    kept = json.loads(report.read_text())
    reps = kept["settings"]["bootstrap_reps"]
    for row in (r for r in kept["rows"] if not r["missing"]):
        seeds = row["per_seed"]
        if seeds["aligned"]:
            runs = [
                json.loads(
                    ((ROOT / f"{run}.json") if (ROOT / f"{run}.json").is_file() else ROOT / run / "results.json").read_text()
                )
                for run in row["runs"]
            ]
            runs = agg.join_seed_runs(runs)  # a study that runs each seed alone names every seed's run
            assert agg.iqm_with_ci(agg.final_scores(runs), reps) == pytest.approx(row["iqm"], abs=1e-12)
            assert {r["env_id"]: r["final_returns"] for r in runs} == seeds["final_returns"]
        else:
            assert seeds["source"].startswith("read back") and len(kept["envs"]) == 1
            scores = np.array(agg.seed_scores(seeds, "final"))
            assert agg.iqm_with_ci(scores, reps) == pytest.approx(row["iqm"], abs=1e-9)
            assert agg.iqm_with_ci(agg.seed_scores(seeds, "first"), reps) == pytest.approx(row["curve"]["iqm"][0], abs=1e-9)
        assert all(c["verdict"] in VERDICT_WORDS for c in kept["claims"])


def claim_verdicts(page):
    """The verdict column of every claims table of a page (a table whose header ends in '| verdict |')."""
    verdicts, in_table = [], False
    for line in page.read_text().splitlines():
        if line.startswith("|") and line.rstrip().endswith("| verdict |"):
            in_table = True
        elif in_table and line.startswith("|") and not line.startswith("|---"):
            verdicts.append(line.rstrip().rstrip("|").rsplit("|", 1)[1].strip())
        elif not line.startswith("|"):
            in_table = False
    return verdicts


def test_every_verdict_in_the_reports_and_docs_is_holds_inconclusive_or_does_not_hold():
    pages = [ROOT / "docs" / "reproduction.md", *sorted((ROOT / "benchmark" / "results").glob("*.md"))]
    found = {page.name: claim_verdicts(page) for page in pages}
    assert found["reproduction.md"] and found["table2_50k.md"]
    odd = [f"{name}: {v}" for name, verdicts in found.items() for v in verdicts if v.strip("*") not in VERDICT_WORDS]
    assert not odd, "verdicts outside holds / inconclusive / does not hold: " + "; ".join(odd)


def claims_summary_rows():
    """(report stem, claim, verdict) of every row of docs/reproduction.md's claims summary."""
    page = (ROOT / "docs" / "reproduction.md").read_text()
    section = page[page.index("## The paper's claims, as measured here") :]
    section = section[: section.index("\n## ", 1)]
    rows = set()
    for line in section.splitlines():
        match = re.match(r"\| \[[^\]]*\]\(\.\./benchmark/results/([^)]+)\.md\) \|[^|]*\| ([^|]*) \| (.*) \| ([^|]*) \|$", line)
        if match:
            rows.add((match.group(1), match.group(2).strip(), match.group(4).strip()))
    return rows


def test_the_claims_summary_lists_every_claim_of_every_kept_report_with_its_verdict():
    rows = claims_summary_rows()
    assert len(rows) > 30
    missing = [
        f"{report.stem}: {claim['claim']} ({claim['verdict']})"
        for report in STUDY_REPORTS
        for claim in json.loads(report.read_text())["claims"]
        if (report.stem, claim["claim"], claim["verdict"]) not in rows
    ]
    assert not missing, "docs/reproduction.md's claims summary lacks: " + "; ".join(missing)


@pytest.mark.parametrize("name", ["table2_10k", "lr_decay_50k"])
def test_regenerating_a_committed_report_from_its_json_gives_it_again(name, tmp_path):
    # One report read back from its intervals (no run files kept) and one recomputed from its kept run records.
    from benchmark import reproduce

    shutil.copy(ROOT / "benchmark" / "results" / f"{name}.json", tmp_path)
    reproduce.rewrite_from_json(str(tmp_path / f"{name}.json"))
    assert (tmp_path / f"{name}.md").read_text() == (ROOT / "benchmark" / "results" / f"{name}.md").read_text()
