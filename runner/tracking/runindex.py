"""The values `runs list` filters and sorts on, kept beside each record in `run_values`.

One row per (run, kind, name): every parameter (declared first, then logged, as `lookup`
finds it), every metric's last value and the scalar top-level fields in FIELDS. Rows are
derived from the record JSON by `lookup`, the function query.py's filters use, and written
in the same transaction as the record, so the index and the record never disagree and SQL
answers exactly what the Python filters over parsed records would.

A value is stored twice: `num` (its float, as query._number makes it; NULL for NaN and for
text) with `isnum` saying whether it is a number at all, and `txt`, str(value) as UTF-8
bytes. Bytes compare bytewise in both SQLite (BLOB) and PostgreSQL (BYTEA), which is code
point order, Python's str order, whatever the server's collation; NUL bytes are allowed.
"""

from __future__ import annotations

import json
import math
from typing import Any

from runner.tracking.db import Database

# Top-level record fields one sorts runs by; all are scalars (text, number or null) in the
# record schema. A sort on any other field keeps the Python path (listing.py): each field
# here costs a row per run.
FIELDS = ("experiment", "run_name", "status", "exit_code", "entry_point", "start_time", "end_time")
COLUMNS = ("run_id", "kind", "name", "num", "isnum", "txt")
Value = tuple[str, str, float | None, int, bytes]  # kind, name, num, isnum, txt
BACKFILL_PAGE = 500


def lookup(record: dict[str, Any], kind: str, name: str) -> Any:
    """The run's value for `param.NAME`, `metric.NAME` or a top-level field; None if absent."""
    if kind == "param":
        declared = (record.get("params") or {}).get(name)
        if declared is not None:
            return declared.get("value")
        return (record.get("logged_params") or {}).get(name)
    if kind == "metric":
        summary = (record.get("metrics") or {}).get(name)
        return None if summary is None else summary.get("last")
    return record.get(name)


def number(value: Any) -> float | None:
    """The float query._comparable would compare, or None when it compares as text."""
    if isinstance(value, float):
        return value
    if isinstance(value, (dict, list)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):  # an int too large for a float: text
        return None


def text(value: Any) -> bytes:
    """str(value) as bytes whose order is Python's str order (lone surrogates kept)."""
    return str(value).encode("utf-8", "surrogatepass")


def _row(kind: str, name: str, value: Any) -> Value:
    found = number(value)
    num = None if found is None or math.isnan(found) else found
    return (kind, name, num, 0 if found is None else 1, text(value))


def values(record: dict[str, Any]) -> set[Value]:
    """The index rows of one record (absent and null values have none)."""
    rows: set[Value] = set()
    params, logged = record.get("params"), record.get("logged_params")
    names = set(params if isinstance(params, dict) else ())
    names |= set(logged if isinstance(logged, dict) else ())
    metrics = record.get("metrics")
    wanted = [("param", n) for n in names] + [("field", f) for f in FIELDS]
    wanted += [("metric", n) for n in (metrics if isinstance(metrics, dict) else ())]
    for kind, name in wanted:
        try:
            found = lookup(record, kind, name)
        except AttributeError:  # a malformed section: the Python filter could not read it
            continue
        if found is not None:
            rows.add(_row(kind, name, found))
    return rows


def write(db: Database, run_id: str, record_json: str, new_run: bool = False) -> None:
    """Make the run's rows those of `record_json` (inside the caller's transaction). The rows
    there are read and compared, not assumed: a record that some other writer changed without
    its rows (a runner from before run_values, still running across an upgrade) is healed."""
    rows = values(json.loads(record_json))
    if not new_run:
        if rows == stored(db, run_id):
            return
        db.execute("DELETE FROM run_values WHERE run_id = ?", (run_id,))
    if rows:
        db.insert_many("run_values", COLUMNS, [(run_id, *row) for row in sorted(rows, key=_key)])


def stored(db: Database, run_id: str) -> set[Value]:
    """The rows the store holds for the run."""
    found = db.execute(
        "SELECT kind, name, num, isnum, txt FROM run_values WHERE run_id = ?", (run_id,)
    ).fetchall()
    return {(str(k), str(n), v, int(i), bytes(t)) for k, n, v, i, t in found}


def _key(row: Value) -> tuple[str, str]:
    return row[0], row[1]


def backfill(db: Database) -> None:
    """Index every existing run (the migration that adds run_values), a page at a time so
    memory stays bounded however many runs the store holds."""
    last = ""
    while True:
        page = db.execute(
            "SELECT id, record FROM runs WHERE id > ? ORDER BY id LIMIT ?", (last, BACKFILL_PAGE)
        ).fetchall()
        if not page:
            return
        rows = []
        for run_id, record_json in page:
            try:
                record = json.loads(record_json)
            except ValueError:  # an unreadable record cannot match a filter either
                continue
            if isinstance(record, dict):
                rows += [(run_id, *row) for row in sorted(values(record), key=_key)]
        if rows:
            db.insert_many("run_values", COLUMNS, rows)
        last = str(page[-1][0])
