"""benchmark/time_to_score.py on hand-made runs: the updates and training seconds at which a series first reaches
a fraction of the best final IQM, the ratio to the reference series, and the rules that keep runs of other
hardware out of the ratios."""

import json

import pytest

from benchmark import time_to_score as tts


def run(run_dir, returns, wall, eval_seconds, seed=0, device="1 x cpu (cpu)"):
    """One catch run's results.json: returns[e][seed] at updates 10, 20, 30."""
    return {
        "env_id": "catch",
        "status": "finished",
        "args": {"seed": seed, "num_seeds": len(returns[0])},
        "final_returns": list(returns[-1]),
        "normalized_scores": [1.0 if v == 1.0 else 0.0 for v in returns[-1]],
        "eval_history": {"steps": [10, 20, 30], "returns": returns, "wall_clock_s": wall, "eval_seconds": eval_seconds},
        "wall_clock_s": wall[-1],
        "devices": [device],
        "run_dir": run_dir,
    }


def write(tmp_path, monkeypatch, runs_by_series):
    """A kept report naming the runs of each series, the runs kept as records under tmp_path."""
    records = tmp_path / "records"
    records.mkdir()
    monkeypatch.setattr(tts, "RECORDS", records)
    monkeypatch.setattr(tts, "ROOT", tmp_path)
    rows = []
    for series, runs in runs_by_series.items():
        for r in runs:
            (records / f"{r['run_dir']}.json").write_text(json.dumps(r))
        rows.append({"series": series, "x": None, "missing": False, "runs": [f"runs/{r['run_dir']}" for r in runs]})
    report = tmp_path / "study_30.json"
    report.write_text(json.dumps({"study": "study", "envs": ["catch"], "machine": "test", "rows": rows}))
    return report


def test_time_to_score_reads_the_first_evaluation_at_each_level_and_the_ratio_of_training_seconds(tmp_path, monkeypatch):
    # catch normalises 0.0 to 0.40 and 1.0 to 1.0 (random -0.667, best 1.0). ROSMO: 0.40 at 10 updates, 1.0 from
    # 20; MZU, three runs of one seed each: 0.40, 0.40, then 1.0 at 30. Training seconds: wall-clock less the
    # evaluations so far; MZU's three seeds one after another (10 + 10 + 10 s per evaluation).
    rosmo = run("catch__rosmo", [[0.0] * 3, [1.0] * 3, [1.0] * 3], [10.0, 20.0, 30.0], [1.0, 1.0, 1.0])
    mzu = [run(f"catch__mzu{s}", [[0.0], [0.0], [1.0]], [20.0, 40.0, 60.0], [2.0, 2.0, 2.0], seed=s) for s in (2, 0, 1)]
    report = write(tmp_path, monkeypatch, {"rosmo": [rosmo], "mzu": mzu})
    tts.main(tts.Args(report=str(report), series=["rosmo", "mzu"], thresholds=[0.3, 0.9, 1.0], bootstrap_reps=200))
    out = json.loads((tmp_path / "study_30_time_to_score.json").read_text())
    assert out["best_final_iqm"] == pytest.approx(1.0)
    low, high, best = out["thresholds"]
    assert best["reached"]["rosmo"][0] == 20  # reaching a level means at or above it
    # 0.3: both at their first evaluation (0.40 >= 0.3): ROSMO 10 updates, 10 - 1 = 9 s; MZU 3 x (20 - 2) = 54 s.
    assert low["reached"]["rosmo"] == [10, pytest.approx(9.0)] and low["reached"]["mzu"] == [10, pytest.approx(54.0)]
    assert low["time_ratio_to_reference"]["mzu"] == pytest.approx(6.0)
    # 0.9: ROSMO at 20 updates (20 - 2 = 18 s), MZU at 30 (3 x (60 - 6) = 162 s): 9x.
    assert high["reached"]["rosmo"] == [20, pytest.approx(18.0)] and high["reached"]["mzu"] == [30, pytest.approx(162.0)]
    assert high["time_ratio_to_reference"]["mzu"] == pytest.approx(9.0)
    assert out["curves"]["mzu"]["seconds"] == pytest.approx([54.0, 108.0, 162.0])
    md = (tmp_path / "study_30_time_to_score.md").read_text()
    assert "| mzu | cpu (cpu) | 1.000 [1.000, 1.000] | 0.2 | 10, 54 s (x6.00 of rosmo) | 30, 162 s (x9.00 of rosmo) |" in md
    assert (tmp_path / "study_30_time_to_score.png").stat().st_size > 0


def test_a_series_on_other_hardware_is_shown_but_left_out_of_the_ratios(tmp_path, monkeypatch):
    rosmo = run("catch__rosmo", [[0.0], [1.0], [1.0]], [10.0, 20.0, 30.0], [1.0, 1.0, 1.0])
    mzu = run("catch__mzu", [[1.0], [1.0], [1.0]], [5.0, 10.0, 15.0], [0.0, 0.0, 0.0], device="1 x NVIDIA H200 (gpu)")
    report = write(tmp_path, monkeypatch, {"rosmo": [rosmo], "mzu": [mzu]})
    tts.main(tts.Args(report=str(report), series=["rosmo", "mzu"], thresholds=[0.9], bootstrap_reps=200))
    out = json.loads((tmp_path / "study_30_time_to_score.json").read_text())
    (row,) = out["thresholds"]
    assert row["reached"]["mzu"] == [10, pytest.approx(5.0)] and row["time_ratio_to_reference"]["mzu"] is None
    assert "(other hardware: no ratio)" in (tmp_path / "study_30_time_to_score.md").read_text()


def test_a_report_without_the_series_stops_with_one_line(tmp_path, monkeypatch):
    rosmo = run("catch__rosmo", [[0.0], [1.0], [1.0]], [10.0, 20.0, 30.0], [1.0, 1.0, 1.0])
    report = write(tmp_path, monkeypatch, {"rosmo": [rosmo]})
    with pytest.raises(SystemExit, match="no finished rows for mzu"):
        tts.main(tts.Args(report=str(report), series=["rosmo", "mzu"]))
