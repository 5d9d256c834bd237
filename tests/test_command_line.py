"""The command line of every script: a bad flag is one `error:` line (exit 2), and --help shows each flag once, in
the groups of its Args, with its whole docstring and its default said once."""

import dataclasses
import importlib
import re

import pytest
from scripts import one_line_error, run_script

from common import errors

SCRIPTS = ("rosmo", "mzu", "mzu_q", "crr", "cql", "bc")
GROUPS = ("experiment", "data", "algorithm", "runtime", "saved-agents")


def rejected(args_type, argv, capsys) -> list:
    """The stderr lines of parse_args refusing `argv` (it must exit with code 2)."""
    with pytest.raises(SystemExit) as stopped:
        errors.parse_args(args_type, argv)
    assert stopped.value.code == 2
    return capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    "argv,line",
    [
        (["--total-steps", "abc"], "error: --total-steps expects an integer, got 'abc'"),
        (["--total-steps=abc"], "error: --total-steps expects an integer, got 'abc'"),
        (["--total_steps", "abc"], "error: --total-steps expects an integer, got 'abc'"),
        (["--seed", "1.5"], "error: --seed expects an integer, got '1.5'"),
        (["--noise", "high"], "error: --noise expects a number, got 'high'"),
        (["--total-steps"], "error: --total-steps expects an integer, got no value"),
        (["--store", "disk"], "error: --store expects one of auto, device, stream, got 'disk'"),
        (["--track", "yes"], "error: --track takes no value (write --track or --no-track), got 'yes'"),
        (
            ["--totl-steps", "3"],
            "error: unknown flag --totl-steps; did you mean --total-steps? (python bc.py --help lists the flags)",
        ),
        (["catch"], "error: unexpected argument 'catch'; flags are written --name value (python bc.py --help lists them)"),
    ],
)
def test_a_bad_flag_is_one_line_naming_the_flag_what_it_expects_and_what_it_got(argv, line, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["bc.py"])
    bc = importlib.import_module("bc")
    assert rejected(bc.Args, argv, capsys) == [line]


def test_a_script_given_a_wrongly_typed_value_prints_one_stderr_line(tmp_path):
    out = run_script(["--total-steps", "abc"], tmp_path)
    assert one_line_error(out) == "error: --total-steps expects an integer, got 'abc'"
    assert out.stderr.strip().splitlines() == ["error: --total-steps expects an integer, got 'abc'"]
    assert not (tmp_path / "runs").exists()


def test_parsed_flags_come_back_as_the_flat_args():
    bc = importlib.import_module("bc")
    args = errors.parse_args(bc.Args, ["--env-id", "cartpole", "--total-steps", "7", "--eval-greedy", "--data-dir", "d"])
    assert args == bc.Args(env_id="cartpole", total_steps=7, eval_greedy=True, data_dir="d")
    assert errors.parse_args(bc.Args, []) == bc.Args()


def help_entries(script, capsys, monkeypatch) -> dict:
    """{flag: (its group, its help text on one line)} from `script`.py --help (80 columns: one column of boxes)."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr("sys.argv", [f"{script}.py"])
    with pytest.raises(SystemExit) as stopped:
        errors.parse_args(importlib.import_module(script).Args, ["--help"])
    assert stopped.value.code == 0
    entries, group, flag = {}, None, None
    for raw in capsys.readouterr().out.splitlines():
        line = raw.strip(" │╭╰─╮╯")  # boxes drawn in Unicode on a terminal, plain in a pipe under pytest
        title = re.fullmatch(r"([\w-]+) options", line)
        if title:
            group, flag = title.group(1), None
            continue
        if not line.strip("-") or not group:
            continue
        body = raw[1:]  # without the box's left edge
        if line.startswith("--") and len(body) - len(body.lstrip()) < 5:  # a flag; its help's lines are indented
            flag = line.split()[0].rstrip(",")
            entries[flag] = (group, " ".join(line.split()[2:]) if len(line.split()) > 2 else "")
        elif flag:
            entries[flag] = (group, f"{entries[flag][1]} {line}".strip())
    return entries


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_every_flag_once_in_its_group_with_its_whole_docstring_and_one_default(script, capsys, monkeypatch):
    args_type = importlib.import_module(script).Args
    entries = help_entries(script, capsys, monkeypatch)
    titles, docs = errors._comments_and_docstrings(args_type)
    for field in dataclasses.fields(args_type):
        flag = f"--{field.name.replace('_', '-')}"
        assert flag in entries, flag
        group, text = entries[flag]
        assert group == titles[field.name].split("(")[0].strip().lower().replace(" ", "-"), (flag, group)
        assert "".join(docs[field.name].split()) in "".join(text.split()), (flag, text)  # not cut (wrapping aside)
        assert text.count("(default:") <= 1, (flag, text)  # tyro's
        if field.default is None and "default" in docs[field.name]:
            assert "(default:" not in text, (flag, text)  # the docstring says it: not again, and not "None"
    assert sorted({group for group, _ in entries.values()}) == sorted(GROUPS)
