"""`runs list` in SQL: filters, sort and limit run in the database over `run_values`
(runindex.py), and only the records shown are read and parsed.

The answer is the one query.py's Python filters give over every parsed record: numbers
compare as numbers when both sides are numbers, else as text; a run without the value is
left out by a filter and sorted last; equal values keep the newest-first order. A store whose
schema predates `run_values` and cannot be upgraded (a read-only disk), or a sort on a field
that is not indexed, takes the Python path.

Every value reaches the database as a bound parameter; operators and column names come from
fixed tables here, never from the user's text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from runner.errors import UsageError
from runner.tracking import query, runindex
from runner.tracking.db import Database
from runner.tracking.migrations import SCHEMA_VERSION
from runner.tracking.query import Condition
from runner.tracking.store import Store, run_filters

SQL_OPS = {"=": "=", "==": "=", "!=": "<>", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
INDEX_VERSION = 3  # the schema version that added run_values
FETCH_PAGE = 500
Clause = tuple[str, list[Any]]


def select_runs(
    store: Store,
    experiment: str | None,
    status: str | None,
    conditions: list[Condition],
    sort: str | None,
    limit: int | None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Records matching every condition, sorted by `sort` (else newest first), at most
    `limit` of them (None or 0: all), after skipping `offset` (a page of the web UI)."""
    if limit is not None and limit < 0:
        raise UsageError(f"--limit {limit} is negative", "pass --limit N with N >= 0 (0: all)")
    if limit is not None and limit >= 2**62:  # more than any store holds; SQL's int is 64-bit
        limit = None
    if not conditions and not sort:
        return store.list_runs(experiment, status, limit or None, offset)
    order = _order(sort) if sort else None
    if (sort and order is None) or not _indexed(store):
        found = _in_python(store, experiment, status, conditions, sort, None)[offset:]
        return found[:limit] if limit else found
    where, args = _where(experiment, status, conditions)
    join, join_args, order_by = order or ("", [], "runs.start_time DESC, runs.id")
    sql = f"SELECT runs.id FROM runs{join}{where} ORDER BY {order_by}"
    args = [*join_args, *args]
    if limit or offset:
        sql += " LIMIT ? OFFSET ?"
        args += [limit or 2**62, offset]
    with store._reading() as db, _snapshot(db):
        ids = [str(row[0]) for row in db.execute(sql, args).fetchall()]
        return _records(db, ids)


def count_runs(
    store: Store, experiment: str | None, status: str | None, conditions: list[Condition]
) -> int:
    """How many runs `select_runs` would return without a limit (the pages of the web UI)."""
    if not store.exists():
        return 0
    if not _indexed(store):
        runs = store.list_runs(experiment, status, None)
        return sum(all(c.matches(r) for c in conditions) for r in runs)
    where, args = _where(experiment, status, conditions)
    with store._reading() as db:
        return int(db.execute(f"SELECT COUNT(*) FROM runs{where}", args).fetchone()[0])


@contextmanager
def _snapshot(db: Database) -> Iterator[None]:
    """One read snapshot for the ids and their records, so a run that a concurrent writer
    changes in between is shown as it was when it matched."""
    if db.dialect != "sqlite":
        db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # ended by _reading
        yield
        return
    db.execute("BEGIN")
    try:
        yield
    finally:
        db.execute("COMMIT")


def _indexed(store: Store) -> bool:
    """Whether the store has run_values (upgrading a writable store that predates it)."""
    if not store.exists():
        return False
    version = _version(store)
    if version < INDEX_VERSION and store.writable():
        store.connect(write=True)  # migrates, back-filling run_values in one transaction
        version = _version(store)
    return version >= INDEX_VERSION and version <= SCHEMA_VERSION


def _version(store: Store) -> int:
    with store._reading() as db:
        tables = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    return int(tables[0][0]) if tables else 0


def _where(experiment: str | None, status: str | None, conditions: list[Condition]) -> Clause:
    parts, args = run_filters(experiment, status)
    for condition in conditions:
        sql, more = _condition(condition)
        parts.append(sql)
        args += more
    return (" WHERE " + " AND ".join(parts) if parts else ""), args


def _condition(condition: Condition) -> Clause:
    """EXISTS over the run's value; the comparison as query._comparable makes it."""
    head = (
        "EXISTS (SELECT 1 FROM run_values v WHERE v.run_id = runs.id AND v.kind = ? AND v.name = ?"
    )
    args: list[Any] = [condition.kind, condition.name]
    if condition.op is None or condition.value is None:
        return head + ")", args
    op = SQL_OPS[condition.op]
    wanted = runindex.number(condition.value)
    as_text = f"(v.isnum = 0 AND v.txt {op} ?)"
    if wanted is None:  # text on the right: everything compares as text
        return f"{head} AND v.txt {op} ?)", [*args, runindex.text(condition.value)]
    if math.isnan(wanted):  # NaN equals nothing, orders before nothing; only != holds
        numbers = "v.isnum = 1" if condition.op == "!=" else "1 = 0"
        return f"{head} AND ({numbers} OR {as_text}))", [*args, runindex.text(condition.value)]
    numbers = f"(v.isnum = 1 AND v.num {op} ?)"
    if condition.op == "!=":
        numbers += " OR (v.isnum = 1 AND v.num IS NULL)"  # a NaN on the left differs
    sql = f"{head} AND ({numbers} OR {as_text}))"
    return sql, [*args, wanted, runindex.text(condition.value)]


def _order(key: str) -> tuple[str, list[Any], str] | None:
    """LEFT JOIN and ORDER BY for query.sort_runs' order: numbers before text ascending (the
    reverse descending), a run without the value last, ties newest first. None: not indexed."""
    descending, kind, name = query.parse_sort(key)
    if kind == "field" and name not in runindex.FIELDS:
        return None
    join = " LEFT JOIN run_values s ON s.run_id = runs.id AND s.kind = ? AND s.name = ?"
    way = " DESC" if descending else ""
    order = (
        "CASE WHEN s.run_id IS NULL THEN 1 ELSE 0 END, "
        f"CASE WHEN s.isnum = 1 THEN 0 ELSE 1 END{way}, "
        "CASE WHEN s.isnum = 1 AND s.num IS NULL THEN 1 ELSE 0 END, "  # NaN after numbers
        f"CASE WHEN s.isnum = 1 THEN s.num END{way}, "
        f"CASE WHEN s.isnum = 0 THEN s.txt END{way}, "
        "runs.start_time DESC, runs.id"
    )
    return join, [kind, name], order


def _records(db: Database, ids: list[str]) -> list[dict[str, Any]]:
    """The records of `ids`, in that order, read a page at a time."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), FETCH_PAGE):
        page = ids[start : start + FETCH_PAGE]
        marks = ", ".join("?" for _ in page)
        rows = db.execute(f"SELECT id, record FROM runs WHERE id IN ({marks})", page)
        for run_id, text in rows.fetchall():
            found[str(run_id)] = json.loads(text)
    return [found[i] for i in ids if i in found]


def _in_python(
    store: Store,
    experiment: str | None,
    status: str | None,
    conditions: list[Condition],
    sort: str | None,
    limit: int | None,
) -> list[dict[str, Any]]:
    """The reference answer: parse every record, filter, sort and cut in Python."""
    records = store.list_runs(experiment, status, None)
    records = [r for r in records if all(c.matches(r) for c in conditions)]
    if sort:
        records = query.sort_runs(records, sort)
    return records[:limit] if limit else records
