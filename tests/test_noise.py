"""Where a BSuite dataset's action noise acts (paper Appendix E): in the environment (stochastic transitions,
the agent's action recorded) or in the behaviour agent (the executed action recorded, deterministic
transitions); the loader refuses data of the other kind, and the studies never reuse a run of the other kind."""

import json
from pathlib import Path

import numpy as np
import pytest

from common.bsuite import datasets as bsuite_data
from common.bsuite.env import NoisyActions, make_env
from common.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
EPISODES = 40


def _paddle(observation: np.ndarray) -> int:
    return int(np.argmax(np.asarray(observation).reshape(10, 5)[-1]))


def _inconsistent_fraction(episodes) -> float:
    """The fraction of catch transitions whose recorded action does not explain the paddle's move (paddle += action
    - 1, clipped to the board); the last transition of each episode is left out (the ball may sit on the paddle row)."""
    obs, action, is_last = episodes.observation, episodes.action, episodes.is_last
    checked = bad = 0
    for t in range(len(action) - 2):
        if is_last[t] or is_last[t + 1] or is_last[t + 2]:
            continue
        expected = min(max(_paddle(obs[t]) + int(action[t]) - 1, 0), 4)
        checked += 1
        bad += expected != _paddle(obs[t + 1])
    assert checked > 100
    return bad / checked


@pytest.fixture(scope="module")
def noisy_catch(tmp_path_factory):
    root = tmp_path_factory.mktemp("noise")
    paths = {
        kind: bsuite_data.generate("catch", 0.5, root, num_episodes=EPISODES, progress=False, noise_in=kind)["path"]
        for kind in ("environment", "behaviour")
    }
    return root, paths


def test_noisy_actions_replace_the_action_at_the_given_rate():
    from bsuite.environments import catch

    assert isinstance(make_env("catch", 0, noise=0.0), catch.Catch)  # no wrapper without noise
    env = make_env("catch", 0, noise=0.5, noise_seed=3)
    assert isinstance(env, NoisyActions) and env.action_spec().num_values == 3
    moves = []
    for _ in range(200):
        start = _paddle(env.reset().observation)
        moves.append(_paddle(env.step(1).observation) - start)  # 1 keeps the paddle still
    moves = np.asarray(moves)
    # Replaced with probability 0.5 by a uniform action, 2 of 3 of which move the paddle: a third of the steps.
    assert 0.2 < np.mean(moves != 0) < 0.47
    always = make_env("catch", 0, noise=1.0, noise_seed=3)
    start = _paddle(always.reset().observation)
    assert any(_paddle(always.step(1).observation) != start for _ in range(8))


def test_environment_noise_records_the_agents_action_and_behaviour_noise_the_executed_one(noisy_catch):
    _, paths = noisy_catch
    in_env = bsuite_data.read_episodes(paths["environment"])
    in_agent = bsuite_data.read_episodes(paths["behaviour"])
    # Behaviour noise: every recorded action is the one executed, so it always explains the move.
    assert _inconsistent_fraction(in_agent) == 0.0
    # Environment noise: about 0.5 x 2/3 of the recorded actions were replaced by one that moved the paddle otherwise.
    assert 0.15 < _inconsistent_fraction(in_env) < 0.45
    assert paths["behaviour"].parents[1].name == f"catch_0.5_episodes{EPISODES}_behaviournoise"
    assert paths["environment"].parents[1].name == f"catch_0.5_episodes{EPISODES}"
    assert bsuite_data.read_settings(paths["environment"])["noise_in"] == "environment"


def test_noise_free_data_is_the_same_whichever_kind_is_named(tmp_path):
    a = bsuite_data.generate("catch", 0.0, tmp_path / "a", num_episodes=3, progress=False, noise_in="behaviour")
    b = bsuite_data.generate("catch", 0.0, tmp_path / "b", num_episodes=3, progress=False)
    assert a["path"].parents[1].name == "catch_0.0_episodes3"  # no suffix: the two kinds are the same data
    for x, y in zip(bsuite_data.read_episodes(a["path"]), bsuite_data.read_episodes(b["path"])):
        np.testing.assert_array_equal(x, y)
    for kind in ("environment", "behaviour"):
        assert bsuite_data.load_bsuite("catch", 0.0, a["path"], noise_in=kind)[0].num_episodes == 3


