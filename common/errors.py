"""The two kinds of error a user can cause, and the one way the scripts report them.

`UsageError` is a bad flag or environment setting; `DataError` is a dataset that is missing,
corrupt or asked for wrongly. Each message is one line saying what was wrong and how to fix it,
and `fail` prints it as `error: ...` (no traceback) and exits; `check_ranges` refuses a
numeric flag outside its interval. Every common/ module that refuses
input raises one of these two; this module imports nothing of the project.

`parse_args(Args)` reads the command line through tyro with the same one-line rule: a value of
the wrong type, a choice that is not one, an unknown flag are each one `error: ...` line (exit 2)
instead of tyro's box, and `--help` shows the flags in the groups the dataclass marks with comment
lines (`# Data`, `# Runtime`, ...), each flag's docstring on one line.
"""

import ast
import dataclasses
import difflib
import inspect
import math
import os
import re
import sys
import textwrap
import typing

import tyro
import tyro._errors  # the parse-error hook of the pinned tyro (requirements.txt); see `parse_args`


class UsageError(ValueError):
    """Bad input from the user; the message is one line saying what was wrong and how to fix it."""


class DataError(ValueError):
    """A dataset is missing, corrupt or asked for wrongly; the message is one line saying how to fix it."""


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error (no traceback) and exit with `code`."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(code)


def check_ranges(args, ranges: dict) -> None:
    """Each flag named in `ranges` is a finite number in its interval, else a one-line UsageError.

    `ranges` maps a field of `args` to an interval written as in mathematics: "(0, 1]", "[1, inf)".
    A field left at None (an optional flag) passes; NaN and infinities never do.
    """
    for name, interval in ranges.items():
        value = getattr(args, name)
        if value is None:
            continue
        low, high = (float(bound) for bound in interval[1:-1].split(","))
        above = value > low if interval[0] == "(" else value >= low
        below = value < high if interval[-1] == ")" else value <= high
        if not (math.isfinite(value) and above and below):
            raise UsageError(f"--{name.replace('_', '-')} must be {_interval_words(interval, low, high)}, got {value}")


def _interval_words(interval: str, low: float, high: float) -> str:
    """ "[1, inf)" -> "at least 1", "(0, inf)" -> "positive", "[0, inf)" -> "0 or positive", else "in (0, 1]"."""
    if math.isinf(high):
        if interval[0] == "(":
            return "positive" if low == 0 else f"greater than {low:g}"
        return "0 or positive" if low == 0 else f"at least {low:g}"
    return f"in {interval}"


# ----------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------


