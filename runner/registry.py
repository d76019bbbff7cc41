"""Name → class tables whose modules are imported only when a name is looked up.

Env kinds and backends register the same way: `"name": "package.module:Class"`. A run
imports the one it uses, so a local run never loads the docker, virtualenv, Ray or Slurm
code (tests/test_warm_start.py checks the loaded modules).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TypeVar, cast

T = TypeVar("T")


class Registry(Mapping[str, T]):
    """`registry[name]` imports the module of `name` and returns its class (or factory)."""

    def __init__(self, table: Mapping[str, str]) -> None:
        self._table = dict(table)

    def __getitem__(self, name: str) -> T:
        module, _, attr = self._table[name].partition(":")
        return cast(T, getattr(importlib.import_module(module), attr))

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)
