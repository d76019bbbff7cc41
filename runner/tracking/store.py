"""The run store: records in SQLite (`<dir>/runs.db`), artifacts beside it (`<dir>/artifacts/`).

Many runs write one store at once, so every write is a short `BEGIN IMMEDIATE` transaction
under WAL with a generous busy_timeout: writers queue instead of failing with
"database is locked". The record is one JSON document; the columns beside it exist for
listing and filtering.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from runner.errors import StoreError
from runner.tracking.record import ACTIVE, iso

BUSY_TIMEOUT_MS = 60_000
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    run_name TEXT,
    status TEXT NOT NULL,
    start_time REAL NOT NULL,
    end_time REAL,
    heartbeat_at REAL NOT NULL,
    host TEXT,
    runner_pid INTEGER,
    exit_code INTEGER,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (start_time DESC);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status);
"""
T = TypeVar("T")


def open_store(location: str | None) -> SQLiteStore:
    """The store at `location` (a directory; `sqlite:///dir` also accepted)."""
    raw = location or "./runs"
    if raw.startswith(("postgresql://", "postgres://")):
        raise StoreError(
            f"store {raw.split('@')[-1]!r}: PostgreSQL stores are not available in this version",
            "use a directory path for --store",
        )
    if raw.startswith("sqlite:///"):
        raw = raw[len("sqlite:///") - 1 :]
    return SQLiteStore(Path(raw).expanduser().absolute())


