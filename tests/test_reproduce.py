"""benchmark/reproduce.py end to end on a tiny budget: runs, tables that match the runs, resumption."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scripts import ROOT


@pytest.mark.e2e
def test_table2_study_runs_aggregates_its_runs_and_reuses_them(catch_data, tmp_path):
    out_dir = tmp_path / "results"
    cmd = [
        sys.executable,
        "-m",
        "benchmark.reproduce",
        "--study",
        "table2",
        "--algos",
        "bc",
        "--envs",
        "catch",
        "--num-seeds",
        "2",
        "--total-steps",
        "60",
        "--eval-every",
        "30",
        "--eval-episodes",
        "2",
        "--bootstrap-reps",
        "200",
        "--workdir",
        str(tmp_path),
        "--out-dir",
        str(out_dir),
    ]
    env = {**os.environ, "ROSMO_DATA_DIR": str(catch_data), "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert first.stdout.count("running ") == 1 and "total wall-clock time" in first.stdout
    table = json.loads((out_dir / "table2_catch_60.json").read_text())
    assert [r["series"] for r in table["rows"]] == ["bc"]
    for row in table["rows"]:
        (run_dir,) = row["runs"]
        results = json.loads((tmp_path / run_dir / "results.json").read_text())
        assert results["algo"] == row["series"] and results["total_steps"] == 60
        scores = np.asarray(results["normalized_scores"])[:, None]
        # The table is computed from the runs it names: the IQM of 2 values trims floor(2 / 4) = 0 of
        # them at each end, so it is their plain mean.
        assert scores.shape == (2, 1) and row["iqm"][0] == pytest.approx((scores[0, 0] + scores[1, 0]) / 2, rel=1e-12)
        assert row["curve"]["steps"] == [30, 60]
        assert row["returns"]["catch"][0] == np.mean(results["final_returns"])
    md = (out_dir / "table2_catch_60.md").read_text()
    assert "| bc |" in md and "## The paper's claims against this run" in md
    assert (out_dir / "table2_catch_60.png").stat().st_size > 0 and (out_dir / "table2_catch_60_curves.png").stat().st_size > 0
    # A second invocation finds the run finished and runs nothing.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.count("reusing ") == 1 and "running " not in again.stdout


def test_dry_run_lists_every_configuration_of_a_study(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "benchmark.reproduce",
        "--study",
        "search_budget",
        "--envs",
        "catch",
        "--simulations",
        "4",
        "8",
        "--depths",
        "1",
        "0",
        "--workdir",
        str(tmp_path),
        "--dry-run",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("to run: python mzu.py") == 4
    assert "--num-simulations 8 --max-depth 1" in out.stdout and not (tmp_path / "runs" / "catch").exists()


@pytest.mark.e2e
def test_a_study_continues_an_unfinished_run_from_its_checkpoint(catch_data, tmp_path):
    env = {**os.environ, "ROSMO_DATA_DIR": str(catch_data), "TF_CPP_MIN_LOG_LEVEL": "3"}
    flags = "--env-id catch --num-seeds 2 --seed 0 --total-steps 60 --eval-every 30 --eval-episodes 2".split()
    # A run stopped at update 30 of 60 with its checkpoint there (as a killed session leaves one): made by
    # training 30 updates with --save-model, then recording the 60-update budget it was started with.
    short = [*flags[:-6], "--total-steps", "30", *flags[-4:], "--save-model", "--exp-name", "repro_table2_bc_0"]
    first = subprocess.run(
        [sys.executable, str(ROOT / "bc.py"), *short], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").glob("catch__repro_table2_bc_0__*")
    saved = json.loads((run_dir / "args.json").read_text())
    (run_dir / "args.json").write_text(json.dumps({**saved, "total_steps": 60}))
    results = json.loads((run_dir / "results.json").read_text())
    results.update(status="interrupted", args={**results["args"], "total_steps": 60})
    (run_dir / "results.json").write_text(json.dumps(results))

    cmd = [sys.executable, "-m", "benchmark.reproduce", "--study", "table2", "--algos", "bc"]
    cmd += [*"--envs catch --num-seeds 2 --total-steps 60 --eval-every 30 --eval-episodes 2 --bootstrap-reps 100".split()]
    cmd += ["--workdir", str(tmp_path), "--out-dir", str(tmp_path / "results")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "continuing bc.py" in out.stdout and "from update 30" in out.stdout and "running " not in out.stdout
    assert [p.name for p in (tmp_path / "runs").glob("catch__*")] == [run_dir.name]  # no second run directory
    done = json.loads((run_dir / "results.json").read_text())
    assert done["status"] == "finished" and done["total_steps"] == 60 and done["eval_history"]["steps"] == [30, 60]
    assert len(done["devices"]) == 1 and " x " in done["devices"][0] and "JAX" in done["devices"][0]


@pytest.mark.e2e
def test_a_run_that_cannot_continue_is_marked_and_the_study_starts_it_afresh(catch_data, tmp_path):
    from benchmark.runner import RESUME_FAILED, resolve_args

    flags = "--env-id catch --num-seeds 2 --seed 0 --total-steps 60 --eval-every 30 --eval-episodes 2".split()
    # An unfinished run of the configuration whose checkpoint is damaged: --resume refuses it with one line.
    broken = tmp_path / "runs" / "catch__repro_table2_bc_0__0__1_000000"
    broken.mkdir(parents=True)
    args = {**resolve_args("bc", flags), "exp_name": "repro_table2_bc_0"}
    (broken / "args.json").write_text(json.dumps(args))
    (broken / "results.json").write_text(json.dumps({"algo": "bc", "status": "interrupted", "total_steps": 30, "args": args}))
    (broken / "checkpoint.msgpack").write_bytes(b"not a checkpoint")

    env = {**os.environ, "ROSMO_DATA_DIR": str(catch_data), "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "benchmark.reproduce", "--study", "table2", "--algos", "bc"]
    cmd += [*"--envs catch --num-seeds 2 --total-steps 60 --eval-every 30 --eval-episodes 2 --bootstrap-reps 100".split()]
    cmd += ["--workdir", str(tmp_path), "--out-dir", str(tmp_path / "results")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "continuing bc.py" in out.stdout and "starting it afresh" in out.stdout and "running bc.py" in out.stdout
    assert (broken / RESUME_FAILED).is_file()
    (fresh,) = [p for p in (tmp_path / "runs").glob("catch__*") if p != broken]
    assert json.loads((fresh / "results.json").read_text())["status"] == "finished"
    # The next invocation reuses the fresh run and leaves the marked one alone.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert again.returncode == 0 and "reusing bc.py" in again.stdout and "continuing" not in again.stdout


def test_a_study_runs_the_free_configurations_before_waiting_for_one_another_study_holds(tmp_path, monkeypatch):
    # No training: the scheduling of run_configs alone, with the runs faked. Configuration 0 is held by
    # "another study" (a thread holding its lock) until this study has run configuration 1; a study that
    # waited in order would never get there (the thread would time out and the test fail).
    import threading

    from benchmark import runner

    flags = ["--env-id", "catch", "--total-steps", "10", "--eval-every", "10"]
    configs = [runner.Config("bc", "catch", [*flags, "--seed", str(seed)], "bc") for seed in (0, 1)]
    finished, order = {}, []
    ran_second = threading.Event()

    def fake_run(i, total, c, exp_prefix, workdir, logs, lock):
        order.append(c.flags[-1])
        finished[c.flags[-1]] = {"seed": c.flags[-1]}
        if c.flags[-1] == "1":
            ran_second.set()
        return finished[c.flags[-1]]

    monkeypatch.setattr(runner, "_run_config", fake_run)
    monkeypatch.setattr(runner, "find_finished", lambda algo, f, runs, records=None: finished.get(f[-1]))
    logs = tmp_path / "runs" / "benchmark_logs"
    logs.mkdir(parents=True)
    held = threading.Event()

    def other_study():  # runs configuration 0 itself, after this study has run configuration 1
        with runner.config_lock("bc", configs[0].flags, logs) as lock:
            assert lock is not None
            held.set()
            assert ran_second.wait(timeout=60), "the study waited for the held configuration first"
            finished["0"] = {"seed": "0", "by": "the other study"}

    other = threading.Thread(target=other_study)
    other.start()
    assert held.wait(timeout=60)
    results = runner.run_configs(configs, "test", workdir=tmp_path)
    other.join(timeout=60)
    assert order == ["1"]  # it ran only the free one, then reused the other study's run of configuration 0
    assert results == [{"seed": "0", "by": "the other study"}, {"seed": "1"}]


def test_a_study_whose_code_changed_under_it_stops_with_one_line_saying_to_run_it_again(monkeypatch):
    # A running study keeps the common/ modules it imported; an algorithm file changed on disk since may
    # import a name they lack. The study stops with one line instead of a traceback.
    import importlib

    from benchmark import runner

    def stale(name):
        raise ImportError(f"cannot import name 'logits_to_scalar' from 'common.networks' (while importing {name})")

    monkeypatch.setattr(importlib, "import_module", stale)
    with pytest.raises(SystemExit) as stopped:
        runner.resolve_args("rosmo", ["--env-id", "catch"])
    message = str(stopped.value)
    assert message.startswith("error: cannot import rosmo.py (cannot import name 'logits_to_scalar'") and "\n" not in message
    assert "run the study again: it reuses finished runs and continues unfinished ones" in message


def row(series, x, returns, env_id="catch"):
    """A measured row of a study on one task with each seed's final return `returns` (None: not run)."""
    if returns is None:
        return {"series": series, "x": x, "missing": True}
    seeds = {"steps": [10], "returns": {env_id: [list(returns)]}, "final_returns": {env_id: list(returns)}, "aligned": True}
    return {"series": series, "x": x, "missing": False, "iqm": (float(np.mean(returns)),) * 3, "per_seed": seeds}


