"""Tests of the BSuite dataset generator, its TFDS storage and the reader (tiny budgets)."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.bsuite import datasets as bsuite_data
from common.bsuite import tfds_files
from common.bsuite.behaviour import episode_to_rlds
from common.episodes import Episodes, subset_episode_indices, take_episodes
from common.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
STEP_DTYPES = {
    "observation": np.float32,
    "action": np.int64,
    "reward": np.float32,
    "discount": np.float32,
    "is_first": np.bool_,
    "is_last": np.bool_,
    "is_terminal": np.bool_,
}
CATCH_EPISODES = 30


def _tfds():
    """TFDS (requirements-dev.txt), or the test is skipped; TensorFlow sees no GPU."""
    tfds = pytest.importorskip("tensorflow_datasets")
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    return tfds


def _read_raw(path: Path) -> list[dict]:
    """Every episode as stored, read by common/bsuite/tfds_files.py (no TensorFlow)."""
    return list(tfds_files.read_examples(path))


def _read_raw_with_tfds(path: Path) -> list[dict]:
    """Every episode as numpy, read with plain TFDS (nested steps stacked per episode)."""
    tfds = _tfds()
    ds = tfds.builder_from_directory(str(path)).as_dataset(split="all")
    episodes = []
    for episode in ds:
        steps = {name: [] for name in STEP_DTYPES}
        for step in episode["steps"]:
            for name in STEP_DTYPES:
                steps[name].append(step[name].numpy())
        episodes.append(
            {
                "episode_id": episode["episode_id"].numpy(),
                "episode_return": episode["episode_return"].numpy(),
                "steps": {name: np.stack(values) for name, values in steps.items()},
            }
        )
    return episodes


def _split(episodes: Episodes) -> list[Episodes]:
    bounds = np.flatnonzero(episodes.is_last) + 1
    starts = np.concatenate([[0], bounds[:-1]])
    return [Episodes(*(field[a:b] for field in episodes)) for a, b in zip(starts, bounds)]


@pytest.fixture(scope="module")
def catch_root(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("data")
    stats = bsuite_data.generate("catch", 0.1, root, seed=0, num_episodes=CATCH_EPISODES, progress=False)
    return root, stats


@pytest.fixture(scope="module")
def catch_full(catch_root) -> Episodes:
    root, _ = catch_root
    return bsuite_data.read_episodes(bsuite_data.builder_dir(root, "catch", 0.1, CATCH_EPISODES))


def test_paths_and_data_root(tmp_path, monkeypatch):
    path = bsuite_data.builder_dir(tmp_path, "catch", 0.1)
    assert path.is_relative_to(tmp_path / "bsuite" / "catch_0.1")
    assert bsuite_data.builder_dir(tmp_path, "catch", 0.3) != path
    monkeypatch.delenv("ROSMO_DATA_DIR", raising=False)
    assert bsuite_data.resolve_data_root(None) == Path("datasets")
    monkeypatch.setenv("ROSMO_DATA_DIR", str(tmp_path))
    assert bsuite_data.resolve_data_root(None) == tmp_path
    assert bsuite_data.resolve_data_root("/elsewhere") == Path("/elsewhere")


def test_make_env_gives_the_real_bsuite_environments():
    from bsuite.environments import cartpole, catch, mountain_car

    assert isinstance(bsuite_data.make_env("catch", 0), catch.Catch)
    assert isinstance(bsuite_data.make_env("cartpole", 0), cartpole.Cartpole)
    assert isinstance(bsuite_data.make_env("mountain_car", 0), mountain_car.MountainCar)


def test_unknown_env_and_bad_noise_raise(tmp_path):
    for call in (
        lambda: bsuite_data.make_env("pong", 0),
        lambda: bsuite_data.generate("pong", 0.0, tmp_path, num_episodes=1, progress=False),
        lambda: bsuite_data.load_bsuite("pong", 0.0, tmp_path),
    ):
        with pytest.raises(DataError, match="catch, cartpole, mountain_car"):
            call()
    with pytest.raises(DataError, match="noise"):
        bsuite_data.generate("catch", 1.5, tmp_path, num_episodes=1, progress=False)
    with pytest.raises(DataError, match="noise"):
        bsuite_data.load_bsuite("catch", -0.1, tmp_path)
    assert not (tmp_path / "bsuite").exists()


def test_episode_to_rlds_pads_the_last_step():
    obs = [np.full((1, 3), i, np.float32) for i in range(4)]
    steps = episode_to_rlds(obs, [2, 1, 0], [-1.0, -1.0, -1.0], [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(steps["action"], [2, 1, 0, 0])
    np.testing.assert_array_equal(steps["reward"], [-1, -1, -1, 0])
    np.testing.assert_array_equal(steps["discount"], [1, 1, 0, 0])
    np.testing.assert_array_equal(steps["is_first"], [True, False, False, False])
    np.testing.assert_array_equal(steps["is_last"], [False, False, False, True])
    np.testing.assert_array_equal(steps["is_terminal"], [False, False, False, True])
    assert steps["observation"].shape == (4, 1, 3) and steps["observation"][3, 0, 0] == 3
    truncated = episode_to_rlds(obs[:2], [1], [-1.0], [1.0])
    assert not truncated["is_terminal"].any()


def test_catch_dataset_is_a_tfds_directory_of_rlds_episodes(catch_root):
    root, stats = catch_root
    path = bsuite_data.builder_dir(root, "catch", 0.1, CATCH_EPISODES)
    assert (path / "dataset_info.json").is_file()
    assert stats["path"] == path
    assert list((root / "bsuite").iterdir()) == [root / "bsuite" / "catch_0.1_episodes30"]  # no scratch left behind
    assert sorted(p.name for p in path.iterdir()) == [
        "bsuite_catch-train.tfrecord-00000-of-00001",
        "dataset_info.json",
        "features.json",
    ]
    info = tfds_files.read_info(path)
    assert [split["name"] for split in info["splits"]] == ["train"]
    assert '"seed": 0' in info["description"] and '"noise": 0.1' in info["description"]
    assert tfds_files.read_features(path) == bsuite_data.rlds_features((10, 5))

    episodes = _read_raw(path)
    assert len(episodes) == CATCH_EPISODES == stats["episodes"]
    assert [int(e["episode_id"]) for e in episodes] == list(range(CATCH_EPISODES))
    for episode in episodes:
        steps = episode["steps"]
        assert len(steps["action"]) == 10  # 9 transitions + the final observation
        np.testing.assert_array_equal(steps["is_first"], np.arange(10) == 0)
        np.testing.assert_array_equal(steps["is_last"], np.arange(10) == 9)
        np.testing.assert_array_equal(steps["is_terminal"], np.arange(10) == 9)
        assert steps["action"][-1] == 0 and steps["reward"][-1] == 0 and steps["discount"][-1] == 0
        np.testing.assert_array_equal(steps["discount"][:-1], [1] * 8 + [0])
        assert np.all(steps["reward"][:8] == 0) and abs(steps["reward"][8]) == 1
        assert set(np.unique(steps["action"][:-1])) <= {0, 1, 2}
        cells = steps["observation"].sum(axis=(1, 2))
        assert np.all(cells[:-1] == 2)  # ball and paddle
        assert cells[-1] == (1 if steps["reward"][8] == 1 else 2)  # a caught ball lies on the paddle
        assert episode["episode_return"] == steps["reward"].sum()
    returns = [float(e["episode_return"]) for e in episodes]
    assert stats["transitions"] == 9 * CATCH_EPISODES
    assert stats["mean_return"] == pytest.approx(np.mean(returns))


def test_tfds_reads_the_catch_dataset_as_written(catch_root):
    _, stats = catch_root
    tfds = _tfds()
    builder = tfds.builder_from_directory(str(stats["path"]))
    assert list(builder.info.splits.keys()) == ["train"]
    assert builder.info.description == tfds_files.read_info(stats["path"])["description"]
    spec = builder.as_dataset(split="all").element_spec
    assert set(spec.keys()) == {"episode_id", "episode_return", "steps"}
    assert spec["episode_id"].dtype.as_numpy_dtype == np.int64
    assert spec["episode_return"].dtype.as_numpy_dtype == np.float32
    step_spec = spec["steps"].element_spec
    assert {name: s.dtype.as_numpy_dtype for name, s in step_spec.items()} == STEP_DTYPES
    assert tuple(step_spec["observation"].shape) == (10, 5)
    theirs, ours = _read_raw_with_tfds(stats["path"]), _read_raw(stats["path"])
    assert len(theirs) == len(ours) == CATCH_EPISODES
    for a, b in zip(theirs, ours):
        assert a["episode_id"] == b["episode_id"] and a["episode_return"] == b["episode_return"]
        for name, dtype in STEP_DTYPES.items():
            assert a["steps"][name].dtype == b["steps"][name].dtype == dtype
            np.testing.assert_array_equal(a["steps"][name], b["steps"][name])


@pytest.mark.parametrize("env_id, obs_shape, count", [("mountain_car", (1, 3), 2), ("cartpole", (1, 6), 3)])
def test_vector_envs_store_whole_terminated_episodes(tmp_path, env_id, obs_shape, count):
    stats = bsuite_data.generate(env_id, 0.5, tmp_path, seed=3, num_episodes=count, progress=False)
    episodes = _read_raw(bsuite_data.builder_dir(tmp_path, env_id, 0.5, count, seed=3))
    assert len(episodes) == count
    transitions = 0
    for episode in episodes:
        steps = episode["steps"]
        length = len(steps["action"])
        transitions += length - 1
        assert steps["observation"].shape == (length, *obs_shape)
        assert steps["is_first"][0] and not steps["is_first"][1:].any()
        assert steps["is_last"][-1] and not steps["is_last"][:-1].any()
        assert steps["is_terminal"][-1] and not steps["is_terminal"][:-1].any()
        np.testing.assert_array_equal(steps["discount"][:-2], 1)
        assert steps["discount"][-2] == 0 and steps["discount"][-1] == 0 and steps["reward"][-1] == 0
        assert episode["episode_return"] == pytest.approx(steps["reward"].sum())
    assert stats["transitions"] == transitions


def test_read_episodes_flattens_every_episode(catch_root, catch_full):
    root, stats = catch_root
    full = catch_full
    assert full.num_episodes == CATCH_EPISODES and full.num_transitions == 9 * CATCH_EPISODES
    assert full.observation.dtype == np.float32 and full.observation.shape[1:] == (10, 5)
    assert full.action.dtype == np.int32
    assert full.reward.dtype == np.float32 and full.discount.dtype == np.float32
    assert full.is_first.dtype == full.is_last.dtype == full.is_terminal.dtype == np.bool_
    raw = _read_raw(stats["path"])
    np.testing.assert_allclose(full.episode_returns(), [e["episode_return"] for e in raw])
    np.testing.assert_array_equal(full.observation, np.concatenate([e["steps"]["observation"] for e in raw]))
    np.testing.assert_array_equal(full.action, np.concatenate([e["steps"]["action"] for e in raw]))


def test_data_fraction_keeps_the_uniform_subset_in_order(catch_root, catch_full):
    root, stats = catch_root
    full = _split(catch_full)
    for fraction in (0.1, 0.5):
        subset = bsuite_data.read_episodes(stats["path"], data_fraction=fraction)
        kept = subset_episode_indices(CATCH_EPISODES, fraction)
        assert subset.num_episodes == len(kept) == round(CATCH_EPISODES * fraction)
        for got, index in zip(_split(subset), kept):
            for a, b in zip(got, full[index]):
                np.testing.assert_array_equal(a, b)


def test_generating_and_reading_a_dataset_needs_no_tensorflow(tmp_path, catch_full):
    """In a process where importing TensorFlow or TFDS fails, a dataset is generated and read (as a script loads
    it), and gives the episodes this process reads."""
    code = (
        "import sys, numpy as np; sys.modules.update(dict.fromkeys(['tensorflow', 'tensorflow_datasets'])); "
        "from common.bsuite import datasets; datasets.NUM_EPISODES['catch'] = 30; "
        "e, _ = datasets.load_bsuite('catch', 0.1, sys.argv[1], data_fraction=0.5, generate_data=True); "
        "assert not [m for m, v in sys.modules.items() if m.startswith('tensorflow') and v is not None]; "
        "np.savez(sys.argv[2], *e)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "root"), str(tmp_path / "half.npz")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    with np.load(tmp_path / "half.npz") as got:
        half = [got[f"arr_{i}"] for i in range(len(Episodes._fields))]
    for a, b in zip(half, take_episodes(catch_full, subset_episode_indices(CATCH_EPISODES, 0.5))):
        np.testing.assert_array_equal(a, b)


def test_a_script_starts_without_importing_tensorflow():
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "rosmo.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")]
    assert "common.bsuite.datasets" in imported and "jax" in imported
    assert not [name for name in imported if name.split(".")[0] in ("tensorflow", "tensorflow_datasets")]


def test_same_seed_same_data_other_seed_other_data(tmp_path, catch_full):
    again = bsuite_data.generate("catch", 0.1, tmp_path / "a", seed=0, num_episodes=CATCH_EPISODES, progress=False)
    other = bsuite_data.generate("catch", 0.1, tmp_path / "b", seed=1, num_episodes=CATCH_EPISODES, progress=False)
    same = bsuite_data.read_episodes(again["path"])
    for a, b in zip(same, catch_full):
        np.testing.assert_array_equal(a, b)
    different = bsuite_data.read_episodes(other["path"])
    assert not np.array_equal(different.observation, catch_full.observation)


def test_bad_fraction_fails_before_anything_is_done(tmp_path, catch_root):
    _, stats = catch_root
    for fraction in (0.0, 1.5):
        with pytest.raises(DataError, match="data-fraction"):
            bsuite_data.read_episodes(stats["path"], data_fraction=fraction)
        with pytest.raises(DataError, match="data-fraction"):
            bsuite_data.load_bsuite("catch", 0.1, tmp_path, data_fraction=fraction)
    assert not (tmp_path / "bsuite").exists()


def test_missing_dataset_names_the_path_and_the_command(tmp_path):
    path = bsuite_data.builder_dir(tmp_path, "cartpole", 0.3)
    with pytest.raises(DataError) as error:
        bsuite_data.read_episodes(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    assert "python -m common.bsuite.datasets --env-id cartpole --noise 0.3" in message
    with pytest.raises(DataError, match="python -m common.bsuite.datasets --env-id cartpole --noise 0.3"):
        bsuite_data.load_bsuite("cartpole", 0.3, tmp_path, generate_if_missing=False)


def test_corrupt_dataset_names_the_path(tmp_path, catch_root):
    root, _ = catch_root
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    path = bsuite_data.builder_dir(copy, "catch", 0.1, CATCH_EPISODES)
    (record,) = [p for p in path.iterdir() if ".tfrecord" in p.name]
    record.write_bytes(record.read_bytes()[: record.stat().st_size // 2])
    with pytest.raises(DataError) as error:
        bsuite_data.read_episodes(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message and "--force" in message
    (path / "dataset_info.json").unlink()
    with pytest.raises(DataError, match="dataset_info.json") as error:
        bsuite_data.read_episodes(path)
    assert str(path) in str(error.value)
    with pytest.raises(DataError, match="dataset_info.json"):
        bsuite_data.load_bsuite("catch", 0.1, bsuite_data.dataset_dir(copy, "catch", 0.1, CATCH_EPISODES))


def test_a_damaged_dataset_outside_the_layout_gets_this_runs_command_not_a_template(tmp_path, catch_root):
    root, _ = catch_root
    mine = tmp_path / "mine"  # a builder directory under a name of the user's own
    shutil.copytree(bsuite_data.builder_dir(root, "catch", 0.1, CATCH_EPISODES), mine)
    (record,) = [p for p in mine.iterdir() if ".tfrecord" in p.name]
    record.write_bytes(record.read_bytes()[: record.stat().st_size // 2])
    with pytest.raises(DataError) as error:
        bsuite_data.load_bsuite("catch", 0.1, mine, noise_in="environment")
    message = str(error.value)
    assert str(mine) in message and "\n" not in message
    assert "python -m common.bsuite.datasets --env-id catch --noise 0.1 --data-dir datasets" in message
    assert "ENV_ID" not in message and "DATA_ROOT" not in message


def test_load_bsuite_reads_a_builder_directory_or_a_dataset_directory(catch_root, catch_full):
    root, stats = catch_root
    for data_dir in (bsuite_data.dataset_dir(root, "catch", 0.1, CATCH_EPISODES), stats["path"]):
        episodes, path = bsuite_data.load_bsuite("catch", 0.1, data_dir, data_fraction=0.5)
        assert path == stats["path"] and episodes.num_episodes == CATCH_EPISODES // 2


def test_load_bsuite_generates_a_missing_dataset(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(bsuite_data.NUM_EPISODES, "catch", 4)
    episodes, path = bsuite_data.load_bsuite("catch", 0.0, tmp_path)
    assert episodes.num_episodes == 4 and path == bsuite_data.builder_dir(tmp_path, "catch", 0.0)
    assert "Generating" in capsys.readouterr().out


def test_generate_refuses_to_overwrite_without_force(tmp_path):
    bsuite_data.generate("catch", 0.0, tmp_path, num_episodes=2, progress=False)
    with pytest.raises(DataError, match="--force"):
        bsuite_data.generate("catch", 0.0, tmp_path, num_episodes=2, progress=False)
    stats = bsuite_data.generate("catch", 0.0, tmp_path, num_episodes=2, seed=1, progress=False, force=True)
    assert bsuite_data.read_episodes(stats["path"]).num_episodes == 2
    # The directory name records the generator settings: another count or seed never replaces a dataset.
    stats = bsuite_data.generate("catch", 0.0, tmp_path, num_episodes=3, progress=False)
    assert bsuite_data.read_episodes(stats["path"]).num_episodes == 3
    names = sorted(p.name for p in (tmp_path / "bsuite").iterdir())
    assert names == ["catch_0.0_episodes2", "catch_0.0_episodes2_seed1", "catch_0.0_episodes3"]
    assert bsuite_data.parse_dataset_name("catch_0.0_episodes2_seed1") == {
        "env_id": "catch",
        "noise": 0.0,
        "num_episodes": 2,
        "seed": 1,
        "noise_in": "environment",
    }
    assert bsuite_data.dataset_name("catch", 0.1, bsuite_data.NUM_EPISODES["catch"], 0) == "catch_0.1"
    with pytest.raises(DataError, match="holds catch data with noise 0.0, but this run asks for catch with --noise 0.1"):
        bsuite_data.load_bsuite("catch", 0.1, tmp_path / "bsuite" / "catch_0.0_episodes3")


def test_an_explicit_data_dir_must_exist_unless_generation_is_asked_for(tmp_path):
    missing = tmp_path / "typo"
    with pytest.raises(DataError, match="does not exist; check the path, or add --generate-data"):
        bsuite_data.load_bsuite("catch", 0.0, missing)
    assert not missing.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        bsuite_data.load_bsuite("catch", 0.0, tmp_path / "file")


def test_reader_fills_in_fields_that_other_rlds_data_may_lack():
    """A directory TFDS wrote (tests/data/other_rlds, see tests/test_tfds_files.py) of RLDS episodes without
    episode_id, episode_return, discount and is_terminal, with a zlib-compressed observation and float64 rewards."""
    path = ROOT / "tests" / "data" / "other_rlds" / "1.0.0"
    episodes = bsuite_data.read_episodes(path)
    np.testing.assert_array_equal(episodes.discount, [1, 0, 0, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(episodes.is_terminal, episodes.is_last)
    np.testing.assert_array_equal(episodes.action, [2, 2, 0, 2, 2, 2, 2, 0])
    np.testing.assert_array_equal(episodes.episode_returns(), [-2, -4])
    assert episodes.observation.shape == (8, 1, 3) and episodes.observation[3, 0, 0] == 100
    loaded, loaded_path = bsuite_data.load_bsuite("mountain_car", 0.0, path, data_fraction=0.5)
    assert loaded_path == path and loaded.num_episodes == 1


def test_is_terminal_follows_the_final_discount_when_absent():
    def episode(discounts):
        n = len(discounts) + 1
        return {
            "observation": np.zeros((n, 1, 2), np.float32),
            "action": np.zeros(n, np.int64),
            "reward": np.ones(n, np.float32),
            "discount": np.asarray([*discounts, 0.0], np.float32),
            "is_first": np.arange(n) == 0,
            "is_last": np.arange(n) == n - 1,
        }

    episodes = bsuite_data._assemble([episode([1.0, 0.0]), episode([1.0, 1.0])], Path("x"))
    np.testing.assert_array_equal(episodes.is_terminal, [False, False, True, False, False, False])
    np.testing.assert_array_equal(episodes.reward, [1, 1, 0, 1, 1, 0])
    with pytest.raises(DataError, match="lack the field"):
        bsuite_data._assemble([{k: v for k, v in episode([0.0]).items() if k != "is_last"}], Path("x"))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "common.bsuite.datasets", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_cli_rejects_bad_input_with_one_line(catch_root):
    root, _ = catch_root
    for args, expected in (
        (("--env-id", "pong", "--noise", "0.1"), "catch, cartpole, mountain_car"),
        (("--env-id", "catch", "--noise", "2"), "noise"),
        (("--env-id", "catch", "--noise", "0.1", "--num-episodes", str(CATCH_EPISODES), "--data-dir", str(root)), "--force"),
    ):
        result = _cli(*args)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
        assert "Traceback" not in result.stderr
