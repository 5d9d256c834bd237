"""Every bad input is refused before any data is read or anything compiled, with one line and no traceback."""

import dataclasses
import importlib
import math

import pytest
from scripts import one_line_error, run_script

from common.errors import UsageError, check_ranges

SCRIPTS = ["rosmo", "mzu", "mzu_q", "crr", "cql", "bc"]


def checked(script: str, **flags):
    """`check_args` of `script` on its defaults with `flags` changed (env defaults filled first)."""
    module = importlib.import_module(script)
    args = module.apply_env_defaults(dataclasses.replace(module.Args(), **flags))
    module.check_args(args)
    return args


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_defaults_pass_and_dispatches_divide_evaluations(script):
    args = checked(script)
    assert args.updates_per_dispatch == 100 and args.eval_every % 100 == 0 and args.total_steps % 100 == 0
    # A budget the default does not divide gets the largest dispatch up to 100 that does.
    assert checked(script, total_steps=60, eval_every=30).updates_per_dispatch == 30


# The bad values of issue 9 and the rest of the shared flags: (flag, value, words of the message).
SHARED_BAD = [
    ("learning_rate", math.nan, "--learning-rate must be positive"),
    ("learning_rate", 0.0, "--learning-rate"),
    ("learning_rate", math.inf, "--learning-rate"),
    ("lr_decay_steps", 0, "--lr-decay-steps must be at least 1, got 0"),
    ("lr_decay_rate", 0.0, "--lr-decay-rate"),
    ("max_grad_norm", -1.0, "--max-grad-norm must be positive, got -1.0"),
    ("max_grad_norm", 0.0, "--max-grad-norm"),
    ("weight_decay", -1e-4, "--weight-decay"),
    ("warmup_steps", -1, "--warmup-steps"),
    ("data_fraction", 0.0, "--data-fraction"),
    ("data_fraction", 1.5, "--data-fraction"),
    ("data_fraction", math.nan, "--data-fraction"),
    ("noise", 1.5, "--noise"),
    ("noise", -0.1, "--noise"),
    ("num_seeds", 0, "--num-seeds"),
    ("seed", -1, "--seed"),
    ("run", 6, "--run"),
    ("total_steps", 0, "--total-steps"),
    ("batch_size", 0, "--batch-size"),
    ("eval_every", 0, "--eval-every"),
    ("eval_episodes", 0, "--eval-episodes"),
    ("eval_max_steps", 0, "--eval-max-steps"),
    ("updates_per_dispatch", 0, "--updates-per-dispatch"),
]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("flag,value,words", SHARED_BAD, ids=[f"{f}={v}" for f, v, _ in SHARED_BAD])
def test_every_script_refuses_a_bad_shared_flag(script, flag, value, words):
    with pytest.raises(UsageError) as error:
        checked(script, **{flag: value})
    assert words in str(error.value) and "\n" not in str(error.value)


ALGO_BAD = {
    "rosmo": [
        ("discount", math.nan),
        ("discount", 0.0),
        ("discount", 1.01),
        ("policy_coef", -1.0),
        ("value_coef", -0.1),
        ("behavior_coef", -0.2),
        ("unroll_steps", 0),
        ("td_steps", 0),
        ("num_bins", 1),
        ("num_samples", -1),
        ("target_update_interval", 0),
        ("dynamics_hidden", 0),
    ],
    "mzu": [
        ("discount", math.nan),
        ("num_simulations", 0),
        ("max_depth", 0),
        ("dirichlet_fraction", 1.5),
        ("dirichlet_alpha", 0.0),
        ("pb_c_init", -1.0),
        ("pb_c_base", 0.0),
        ("value_coef", -1.0),
    ],
    "mzu_q": [("discount", 2.0), ("temperature", 0.0), ("temperature", math.nan), ("dirichlet_fraction", -0.1)],
    "crr": [("discount", -0.5), ("beta", 0.0), ("max_weight", -1.0), ("critic_coef", -1.0), ("policy_coef", math.inf)],
    "cql": [("discount", math.nan), ("alpha", -1.0), ("alpha", math.nan), ("num_bins", 1)],
    "bc": [],
}