def test_a_claim_about_the_spread_over_a_study_waits_until_every_point_is_measured():
    # With only MZU's noise-0 run finished its spread is 0, which would read as "MZU is steadier": the verdict
    # must be "not measured" until all four noise levels of both series are in, then the interval decides.
    from benchmark import reproduce

    noises = (0.0, 0.1, 0.3, 0.5)
    rosmo = [row("rosmo", x, [v - 0.01, v, v + 0.01]) for x, v in zip(noises, (0.7, 0.68, 0.67, 0.66))]
    args = reproduce.Args(study="noise", noises=noises, bootstrap_reps=500)
    partial = rosmo + [row("mzu", x, v) for x, v in zip(noises, ([1.0] * 3, None, None, None))]
    steadier, above = reproduce.claims("noise", partial, args)
    assert steadier[1:] == ("-", "not measured") and above[2] == "not measured"
    mzu = [row("mzu", x, [v - 0.01, v, v + 0.01]) for x, v in zip(noises, (0.98, 0.4, 0.0, -0.4))]
    steadier, above = reproduce.claims("noise", rosmo + mzu, args)
    assert steadier[2] == "holds" and steadier[1].startswith("spread rosmo ")
    # ROSMO is below MZU at noise 0 (every seed) and above at the noisy levels: one comparison against the claim.
    assert above[2] == "does not hold"
    varying = [row("rosmo", x, [v - 0.01, v, v + 0.01]) for x, v in zip(noises, (0.9, 0.6, 0.3, 0.0))]
    flat = varying + [row("mzu", x, [0.98] * 3) for x in noises]
    assert reproduce.claims("noise", flat, args)[0][2] == "does not hold"  # ROSMO's spread is the larger, surely


