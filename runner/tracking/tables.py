"""The store's tables beside the run records: metric points, logged params, tags, files.

A mixin of `Store` (store.py), kept apart so each module stays small. Metric points are
written in batches (one transaction per batch), so 100k points cost seconds, not minutes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from runner.tracking.db import Database

T = TypeVar("T")
BATCH = 20_000


class TablesMixin:
    """Reads and writes of metrics, logged_params, tags and files (needs Store's methods)."""

    _transaction: Callable[..., Any]
    _reading: Callable[[], AbstractContextManager[Database]]

    def add_metrics(self, run_id: str, points: Sequence[Sequence[Any]]) -> None:
        """Append metric points (key, value, step, timestamp) in batched transactions."""
        for start in range(0, len(points), BATCH):
            chunk = points[start : start + BATCH]
            self._transaction(lambda db, rows=chunk: write_metrics(db, run_id, rows))

    def set_pairs(self, table: str, run_id: str, pairs: dict[str, str]) -> None:
        """Set the run's logged params or tags (`table`) to `pairs`, its whole set."""
        self._transaction(lambda db: write_pairs(db, table, run_id, pairs))

    def pairs(self, table: str, run_id: str) -> dict[str, str]:
        """The run's logged params or tags (`table`) as the store has them."""
        assert table in ("logged_params", "tags")
        with self._reading() as db:
            rows = db.execute(f"SELECT key, value FROM {table} WHERE run_id = ?", (run_id,))
            return {str(key): str(value) for key, value in rows.fetchall()}

    def set_files(self, run_id: str, files: list[dict[str, Any]]) -> None:
        """Replace the run's input/output file rows (used for lineage lookups by hash)."""
        self._transaction(lambda db: write_files(db, run_id, files))

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float | None]]:
        """(step, value) points of one metric of one run, in step order."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT step, value FROM metrics WHERE run_id = ? AND key = ? ORDER BY step, ts",
                (run_id, key),
            ).fetchall()
        return [(int(step), value) for step, value in rows]

    def metric_points(self, run_id: str, key: str) -> list[tuple[int, float | None, float]]:
        """(step, value, timestamp) of every point of one metric, in step order: what a push
        to an MLflow server copies (None is a NaN point)."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT step, value, ts FROM metrics WHERE run_id = ? AND key = ?"
                " ORDER BY step, ts",
                (run_id, key),
            ).fetchall()
        return [(int(step), value, float(ts)) for step, value, ts in rows]

    def metric_buckets(
        self, run_id: str, key: str, buckets: int, by_time: bool = False
    ) -> list[tuple[float, float]]:
        """The metric's curve cut to at most 2 points per bucket of x (its lowest and highest
        value, at the bucket's first and last x), aggregated in SQL so a million points cost
        one scan and no Python loop. x is the step, or seconds since the first point."""
        x = "ts" if by_time else "step"
        with self._reading() as db:
            # Two queries: each is one index probe for the step (SQLite optimises a lone
            # MIN or MAX, not both in one SELECT).
            where = "FROM metrics WHERE run_id = ? AND key = ?"
            low = db.execute(f"SELECT MIN({x}) {where}", (run_id, key)).fetchone()[0]
            high = db.execute(f"SELECT MAX({x}) {where}", (run_id, key)).fetchone()[0]
            if low is None:
                return []
            span = float(high - low) or 1.0
            rows = db.execute(
                f"SELECT CAST(({x} - ?) * ? / ? AS BIGINT) AS b, MIN({x}), MAX({x}),"
                " MIN(value), MAX(value) FROM metrics WHERE run_id = ? AND key = ?"
                " AND value IS NOT NULL GROUP BY b ORDER BY b",
                (low, buckets, span * 1.000001, run_id, key),
            ).fetchall()
        origin = float(low) if by_time else 0.0
        points: list[tuple[float, float]] = []
        for _, x_first, x_last, v_low, v_high in rows:
            points.append((float(x_first) - origin, float(v_low)))
            if x_last != x_first or v_high != v_low:
                points.append((float(x_last) - origin, float(v_high)))
        return points

    def metric_count(self, run_id: str) -> int:
        """How many metric points the run has."""
        with self._reading() as db:
            return int(
                db.execute("SELECT COUNT(*) FROM metrics WHERE run_id = ?", (run_id,)).fetchone()[0]
            )

    def files_with_hash(self, sha256: str, direction: str) -> list[tuple[str, str]]:
        """(run id, path) of every file row with this hash and direction."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT run_id, path FROM files WHERE sha256 = ? AND direction = ?",
                (sha256, direction),
            ).fetchall()
        return [(str(a), str(b)) for a, b in rows]

    def files_with_path(self, path: str) -> Iterator[tuple[str, str, str]]:
        """(run id, direction, sha256) of every file row recorded under this path."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT run_id, direction, sha256 FROM files WHERE path = ?", (path,)
            ).fetchall()
        return iter([(str(a), str(b), str(c)) for a, b, c in rows])


# The writes themselves, inside the caller's transaction (the journal's replay applies many
# entries and its high-water mark in one transaction).


def write_metrics(db: Database, run_id: str, points: Sequence[Sequence[Any]]) -> None:
    """Insert metric points (key, value, step, timestamp)."""
    rows = [(run_id, *point) for point in points]
    db.insert_many("metrics", ("run_id", "key", "value", "step", "ts"), rows)


def write_pairs(db: Database, table: str, run_id: str, pairs: dict[str, str]) -> None:
    """Set the run's logged params or tags (`table`) to `pairs`, its whole set: a key gone from
    it (MLflow's `delete_tag`) leaves the table too."""
    assert table in ("logged_params", "tags")
    db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
    if pairs:
        rows = [(run_id, key, value) for key, value in pairs.items()]
        db.insert_many(table, ("run_id", "key", "value"), rows)


def write_files(db: Database, run_id: str, files: list[dict[str, Any]]) -> None:
    """Replace the run's input/output file rows."""
    db.execute("DELETE FROM files WHERE run_id = ?", (run_id,))
    rows = [(run_id, f["direction"], f["path"], f["sha256"], f["size"], f["source"]) for f in files]
    if rows:
        db.insert_many("files", ("run_id", "direction", "path", "sha256", "size", "source"), rows)