@pytest.mark.parametrize("script,flag,value", [(s, f, v) for s, bad in ALGO_BAD.items() for f, v in bad])
def test_each_script_refuses_its_own_bad_flags(script, flag, value):
    with pytest.raises(UsageError, match=f"--{flag.replace('_', '-')} must be (in|at least|positive|0 or positive)"):
        checked(script, **{flag: value})


@pytest.mark.parametrize("script", SCRIPTS)
def test_evaluations_and_the_budget_must_be_whole_dispatches(script):
    with pytest.raises(UsageError, match="must be multiples of --updates-per-dispatch 100"):
        checked(script, total_steps=300, eval_every=150, updates_per_dispatch=100)
    with pytest.raises(UsageError, match="--total-steps 250"):
        checked(script, total_steps=250, eval_every=50, updates_per_dispatch=50 * 2)


def test_check_ranges_reads_open_and_closed_intervals():
    @dataclasses.dataclass
    class Flags:
        x: float = 0.5
        n: int = 1

    check_ranges(Flags(), {"x": "(0, 1]", "n": "[1, inf)"})
    check_ranges(Flags(x=1.0), {"x": "(0, 1]"})
    for bad in (0.0, 1.0000001, math.nan, -math.inf):
        with pytest.raises(UsageError, match=r"--x must be in \(0, 1\]"):
            check_ranges(Flags(x=bad), {"x": "(0, 1]"})
    with pytest.raises(UsageError, match=r"--n must be at least 1, got 0"):
        check_ranges(Flags(n=0), {"n": "[1, inf)"})
    with pytest.raises(UsageError, match=r"--x must be positive, got nan"):
        check_ranges(Flags(x=math.nan), {"x": "(0, inf)"})
    with pytest.raises(UsageError, match=r"--x must be 0 or positive, got -0.5"):
        check_ranges(Flags(x=-0.5), {"x": "[0, inf)"})


# ---------------------------------------------------------------------------------------------
# As a user sees them: subprocesses that exit before any data is read (a few seconds each).


@pytest.mark.parametrize(
    "flags,words",
    [
        (["--discount", "nan"], "--discount must be in (0, 1], got nan"),
        (["--learning-rate", "nan"], "--learning-rate must be positive, got nan"),
        (["--lr-decay-steps", "0"], "--lr-decay-steps must be at least 1, got 0"),
        (["--max-grad-norm", "-1"], "--max-grad-norm must be positive, got -1.0"),
        (["--exp-name", "../x"], "--exp-name '../x' must be a plain name"),
        (["--exp-name", "a/b"], "--exp-name 'a/b' must be a plain name"),
        (["--eval-every", "150", "--updates-per-dispatch", "100"], "must be multiples of --updates-per-dispatch 100"),
    ],
)
def test_bad_flags_exit_with_one_line(tmp_path, flags, words):
    line = one_line_error(run_script(flags, tmp_path))
    assert words in line
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent / "x").exists()


def test_data_dir_that_is_a_file_is_one_line(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("not data\n")
    line = one_line_error(run_script(["--data-dir", str(readme)], tmp_path))
    assert f"--data-dir {readme} is a file" in line
    assert not (tmp_path / "runs").exists()


def test_a_mistyped_data_dir_is_an_error_and_nothing_is_created(tmp_path):
    missing = tmp_path / "datsets"
    line = one_line_error(run_script(["--data-dir", str(missing)], tmp_path))
    assert f"--data-dir {missing} does not exist" in line and "--generate-data" in line
    assert not missing.exists() and not (tmp_path / "runs").exists()


def test_resume_of_a_directory_that_is_no_run(tmp_path):
    line = one_line_error(run_script(["--resume", str(tmp_path)], tmp_path))
    assert "not a run directory" in line