def test_a_claim_whose_intervals_overlap_is_inconclusive_never_holds():
    # The point estimates order as claimed (MZU-Q's mean return 0.60 above MZU's 0.50), but the seeds overlap: the interval of
    # the difference contains 0, so the verdict is "inconclusive"; separated seeds make it "holds", and the
    # reverse order "does not hold".
    from benchmark import reproduce
    from benchmark.claims import VERDICTS, from_interval

    args = reproduce.Args(study="ablation_sampling", bootstrap_reps=1000)
    rosmo = row("ROSMO sampled (N=4)", None, [0.9, 0.9, 0.9])

    def verdict(mzu_q, mzu):
        rows = [rosmo, row("MZU (N=4)", None, mzu), row("MZU-Q (N=4)", None, mzu_q)]
        return reproduce.claims("ablation_sampling", rows, args)[0]

    claim, measured, overlap = verdict([0.0, 0.9, 0.9], [0.5, 0.5, 0.5])  # catch returns; normalised: / 1.667
    assert overlap == "inconclusive" and "difference +0.0600 [" in measured and "P(mzu_q > mzu) 0.667 [" in measured
    assert verdict([0.8, 0.9, 1.0], [0.1, 0.2, 0.3])[2] == "holds"
    assert verdict([0.1, 0.2, 0.3], [0.8, 0.9, 1.0])[2] == "does not hold"
    assert verdict([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])[2] == "inconclusive"  # a tie is no effect either way
    assert from_interval((-0.1, -0.2, -1e-15)) == "inconclusive"  # rounding in the sums is no effect
    assert from_interval((0.1, 0.0, 0.2), at_least=True) == "holds"  # an "at least as good" claim
    assert all(v in (*VERDICTS, "not measured") for _, _, v in reproduce.claims("ablation_sampling", [rosmo], args))


def test_verdicts_read_each_seeds_late_average_when_every_row_has_its_history():
    # MZU-Q ends above MZU in every seed, but over the last five evaluations it is below in every seed: with
    # the histories kept the verdict reads the late average; without them (rows read back, not aligned) the final.
    from benchmark import reproduce

    def history_row(series, late, final):
        seeds = {
            "steps": [1, 2, 3, 4, 5],
            "returns": {"catch": [late] * 4 + [final]},
            "final_returns": {"catch": final},
            "aligned": True,
        }
        return {"series": series, "x": None, "missing": False, "iqm": (0.0, 0.0, 0.0), "per_seed": seeds}

    rows = [
        history_row("MZU-Q (N=4)", [0.0, 0.0, 0.1], [1.0, 1.0, 0.9]),
        history_row("MZU (N=4)", [0.5, 0.6, 0.6], [0.2, 0.1, 0.0]),
    ]
    args = reproduce.Args(study="ablation_sampling", bootstrap_reps=500)
    assert reproduce.verdict_measure(rows) == "late"
    assert reproduce.claims("ablation_sampling", rows, args)[0][2] == "does not hold"
    assert reproduce.claims("ablation_sampling", rows, args, measure="final")[0][2] == "holds"
    rows[0]["per_seed"]["aligned"] = False
    assert reproduce.verdict_measure(rows) == "final"


def test_table2_claims_wait_for_every_row_and_do_not_rank_rosmo_against_its_own_variant():
    # A claim over Table 2 is "not measured" while any requested row is unfinished; `rosmo-data` (ROSMO with
    # Eq. 11's data advantage) is not one of the methods ROSMO is ranked against.
    from benchmark import reproduce

    args = reproduce.Args(study="table2", bootstrap_reps=500)
    done = [row("rosmo", None, [0.97, 0.98, 0.99]), row("rosmo-data", None, [1.0] * 3), row("crr", None, [0.5, 0.6, 0.7])]
    done.append(row("bc", None, [0.0, 0.1, 0.2]))
    best, beats_bc, eq11 = reproduce.claims("table2", [*done, row("mzu", None, None)], args)
    assert best[2] == "not measured" and beats_bc[2] == "not measured" and "mzu -" in best[1]
    assert eq11[2] == "does not hold"  # the Eq. 11 comparison needs only its two rows
    best, beats_bc, _ = reproduce.claims("table2", [*done, row("mzu", None, [-1.0, 0.9, 0.9])], args)
    assert best[2] == "holds"  # rosmo-data's 1.0 does not count against ROSMO; the MZU comparison overlaps only bc's
    assert beats_bc[2] == "inconclusive"  # MZU's seeds straddle BC's


