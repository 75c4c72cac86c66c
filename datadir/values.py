"""The rules a value must follow, in one place for every command line and for the hub's Python API, so that a bad
value is refused with the same words everywhere: scripts/cli.py and data-bin-prep/prepare.py wrap the rules as
argparse types (`error: argument --beam: must be >= 1, got 0`), cgc_fairseq.hub checks its arguments with
`check` (`ValueError: beam: must be >= 1, got 0`). A rule takes a value or its command-line text and returns the
value, or raises ValueError in its own words.

Also the longest sentence the models take and the words of its warning: every arch here has fairseq's 1024 source
and target positions (EOS included); a longer sentence is truncated to them, with a warning, wherever it enters
(the data preparation, scripts/evaluate.py, the hub, scripts/translate.py).
"""
import argparse
import math
import numbers

MAX_POSITIONS = 1024  # fairseq's LightConv default (--max-source-positions, --max-target-positions), EOS included


def _number(value, kind):
    """value, or its command-line text, as an int (kind int) or a float (kind float); ValueError otherwise."""
    what = "an integer" if kind is int else "a number"
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            raise ValueError(f"must be {what}, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if kind is int else numbers.Real):
        raise ValueError(f"must be {what}, got {value!r}")
    return kind(value)


def at_least(low):
    """The rule: an integer >= low."""

    def rule(value):
        value = _number(value, int)
        if value < low:
            raise ValueError(f"must be >= {low}, got {value}")
        return value

    rule.__name__ = f"integer_at_least_{low}"
    return rule


positive_int = at_least(1)
nonnegative_int = at_least(0)


def finite_float(value):
    """The rule: a finite number (no nan, no inf)."""
    value = _number(value, float)
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value}")
    return value


def finite_above(low, or_equal):
    """The rule: a finite number > low (>= low when or_equal)."""

    def rule(value):
        value = finite_float(value)
        if value < low or value == low and not or_equal:
            raise ValueError(f"must be {'>=' if or_equal else '>'} {low:g}, got {value:g}")
        return value

    rule.__name__ = f"number_{'at_least' if or_equal else 'above'}_{low:g}"
    return rule


positive_float = finite_above(0, or_equal=False)
nonnegative_float = finite_above(0, or_equal=True)


def check(name, rule, value):
    """rule(value) for the Python API: its ValueError names the argument (`beam: must be >= 1, got 0`)."""
    try:
        return rule(value)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def argument_type(rule):
    """rule as an argparse type (argparse puts the option's name in front: `argument --beam: must be ...`)."""

    def parse(text):
        try:
            return rule(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = rule.__name__
    return parse


def truncated(where, limit=MAX_POSITIONS):
    """The warning for sentences longer than a model's `limit` positions, truncated to them."""
    return f"{where}: longer than {limit} tokens (the model's maximum, EOS included): truncated to its first " \
           f"{limit - 1} tokens and EOS"


def listing(numbers, shown=10):
    """Line numbers for a message: `line 3`, `lines 3, 5`, the first `shown` and how many more."""
    more = f" and {len(numbers) - shown} more" if len(numbers) > shown else ""
    return ("line " if len(numbers) == 1 else "lines ") + ", ".join(map(str, numbers[:shown])) + more


def json_safe(obj):
    """obj with every nan or infinite float replaced by None: strict JSON has no NaN or Infinity."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