class SQLiteStore:
    """Run records in SQLite; artifacts under `artifacts/<run id>/`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db_path = root / "runs.db"
        self._conn: sqlite3.Connection | None = None

    # -- connection -----------------------------------------------------------------------
    def connect(self, write: bool = True) -> sqlite3.Connection:
        """Open (creating on first write) the database; errors name the store and the fix."""
        if self._conn is not None:
            return self._conn
        if not write and not self.db_path.exists():
            raise StoreError(f"no run store at {self.root}", "run a project first, or pass --store")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute("PRAGMA synchronous = NORMAL")
            self._conn = conn
            if write:
                self._transaction(_create_schema)
        except (OSError, sqlite3.Error) as exc:
            self._conn = None
            raise self._error(exc) from exc
        return conn

    def _error(self, exc: Exception) -> StoreError:
        text = str(exc)
        if isinstance(exc, PermissionError) or "readonly" in text or _read_only_fs(self.root):
            return StoreError(
                f"run store {self.root} is read-only ({text})",
                "pass --store DIR (or set RUN_PROJECT_STORE) to a writable directory",
            )
        return StoreError(f"run store {self.db_path}: {text}", "check the path and disk space")

    def _retry(self, action: Callable[[], T]) -> T:
        # SQLite skips the busy handler in a few cases (switching to WAL while another
        # connection does the same); retry those instead of surfacing "database is locked".
        for attempt in range(200):
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or attempt == 199:
                    raise
                time.sleep(0.01 + 0.005 * attempt)
        raise AssertionError("unreachable")

    def _transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        conn = self.connect()

        def attempt() -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        try:
            return self._retry(attempt)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self.connect(write=False)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    # -- writes ---------------------------------------------------------------------------
    def create_run(self, record: dict[str, Any]) -> None:
        """Insert a new run record (before any slow step, so every failure can be recorded)."""
        try:
            self.artifact_dir(record["id"]).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error(exc) from exc
        self._transaction(
            lambda c: c.execute(
                "INSERT INTO runs (id, experiment, run_name, status, start_time, heartbeat_at,"
                " host, runner_pid, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record["id"],
                    record["experiment"],
                    record["run_name"],
                    record["status"],
                    time.time(),
                    time.time(),
                    record["runner"]["host"],
                    record["runner"]["pid"],
                    json.dumps(record),
                ),
            )
        )

    def update_run(self, run_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge `changes` into the record (read-modify-write in one transaction)."""

        def body(conn: sqlite3.Connection) -> dict[str, Any]:
            row = conn.execute("SELECT record FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"run {run_id} is not in the store {self.root}", "check the id")
            record: dict[str, Any] = json.loads(row[0])
            record.update(changes)
            end = time.time() if changes.get("end_time") else None
            conn.execute(
                "UPDATE runs SET status = ?, exit_code = ?, end_time = COALESCE(?, end_time),"
                " heartbeat_at = ?, record = ? WHERE id = ?",
                (
                    record["status"],
                    record.get("exit_code"),
                    end,
                    time.time(),
                    json.dumps(record),
                    run_id,
                ),
            )
            return record

        return self._transaction(body)

    def heartbeat(self, run_id: str) -> None:
        """Mark the run alive now (a runner that stops beating is presumed dead: LOST)."""
        now = time.time()

        def body(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (now, run_id))

        self._transaction(body)

    def sweep_lost(self) -> int:
        """Close runs whose runner died (same host, pid gone) or stopped beating: LOST."""
        if not self.db_path.exists():
            return 0
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT id, host, runner_pid, heartbeat_at, record FROM runs"
                " WHERE status IN (?, ?)",
                ACTIVE,
            ).fetchall()
        lost = [row[0] for row in rows if _is_lost(row[1], row[2], row[3], json.loads(row[4]))]
        for run_id in lost:
            self._mark_lost(run_id)
        return len(lost)

    def _mark_lost(self, run_id: str) -> None:
        def body(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT status, record FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None or row[0] not in ACTIVE:
                return  # it finished while we looked
            record = json.loads(row[1])
            record.update(
                status="LOST",
                end_time=iso(time.time()),
                reason=("the runner stopped sending heartbeats (killed or its machine went down)"),
            )
            conn.execute(
                "UPDATE runs SET status = 'LOST', end_time = ?, record = ? WHERE id = ?",
                (time.time(), json.dumps(record), run_id),
            )

        self._transaction(body)

    # -- reads ----------------------------------------------------------------------------
    def get_run(self, id_or_prefix: str) -> dict[str, Any]:
        """The record whose id is, or uniquely starts with, `id_or_prefix`."""
        prefix = id_or_prefix.strip().lower()
        if not prefix or not all(c in "0123456789abcdef" for c in prefix):
            raise StoreError(
                f"{id_or_prefix!r} is not a run id", "run ids are hex; see `runs list`"
            )
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT record FROM runs WHERE id LIKE ? LIMIT 2", (prefix + "%",)
            ).fetchall()
        if not rows:
            raise StoreError(f"no run {id_or_prefix} in the store {self.root}", "see `runs list`")
        if len(rows) > 1:
            raise StoreError(f"run id prefix {id_or_prefix} is ambiguous", "type more characters")
        record: dict[str, Any] = json.loads(rows[0][0])
        return record

    def list_runs(
        self, experiment: str | None = None, status: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Records, newest first, optionally filtered (none yet if the store is new)."""
        if not self.db_path.exists():
            return []
        where, args = [], []
        if experiment:
            where.append("experiment = ?")
            args.append(experiment)
        if status:
            where.append("status = ?")
            args.append(status.upper())
        sql = "SELECT record FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start_time DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self._reading() as conn:
            return [json.loads(row[0]) for row in conn.execute(sql, args)]

    def artifact_dir(self, run_id: str) -> Path:
        """Where this run's logs, events and artifacts live."""
        return self.root / "artifacts" / run_id

    def close(self) -> None:
        """Close the connection (the store can be reopened)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _create_schema(conn: sqlite3.Connection) -> None:
    # One statement at a time: executescript() would COMMIT our BEGIN IMMEDIATE early.
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def _is_lost(host: str, pid: int, heartbeat_at: float, record: dict[str, Any]) -> bool:
    interval = float(record.get("runner", {}).get("heartbeat_seconds", 5))
    if time.time() - heartbeat_at > 3 * interval + 10:
        return True
    if host == socket.gethostname() and pid:
        return not _pid_alive(pid)
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (dead, not yet reaped) counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