def test_a_report_regenerated_without_its_runs_takes_them_from_its_kept_json_and_never_drops_them(tmp_path):
    import json

    from benchmark import reproduce

    args = reproduce.Args(study="ablation_sampling", envs=["catch"], num_seeds=3, total_steps=100, eval_every=50)
    args.out_dir = str(tmp_path)
    stem = reproduce.report_stem("ablation_sampling", args, ["catch"])
    kept = [row("ROSMO sampled (N=4)", None, [0.9, 1.0, 1.0]), row("MZU (N=4)", None, [0.1, 0.2, 0.3])]
    stem.with_suffix(".json").write_text(
        json.dumps({"study": "ablation_sampling", "settings": vars(args), "envs": ["catch"], "rows": kept})
    )
    # No run found on this machine: each configuration the kept report measured comes back from it.
    now = [row("ROSMO sampled (N=4)", None, None), row("MZU (N=4)", None, None), row("MZU-Q (N=4)", None, None)]
    merged = reproduce.keep_measured(now, stem, args, ["catch"])
    assert [r["missing"] for r in merged] == [False, False, True]
    assert merged[0]["per_seed"] == kept[0]["per_seed"] and merged[1]["per_seed"] == kept[1]["per_seed"]
    # A report of other settings (here 5 seeds) that would show them as not run stops instead and writes nothing.
    other = reproduce.Args(**{**vars(args), "num_seeds": 5})
    with pytest.raises(SystemExit, match="measures 2 configuration.* nothing written"):
        reproduce.keep_measured(now, stem, other, ["catch"])
    # ... as does a report that leaves a measured configuration out.
    with pytest.raises(SystemExit, match=r"MZU \(N=4\)"):
        reproduce.keep_measured(now[:1], stem, args, ["catch"])


GUMBEL_STUDY = "--envs cartpole mountain_car --num-seeds 3 --total-steps 50000 --lr-decay-steps 25000".split()
GUMBEL_STUDY += "--searches muzero gumbel --simulations 2 4 --depths 0".split()