def test_the_loader_refuses_data_of_the_other_kind_with_one_line(noisy_catch):
    root, paths = noisy_catch
    with pytest.raises(
        DataError,
        match="noise 0.5 in the behaviour, but this run asks for the noise in the environment; pass --noise-in behaviour",
    ):
        bsuite_data.load_bsuite("catch", 0.5, paths["behaviour"])
    with pytest.raises(DataError, match="pass --noise-in environment"):
        bsuite_data.load_bsuite("catch", 0.5, paths["environment"].parents[1], noise_in="behaviour")
    episodes, path = bsuite_data.load_bsuite("catch", 0.5, paths["behaviour"].parents[1], noise_in="behaviour")
    assert path == paths["behaviour"] and episodes.num_episodes == EPISODES


def test_data_of_the_generator_before_the_option_counts_as_behaviour_noise(tmp_path, noisy_catch):
    """Its settings have no noise_in and its directory has the standard name: a run asking for the paper's noise is
    told to keep it under the behaviour name or regenerate it, never handed it."""
    _, paths = noisy_catch
    import shutil

    old = tmp_path / "bsuite" / "catch_0.5"
    shutil.copytree(paths["behaviour"].parents[1], old)
    info_path = old / "bsuite_catch" / "1.0.0" / "dataset_info.json"
    info = json.loads(info_path.read_text())
    settings = bsuite_data.read_settings(info_path.parent)
    del settings["noise_in"]
    info["description"] = (
        info["description"].split(bsuite_data.SETTINGS_PREFIX)[0] + bsuite_data.SETTINGS_PREFIX + json.dumps(settings)
    )
    info_path.write_text(json.dumps(info))
    with pytest.raises(DataError, match=r"an older generator's.*keep it as catch_0.5_behaviournoise.*--force") as error:
        bsuite_data.load_bsuite("catch", 0.5, tmp_path, generate_if_missing=False)
    assert "\n" not in str(error.value)
    old.rename(old.with_name("catch_0.5_behaviournoise"))
    assert bsuite_data.load_bsuite("catch", 0.5, tmp_path, noise_in="behaviour")[0].num_episodes == EPISODES


def test_the_studies_never_reuse_a_run_of_the_other_noise_kind():
    from benchmark import runner

    flags = ["--env-id", "catch", "--noise", "0.3"]
    want = runner.comparable_args("rosmo", flags)
    assert want["noise_in"] == "environment"
    defaults = runner.script_defaults("rosmo")
    made_before = {k: v for k, v in want.items() if k != "noise_in"}  # a run made before the flag existed
    assert not runner.same_run(made_before, want, defaults)  # its noise was in the behaviour
    assert runner.same_run(made_before, runner.comparable_args("rosmo", [*flags, "--noise-in", "behaviour"]), defaults)
    # Without noise the kind changes nothing: a noise-free run made before the flag is reused by any study.
    clean = runner.comparable_args("rosmo", ["--env-id", "catch"])
    assert "noise_in" not in clean
    assert runner.same_run(
        {k: v for k, v in clean.items()},
        runner.comparable_args("rosmo", ["--env-id", "catch", "--noise-in", "behaviour"]),
        defaults,
    )


def test_every_script_passes_its_noise_kind_to_the_loader(tmp_path):
    """Each script, asked for behaviour noise, refuses a dataset whose noise is in the environment (one line)."""
    from scripts import one_line_error, run_scripts

    path = bsuite_data.generate("catch", 0.5, tmp_path, num_episodes=3, progress=False)["path"]
    flags = ["--env-id", "catch", "--noise", "0.5", "--noise-in", "behaviour", "--data-dir", str(path)]
    scripts = ["rosmo.py", "mzu.py", "mzu_q.py", "crr.py", "cql.py", "bc.py"]
    for script, out in zip(scripts, run_scripts(*[(flags, tmp_path, script) for script in scripts])):
        assert "noise 0.5 in the environment, but this run asks for the noise in the behaviour" in one_line_error(out), script


def test_resuming_a_run_saved_before_the_flag_keeps_its_behaviour_noise(tmp_path):
    import rosmo
    from common import runs

    run_dir = tmp_path / "old_run"
    run_dir.mkdir()
    saved = {k: v for k, v in vars(rosmo.Args(env_id="mountain_car", noise=0.3)).items() if k != "noise_in"}
    (run_dir / "args.json").write_text(json.dumps(saved))
    args = runs.Run.saved_args(str(run_dir), rosmo.Args, rosmo.Args(resume=str(run_dir)))
    assert args.noise_in == "behaviour" and args.noise == 0.3 and args.resume == str(run_dir)
    from benchmark import runner

    assert all(values["noise_in"] == runs.EARLIER_VALUES["noise_in"] for values in runner.EARLIER_VALUES.values())
