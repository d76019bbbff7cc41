"""Filters and sort keys for `runs list`: `--param lr>0.01`, `--metric acc`, `--sort metric.acc`.

A condition is NAME, or NAME OP VALUE with OP one of `= == != > >= < <=`. Values compare as
numbers when both sides are numbers, else as text. A parameter is looked up among the command
line/manifest parameters first, then those logged from inside the run; a metric by its last value.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runner.errors import UsageError
from runner.tracking.runindex import lookup  # beside the index it defines (a run needs it)

OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "!=": operator.ne,
    "==": operator.eq,
    "=": operator.eq,
    ">": operator.gt,
    "<": operator.lt,
}
CONDITION = re.compile(
    r"^\s*([A-Za-z_][A-Za-z0-9_.\-/]*)\s*(?:(>=|<=|!=|==|=|>|<)\s*([^<>=!\s].*?))?\s*$"
)


@dataclass(frozen=True)
class Condition:
    """One `--param`/`--metric` filter."""

    kind: str  # "param" or "metric"
    name: str
    op: str | None
    value: str | None

    def matches(self, record: dict[str, Any]) -> bool:
        """Whether the record has the value and it satisfies the comparison."""
        found = lookup(record, self.kind, self.name)
        if found is None:
            return False
        if self.op is None or self.value is None:
            return True
        left, right = _comparable(found, self.value)
        try:
            return OPS[self.op](left, right)
        except TypeError:
            return False


def parse_condition(kind: str, text: str) -> Condition:
    """`lr>0.01` → Condition; a malformed condition is an error with an example."""
    match = CONDITION.match(text)
    if not match:
        raise UsageError(
            f"--{kind} {text!r} is not a condition",
            f"write --{kind} NAME or --{kind} 'NAME>VALUE' (operators: = != > >= < <=)",
        )
    name, op, value = match.groups()
    return Condition(kind, name, op, value)


def parse_sort(key: str) -> tuple[bool, str, str]:
    """`-metric.acc` → (descending, kind, name); a bare name is a field (`start_time`)."""
    descending = key.startswith("-")
    field = key.lstrip("-")
    kind, _, name = field.partition(".")
    if not name:
        kind, name = "field", field
    if kind not in ("metric", "param", "field"):
        raise UsageError(
            f"--sort {key!r}: unknown kind {kind!r}",
            "sort by metric.NAME, param.NAME or a field such as start_time ('-' for descending)",
        )
    return descending, kind, name


def sort_runs(records: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Sort by `metric.NAME`, `param.NAME` or a field (`start_time`); `-` in front: descending.
    Runs without the value go last either way."""
    descending, kind, name = parse_sort(key)
    present = [r for r in records if lookup(r, kind, name) is not None]
    absent = [r for r in records if lookup(r, kind, name) is None]

    def order(record: dict[str, Any]) -> tuple[int, Any]:
        value = _number(lookup(record, kind, name))
        return (0, value) if isinstance(value, float) else (1, str(value))

    return sorted(present, key=order, reverse=descending) + absent


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _comparable(found: Any, wanted: str) -> tuple[Any, Any]:
    left, right = _number(found), _number(wanted)
    if isinstance(left, float) and isinstance(right, float):
        return left, right
    return str(found), wanted
