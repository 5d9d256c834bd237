"""The two kinds of error a user can cause, and the one way the scripts report them.

`UsageError` is a bad flag or environment setting; `DataError` is a dataset that is missing,
corrupt or asked for wrongly. Each message is one line saying what was wrong and how to fix it,
and `fail` prints it as `error: ...` (no traceback) and exits; `check_ranges` refuses a
numeric flag outside its interval. Every common/ module that refuses
input raises one of these two; this module imports nothing of the project.
"""

import math
import sys


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
