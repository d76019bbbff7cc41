"""Argument helpers shared by the verbs that take parameters (run, rerun)."""

from __future__ import annotations

from collections.abc import Sequence

from runner.errors import ParamError

STORE_HELP = "run store: a directory (default ./runs) or a postgresql:// URL"


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """`-P name=value` items → dict; the first `=` splits, a repeated name is an error."""
    result: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ParamError(f"-P {item!r} has no '='", "write -P name=value")
        if name in result:
            raise ParamError(f"parameter '{name}' is given twice", "pass each -P name once")
        result[name] = value
    return result