def test_the_search_budget_study_with_gumbel_runs_both_searches_at_each_budget_and_rosmo_once(tmp_path):
    cmd = [sys.executable, "-m", "benchmark.reproduce", "--study", "search_budget", *GUMBEL_STUDY]
    out = subprocess.run([*cmd, "--workdir", str(tmp_path), "--dry-run"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    runs = [line.split("to run: python ", 1)[1] for line in out.stdout.splitlines() if "to run: python " in line]
    # 2 searches x 2 budgets x 2 tasks of MZU, and ROSMO on the 2 tasks: 10 runs.
    assert "== search_budget: 10 runs (3 seeds each) ==" in out.stdout and len(runs) == 10
    mzu, rosmo = [r for r in runs if r.startswith("mzu.py")], [r for r in runs if r.startswith("rosmo.py")]
    assert len(mzu) == 8 and len(rosmo) == 2
    assert sum("--search gumbel" in r for r in mzu) == 4 and not any("--search" in r for r in rosmo)
    for n in (2, 4):
        assert sum(r.endswith(f"--num-simulations {n}") for r in mzu) == 2  # MuZero's: no --search flag
        assert sum(r.endswith(f"--num-simulations {n} --search gumbel") for r in mzu) == 2
    common = "--num-seeds 3 --seed 0 --total-steps 50000 --eval-every 5000 --eval-episodes 20 --lr-decay-steps 25000"
    assert all(common in r for r in runs) and not any("--max-depth" in r for r in runs)
    assert rosmo == [f"rosmo.py --env-id {e} {common}" for e in ("cartpole", "mountain_car")]  # Table 2's ROSMO runs


def test_the_search_budget_study_puts_the_gumbel_flag_on_gumbel_configurations_only():
    from benchmark import reproduce

    args = reproduce.Args(study="search_budget", simulations=[2, 4], depths=[1, 0], searches=["muzero", "gumbel"])
    configs = reproduce.study_configs("search_budget", args, ["catch"])
    series = {(c.series, c.x): c for c in configs}
    assert list(series) == [  # the lowest budget first, each search at it
        *[(f"{s}d={d}", n) for d in ("1", "unlimited") for n in (2, 4) for s in ("", "gumbel ")],
        ("rosmo", None),
    ]
    for (name, _), c in series.items():
        gumbel = c.flags[c.flags.index("--search") + 1] == "gumbel" if "--search" in c.flags else False
        assert gumbel == name.startswith("gumbel") and (c.algo == "rosmo") == (name == "rosmo")
        assert ("--max-depth" in c.flags) == name.endswith("d=1")


def test_the_default_search_budget_study_is_unchanged():
    # The configurations, series names and claims of the MuZero-only study, as before Gumbel's search was added
    # (the committed benchmark/results/search_budget_10k.md was made with them).
    from benchmark import reproduce

    args = reproduce.Args(study="search_budget", num_seeds=3, total_steps=10_000, eval_every=1000, eval_episodes=20)
    configs = reproduce.study_configs("search_budget", args, ["catch"])
    common = ["--env-id", "catch", "--num-seeds", "3", "--seed", "0", "--total-steps", "10000"]
    common += ["--eval-every", "1000", "--eval-episodes", "20"]
    expected = [
        ("mzu", f"d={d or 'unlimited'}", n, [*common, "--num-simulations", str(n), *(["--max-depth", str(d)] if d else [])])
        for d in (1, 2, 0)
        for n in (4, 8, 16, 32)
    ]
    assert [(c.algo, c.series, c.x, c.flags) for c in configs] == expected
    found = reproduce.claims("search_budget", [row(s, x, None) for _, s, x, _ in expected], args)
    assert [c for c, _, _ in found] == [
        "MZU fails to learn with a low simulation budget (N=4 vs N=32, unlimited depth)",
        "with many simulations (N=32) a deep search is worse than a limited depth",
    ]
    assert [v for _, _, v in found] == ["not measured"] * 2


def test_the_gumbel_claims_compare_rosmo_with_each_search_at_every_budget_and_the_searches_at_the_lowest():
    from benchmark import reproduce

    args = reproduce.Args(study="search_budget", simulations=[2, 4], depths=[0], searches=["muzero", "gumbel"])
    args.bootstrap_reps = 500

    def verdicts(muzero, gumbel, rosmo):
        rows = [
            row(f"{p}d=unlimited", n, v) for p, values in (("", muzero), ("gumbel ", gumbel)) for n, v in zip((2, 4), values)
        ]
        return reproduce.claims("search_budget", [*rows, row("rosmo", None, rosmo)], args)

    # ROSMO's seeds above both searches' at both budgets, Gumbel's above MuZero's at N=2 (catch returns).
    found = verdicts(([-1.0, -0.9, -0.8], [0.0, 0.1, 0.2]), ([0.2, 0.3, 0.4], [0.3, 0.4, 0.5]), [0.9, 1.0, 1.0])
    assert [c for c, _, _ in found] == [
        "MZU fails to learn with a low simulation budget (N=2 vs N=4, unlimited depth)",
        "ROSMO beats MCTS at a low budget (MuZero search, unlimited depth, N=2, 4)",
        "ROSMO beats MCTS at a low budget (Gumbel search, unlimited depth, N=2, 4)",
        "Gumbel's search beats MuZero's at N=2 (unlimited depth)",
    ]  # no limited depth among --depths: no claim about one
    assert [v for _, _, v in found] == ["holds"] * 4
    _, muzero, gumbel, searches = found
    assert muzero[1].startswith("N=2: rosmo 0.980 vs muzero ") and "; N=4: rosmo 0.980 vs muzero " in muzero[1]
    assert "P(rosmo > gumbel) 1.000 [" in gumbel[1]
    assert searches[1].startswith("gumbel ") and "difference +" in searches[1] and "P(gumbel > muzero) 1.000 [" in searches[1]
    # Gumbel's seeds at N=4 overlap ROSMO's and MuZero's at N=2 overlap Gumbel's: those claims are inconclusive.
    found = verdicts(([-1.0, 0.3, 0.4], [0.0, 0.1, 0.2]), ([0.2, 0.3, 0.4], [0.5, 0.95, 1.0]), [0.9, 1.0, 1.0])
    assert [v for _, _, v in found[1:]] == ["holds", "inconclusive", "inconclusive"]
    # A budget not yet run leaves the claims that need it not measured.
    rows = [row("d=unlimited", 2, [0.0] * 3), row("gumbel d=unlimited", 2, [0.5] * 3), row("rosmo", None, [1.0] * 3)]
    found = reproduce.claims("search_budget", rows, args)
    assert [v for _, _, v in found] == ["not measured", "not measured", "not measured", "holds"]


def test_the_gumbel_report_gives_each_configurations_updates_per_second_and_draws_rosmo_as_a_reference(tmp_path):
    from benchmark import aggregate as agg
    from benchmark import reproduce
    from common.scores import normalized_score

    def results(final, updates_per_s):
        history = [[r - 0.1 for r in final], list(final)]
        return {
            "env_id": "catch",
            "final_returns": list(final),
            "normalized_scores": [normalized_score("catch", r) for r in final],
            "eval_history": {"steps": [5, 10], "returns": history, "wall_clock_s": [1.0, 2.0]},
            "wall_clock_s": 2.0,
            "updates_per_s": updates_per_s,
            "data": {},
            "run_dir": "runs/catch__x",
        }

    args = reproduce.Args(study="search_budget", envs=["catch"], num_seeds=3, total_steps=10, eval_every=5, eval_episodes=2)
    args.simulations, args.depths, args.searches, args.bootstrap_reps = [2], [0], ["muzero", "gumbel"], 100
    args.out_dir = str(tmp_path)
    rows = [
        agg.summarise_runs("d=unlimited", 2, [results([0.0, 0.2, 0.4], 50.0)], 100),
        agg.summarise_runs("gumbel d=unlimited", 2, [results([0.6, 0.8, 1.0], 40.0)], 100),
        agg.summarise_runs("rosmo", None, [results([1.0, 1.0, 1.0], 200.0)], 100),
    ]
    assert rows[0]["updates_per_s"] == 50.0
    reproduce.write_study("search_budget", args, ["catch"], rows, machine="test")
    md = (tmp_path / "search_budget_catch_10.md").read_text()
    assert "--searches muzero gumbel --simulations 2 --depths 0`" in md
    assert "| IQM last 5 [95% CI] | updates/s (ms per update) |\n|---|---|---|---|---|---|\n" in md
    assert "| gumbel d=unlimited @ 2 | 0.80 +- 0.16 |" in md and md.count(" | 40.0 (25.0) |\n") == 1
    assert " | 200.0 (5.0) |\n" in md and "| Gumbel's search beats MuZero's at N=2 (unlimited depth) |" in md
    assert (tmp_path / "search_budget_catch_10.png").stat().st_size > 0


def atari_row(series, finals):
    """A measured atari_small row: per game each seed's final return (one evaluation), e.g. {"Breakout": [..]}."""
    seeds = {
        "steps": [10_000],
        "returns": {game: [list(v)] for game, v in finals.items()},
        "final_returns": {game: list(v) for game, v in finals.items()},
        "aligned": True,
    }
    return {"series": series, "x": None, "missing": False, "iqm": (0.0,) * 3, "per_seed": seeds}


def test_the_atari_study_judges_each_method_against_the_data_s_raw_mean_game_score(tmp_path):
    # The data's mean comes from the generator's summary (raw game score: Breakout 12.97, Pong -14.76), and the
    # scores are normalised by the game's random and DQN returns (common/scores.py) before they are compared.
    from benchmark import reproduce

    for game, mean in (("Breakout", 12.97), ("Pong", -14.76)):
        (tmp_path / "data" / game).mkdir(parents=True)
        (tmp_path / "data" / game / "behaviour_run_1.json").write_text(json.dumps({"mean_return": mean}))
    args = reproduce.Args(study="atari_small", workdir=str(tmp_path), atari_data_dir="data", bootstrap_reps=500)
    rows = [
        atari_row("rosmo", {"Breakout": [30.0, 32.0, 35.0], "Pong": [-5.0, -4.0, -6.0]}),  # above the data, surely
        atari_row("bc", {"Breakout": [6.0, 7.0, 8.0], "Pong": [-19.0, -18.0, -20.0]}),  # below it, surely
        atari_row("mzu", {"Breakout": [2.0, 40.0, 60.0], "Pong": [-21.0, -3.0, 5.0]}),  # spread across it
    ]
    verdicts = {claim: verdict for claim, _, verdict in reproduce.claims("atari_small", rows, args, "final")}
    assert verdicts["rosmo ends above the data's mean return"] == "holds"
    assert verdicts["bc ends above the data's mean return"] == "does not hold"
    assert verdicts["mzu ends above the data's mean return"] == "inconclusive"
    assert "crr ends above the data's mean return" not in verdicts  # a method not run is not judged
    assert verdicts["ROSMO ends above behaviour cloning"] == "holds"
    assert verdicts["ROSMO ends above MuZero Unplugged at the same number of updates"] == "inconclusive"
    # Without the generator's summary, and with no count of the data's mean in the rows, nothing is judged.
    args = reproduce.Args(study="atari_small", workdir=str(tmp_path), atari_data_dir="elsewhere", bootstrap_reps=500)
    verdicts = {claim: verdict for claim, _, verdict in reproduce.claims("atari_small", rows, args, "final")}
    assert verdicts["rosmo ends above the data's mean return"] == "not measured"


def test_the_atari_study_runs_rosmo_and_bc_first_at_its_stated_budget():
    from benchmark import reproduce
    from benchmark.studies import STUDIES

    study = STUDIES["atari_small"]
    assert (study.budget.num_seeds, study.budget.total_steps) == (3, 10_000)
    args = reproduce.Args(study="atari_small", num_seeds=3, total_steps=10_000, eval_every=1000, eval_episodes=5)
    configs = reproduce.study_configs("atari_small", args, ["Breakout", "Pong"])
    # One run per seed (each fits in a sitting): ROSMO's and BC's 3 seeds on Breakout, then on Pong, then MZU.
    flag = lambda c, name: c.flags[c.flags.index(name) + 1]  # noqa: E731
    first = [(c.algo, c.env_id, flag(c, "--seed"), flag(c, "--num-seeds")) for c in configs[:18]]
    assert first == [
        (algo, game, str(seed), "1")
        for game, algos in (
            ("Breakout", ("rosmo", "bc")),
            ("Pong", ("rosmo", "bc")),
            ("Breakout", ("mzu",)),
            ("Pong", ("mzu",)),
        )
        for algo in algos
        for seed in range(3)
    ]
    assert sorted({c.algo for c in configs}) == ["bc", "cql", "crr", "mzu", "mzu_q", "rosmo"] and len(configs) == 36
    assert all("--network-size" in c.flags and "small" in c.flags for c in configs)
    # The report's rows keep the methods' order.
    assert list(dict.fromkeys(c.series for c in configs)) == ["rosmo", "bc", "mzu", "crr", "cql", "mzu_q"]


def test_runs_of_one_seed_each_are_joined_into_the_row_all_seeds_in_one_run_makes():
    # A study with seed_per_run keeps each seed's run; its row must be the one a single run of all the seeds
    # gives: every seed's returns in the order of --seed, and the seconds of the seeds one after another.
    from benchmark import aggregate as agg
    from common.scores import normalized_score

    def run(seed, num_seeds, finals, wall, env_id="catch"):
        returns = [[v - 0.5 for v in finals], list(finals)]
        history = {"steps": [5, 10], "returns": returns, "wall_clock_s": [wall / 2, wall], "eval_seconds": [1.0, 1.0]}
        return {
            "env_id": env_id,
            "args": {"seed": seed, "num_seeds": num_seeds},
            "final_returns": list(finals),
            "normalized_scores": [normalized_score(env_id, v) for v in finals],
            "eval_history": history,
            "wall_clock_s": wall,
            "updates_per_s": 10 / wall,
            "data": {"mean_return": 0.1},
            "devices": ["1 x cpu (cpu)"],
            "run_dir": f"runs/{env_id}__{seed}",
        }

    whole = agg.summarise_runs("x", None, [run(0, 3, [0.2, 0.6, 1.0], 30.0)], 200)
    pieces = [run(2, 1, [1.0], 10.0), run(0, 1, [0.2], 10.0), run(1, 1, [0.6], 10.0)]  # found in any order
    joined = agg.summarise_runs("x", None, pieces, 200)
    for key in ("returns", "iqm", "late", "per_seed", "curve", "wall_clock_s", "data_returns"):
        assert joined[key] == whole[key], key
    assert joined["updates_per_s"] == pytest.approx(whole["updates_per_s"])
    assert joined["runs"] == ["runs/catch__2", "runs/catch__0", "runs/catch__1"]  # every piece named
    (task,) = agg.join_seed_runs(pieces)
    assert task["eval_history"]["eval_seconds"] == [3.0, 3.0] and task["args"]["num_seeds"] == 3
    # Two tasks stay two; pieces that share a seed, or were evaluated at other steps, are refused.
    assert len(agg.join_seed_runs([*pieces, run(0, 1, [0.5], 5.0, "cartpole")])) == 2
    with pytest.raises(ValueError, match="share seeds"):
        agg.join_seed_runs([run(0, 2, [0.2, 0.6], 20.0), run(1, 1, [0.6], 10.0)])
    # A configuration with a seed still to run: the finished seeds' returns, and how many of them, no IQM.
    from benchmark import reproduce
    from benchmark.runner import Config

    configs = [Config("rosmo", "catch", ["--seed", str(seed)], "x") for seed in range(3)]
    (row,) = agg.summarise(configs, [pieces[1], None, pieces[0]], 200)
    assert row["missing"] and row["returns"]["catch"] == pytest.approx((0.6, 0.4)) and row["seeds_done"] == {"catch": 2}
    assert reproduce._seeds_note(2, 3) == " (2 of 3 seeds)" and reproduce._seeds_note(3, 3) == ""
    # Its late average per seed over both evaluations: seed 0 (-0.3 + 0.2) / 2, seed 2 (0.5 + 1.0) / 2; its seconds.
    assert row["late_returns"]["catch"] == pytest.approx((0.35, 0.4)) and row["late_steps"] == [5, 10]
    assert row["wall_clock_s"] == 20.0
    other = run(1, 1, [0.6], 10.0)
    other["eval_history"]["steps"] = [4, 10]
    with pytest.raises(ValueError, match="different steps"):
        agg.join_seed_runs([run(0, 1, [0.2], 10.0), other])


def test_a_study_s_first_sittings_write_a_report_of_the_tasks_finished_so_far(tmp_path):
    # atari_small: ROSMO and BC finished on Breakout only. The report shows their final and late returns there,
    # the other game and methods as not run, no IQM, no claim, and no plot it has not drawn.
    from benchmark import aggregate as agg
    from benchmark import reproduce
    from benchmark.runner import Config
    from common.scores import normalized_score

    def run(seed, returns):
        return {
            "env_id": "Breakout",
            "args": {"seed": seed, "num_seeds": 1},
            "final_returns": [returns[-1]],
            "normalized_scores": [normalized_score("Breakout", returns[-1])],
            "eval_history": {"steps": [5000, 10000], "returns": [[v] for v in returns], "wall_clock_s": [30.0, 60.0]},
            "wall_clock_s": 60.0,
            "data": {"mean_return": 12.97},
            "run_dir": f"runs/Breakout__{seed}",
        }

    configs = [Config(a, g, ["--seed", str(s)], a) for a in ("rosmo", "bc") for g in ("Breakout", "Pong") for s in (0, 1)]
    results = [
        run(s, [1.0, 2.0 + s]) if g == "Breakout" else None
        for a in ("rosmo", "bc")
        for g in ("Breakout", "Pong")
        for s in (0, 1)
    ]
    rows = agg.summarise(configs, results, 100)
    args = reproduce.Args(study="atari_small", num_seeds=2, total_steps=10_000, eval_every=5000, eval_episodes=5)
    args.bootstrap_reps, args.out_dir, args.workdir = 100, str(tmp_path), str(tmp_path)
    reproduce.write_study("atari_small", args, ["Breakout", "Pong"], rows, machine="test")
    md = (tmp_path / "atari_small_10k.md").read_text()
    assert "| rosmo | 2.50 +- 0.50 | 1.75 +- 0.25 | not run | - | - | - |" in md  # seeds' late: 1.5 and 2.0
    assert "last 5 evaluations (updates 5000-10000)" in md and "The runs took 4.0 min" in md
    assert "![" not in md and not list(tmp_path.glob("*.png"))
    kept = json.loads((tmp_path / "atari_small_10k.json").read_text())
    assert {c["verdict"] for c in kept["claims"]} == {"not measured"}


def test_a_sweep_names_its_best_setting_by_the_final_and_by_the_late_iqm():
    # A choice read from one final evaluation can differ from one read from the late average (the issue with
    # the learning-rate schedule): the report names both.
    from benchmark.claims import best_setting

    def swept(x, final, late):
        return {"series": "cql", "x": x, "missing": False, "iqm": (final, final, final), "late": {"iqm": (late,) * 3}}

    rows = [swept(0.01, 0.9, 0.5), swept(0.1, 0.8, 0.7), {"series": "cql", "x": 1.0, "missing": True}]
    choice = best_setting(rows)
    assert choice.startswith("by the highest final IQM, cql @ 0.01") and "by the highest late IQM, cql @ 0.1" in choice
    assert "late" not in best_setting([{**rows[0], "late": {}}])  # a row without a late average: final only
    assert best_setting(rows[2:]) is None


def test_a_row_trained_on_other_data_is_flagged_shown_and_left_out_of_the_claims(tmp_path):
    # A kept run reused beside one trained on a dataset regenerated on another machine (same flags, other
    # episodes): the report must not compare them as if they had read the same data.
    from benchmark import aggregate as agg
    from benchmark import reproduce
    from common.scores import normalized_score

    def results(final, data_mean, noise=0.0):
        return {
            "env_id": "catch",
            "args": {"seed": 0, "num_seeds": 3, "noise": noise, "noise_in": "environment", "data_fraction": 1.0},
            "final_returns": list(final),
            "normalized_scores": [normalized_score("catch", r) for r in final],
            "eval_history": {"steps": [5, 10], "returns": [list(final), list(final)], "wall_clock_s": [1.0, 2.0]},
            "wall_clock_s": 2.0,
            "data": {"mean_return": data_mean},
            "run_dir": "runs/catch__x",
        }

    rows = [
        agg.summarise_runs("rosmo", None, [results([1.0, 1.0, 0.8], 0.5)], 100),
        agg.summarise_runs("cql", None, [results([0.2, 0.4, 0.0], 0.5)], 100),
        agg.summarise_runs("cql-alpha0.1", None, [results([1.0, 1.0, 1.0], 0.7)], 100),  # other data, better
        agg.summarise_runs("bc", None, [results([0.0, 0.0, 0.2], 0.3, noise=0.3)], 100),  # other flags: not compared
    ]
    assert agg.other_data(rows) == {("cql-alpha0.1", None): {"catch": (0.7, 0.5)}}
    args = reproduce.Args(study="table2", envs=["catch"], num_seeds=3, total_steps=10, eval_every=5, eval_episodes=2)
    args.bootstrap_reps, args.out_dir = 100, str(tmp_path)
    reproduce.write_study("table2", args, ["catch"], rows, machine="test")
    md = (tmp_path / "table2_catch_10.md").read_text()
    assert "| cql-alpha0.1 (other data) | 1.00 +- 0.00 | 1.00 +- 0.00 | - | - |" in md
    assert "cql-alpha0.1 on catch (data's mean return 0.700, the others' 0.500)" in md
    claims = {c["claim"]: c for c in json.loads((tmp_path / "table2_catch_10.json").read_text())["claims"]}
    best = claims["ROSMO has the best overall result (IQM over the tasks)"]
    assert "cql-alpha0.1" not in best["measured"] and "vs cql " in best["measured"]


def test_a_study_does_not_run_a_configuration_whose_data_here_differs_from_its_finished_runs(tmp_path, monkeypatch):
    # The kept runs of a study read the dataset of one machine; on a machine whose generator wrote other episodes
    # under the same flags, a new run would not compare with them: the study says so and leaves it out.
    from benchmark import runner

    flags = ["--env-id", "catch", "--total-steps", "10", "--eval-every", "10"]
    configs = [runner.Config("bc", "catch", [*flags, "--seed", str(seed)], "bc") for seed in (0, 1, 2)]
    args = runner.resolve_args("bc", configs[0].flags)  # a finished run's results.json keeps all its arguments
    kept = {"0": {"env_id": "catch", "args": args, "data": {"mean_return": 0.5}}}
    ran = []
    monkeypatch.setattr(runner, "find_finished", lambda algo, f, runs, records=None: kept.get(f[-1]))
    monkeypatch.setattr(runner, "_run_config", lambda i, total, c, *rest: ran.append(c.flags[-1]) or {"seed": c.flags[-1]})
    monkeypatch.setattr(runner, "local_data", lambda algo, f, workdir: {"transitions": 90, "mean_return": 0.7})
    results = runner.run_configs(configs, "test", workdir=tmp_path)
    assert ran == [] and results == [kept["0"], None, None]
    # Where the data here is the kept runs' data, the others run.
    monkeypatch.setattr(runner, "local_data", lambda algo, f, workdir: {"transitions": 90, "mean_return": 0.5})
    assert runner.run_configs(configs, "test", workdir=tmp_path)[1:] == [{"seed": "1"}, {"seed": "2"}] and ran == ["1", "2"]
    # Data picked by other flags (here more noise) is not compared.
    ran.clear()
    noisy = [runner.Config("bc", "catch", [*flags, "--noise", "0.3", "--seed", "1"], "bc")]
    monkeypatch.setattr(runner, "local_data", lambda algo, f, workdir: {"transitions": 90, "mean_return": 0.1})
    assert runner.run_configs([configs[0], *noisy], "test", workdir=tmp_path)[1] == {"seed": "1"}


def test_the_data_here_is_read_from_the_dataset_a_run_would_read(tmp_path):
    from benchmark import runner
    from common.bsuite import datasets as bsuite_data

    stats = bsuite_data.generate("catch", 0.0, tmp_path / "datasets", num_episodes=20, progress=False)
    flags = ["--env-id", "catch", "--data-dir", str(stats["path"])]
    got = runner.local_data("bc", flags, tmp_path)
    assert got == {"transitions": stats["transitions"], "mean_return": pytest.approx(stats["mean_return"])}