def parse_args(args_type, argv=None):
    """The command line (`argv`, default sys.argv[1:]) as an `args_type`, a flat dataclass: `tyro.cli(args_type)`
    with one-line errors and grouped help (module docstring).

    For --help the fields are regrouped into one nested dataclass per comment group, with tyro's prefixes
    omitted, so the flags keep their names (`--env-id`); the result is flattened back into `args_type`, and
    the scripts read `args.env_id` as before. A flag whose default is None and whose docstring says its
    default ("default 20k on BSuite, 200k on Atari") shows that instead of tyro's "(default: None)".
    A rejected flag is caught through tyro's parse-error hook (`tyro._errors.on_parse_error`, private to
    tyro: its version is pinned); an event it does not know is left to tyro's own message.

    Also quiets TensorFlow's C++ start-up lines for the whole process and the processes it starts
    (TensorBoard imports TensorFlow under --track; only its file readers are used).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # its "oneDNN custom operations are on" line
    argv = list(sys.argv[1:] if argv is None else argv)
    groups = _field_groups(args_type)
    grouped = dataclasses.make_dataclass(
        args_type.__name__,
        [(name, tyro.conf.OmitArgPrefixes[group], dataclasses.field(default_factory=group)) for name, group in groups],
    )
    try:
        with tyro._errors.on_parse_error(lambda event: _reject(event, args_type, argv)):
            parsed = tyro.cli(grouped, args=argv)
    except BrokenPipeError:  # --help piped into a pager or head that stopped reading: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    return args_type(**{k: v for name, _ in groups for k, v in vars(getattr(parsed, name)).items()})


def _field_groups(args_type) -> list:
    """[(group name, dataclass of the group's fields)] in the order of `args_type`'s body: a group per
    `# Title (description)` comment line, each field with its docstring as its one-line help."""
    fields = {f.name: f for f in dataclasses.fields(args_type)}
    hints = typing.get_type_hints(args_type, include_extras=True)
    titles, docs = _comments_and_docstrings(args_type)
    members: dict = {}
    for name in fields:
        members.setdefault(titles.get(name, "other"), []).append(name)
    groups = []
    for title, names in members.items():
        label, _, description = title.partition("(")
        group = dataclasses.make_dataclass(
            re.sub(r"\W+", "_", label.strip().lower()).strip("_") or "options",
            [(name, _with_help(hints[name], fields[name], docs.get(name, "")), _same_default(fields[name])) for name in names],
        )
        group.__doc__ = description.strip().rstrip(")")
        groups.append((group.__name__, group))
    return groups


def _comments_and_docstrings(args_type) -> tuple:
    """({field: the last `# ...` comment line above it}, {field: its docstring on one line}) from the class's
    source; both empty when the source cannot be read (then --help shows one group without help)."""
    try:
        source = textwrap.dedent(inspect.getsource(args_type))
    except (OSError, TypeError):
        return {}, {}
    lines, body = source.splitlines(), ast.parse(source).body[0].body
    titles, docs, title, end = {}, {}, "options", 0
    for stmt, after in zip(body, body[1:] + [None]):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            comments = [line.strip()[1:].strip() for line in lines[end : stmt.lineno - 1] if line.strip().startswith("#")]
            title = comments[-1] if comments else title
            titles[stmt.target.id] = title
            if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
                docs[stmt.target.id] = " ".join(after.value.value.split())
        end = stmt.end_lineno
    return titles, docs


def _with_help(hint, field: dataclasses.Field, doc: str):
    """`hint` with `doc` as tyro's help; a None default that the docstring explains shows no "(default: None)"."""
    says_default = field.default is None and "default" in doc
    return typing.Annotated[hint, tyro.conf.arg(help=doc or None, help_behavior_hint="" if says_default else None)]


def _same_default(field: dataclasses.Field) -> dataclasses.Field:
    if field.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=field.default_factory)
    return dataclasses.field(default=field.default)


def _reject(event, args_type, argv: list) -> None:
    """tyro's parse-error hook: the event as one `error:` line (exit 2), or None to leave it to tyro."""
    prog = os.path.basename(event.prog.split()[0]) if event.prog else "the script"
    flags = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(args_type)]
    if isinstance(event, tyro._errors.UnrecognizedArgs) and event.tokens:
        token = event.tokens[0]
        if token.startswith("-"):
            close = difflib.get_close_matches(token.split("=")[0].replace("_", "-"), flags, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            fail(f"unknown flag {token}; {hint}(python {prog} --help lists the flags)")
        before = argv[argv.index(token) - 1] if token in argv and argv.index(token) > 0 else ""
        if _flag_name(before) in _switches(args_type):
            fail(f"{before} takes no value (write {before} or --no-{before[2:]}), got {token!r}")
        fail(f"unexpected argument {token!r}; flags are written --name value (python {prog} --help lists them)")
    flag = getattr(getattr(getattr(event, "argument", None), "lowered", None), "name_or_flags", None)
    if not flag:
        return None
    flag = flag[0]
    if isinstance(event, tyro._errors.InvalidChoice):
        fail(f"{flag} expects one of {', '.join(event.choices)}, got {event.value!r}")
    if isinstance(event, (tyro._errors.InstantiationFailure, tyro._errors.BadValue)):
        hint = typing.get_type_hints(args_type).get(_flag_name(flag))
        value = _value_given(flag, argv)
        fail(f"{flag} expects {_expected(hint)}, got {'no value' if value is None else repr(value)}")
    return None


def _flag_name(token: str) -> str:
    """'--total-steps=5' -> 'total_steps'."""
    return token.split("=")[0][2:].replace("-", "_") if token.startswith("--") else ""


def _switches(args_type) -> set:
    return {f.name for f in dataclasses.fields(args_type) if typing.get_type_hints(args_type).get(f.name) is bool}


def _value_given(flag: str, argv: list):
    """The value the last `flag` in `argv` was given ('--flag value' or '--flag=value'); None if it has none."""
    name = _flag_name(flag)
    for i in reversed(range(len(argv))):
        if _flag_name(argv[i]) == name:
            if "=" in argv[i]:
                return argv[i].split("=", 1)[1]
            return argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else None
    return None


def _expected(hint) -> str:
    """What a flag of type `hint` takes, in words: 'an integer', 'a number', 'one of a, b'."""
    options = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) is typing.Union else []
    hint = options[0] if len(options) == 1 else hint
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(str(choice) for choice in typing.get_args(hint))
    return {int: "an integer", float: "a number", str: "a string", bool: "no value"}.get(hint, f"a {hint}")
