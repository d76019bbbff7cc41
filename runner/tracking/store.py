"""The run store: records in SQLite (`<dir>/runs.db`, artifacts beside it in `<dir>/artifacts/`)
or PostgreSQL (a `postgresql://` URL; artifacts in RUN_PROJECT_ARTIFACTS), through one code path.

Many runs write one store at once, so every write is a short transaction (SQLite:
`BEGIN IMMEDIATE` under WAL with a generous busy_timeout: writers queue instead of failing
with "database is locked"). The record is one JSON document; the columns beside it exist for
listing and filtering; metric points, logged params, tags and files are in tables.py.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from runner import settings
from runner.errors import RunnerError, StoreError
from runner.pids import pid_alive
from runner.tracking import migrations, runindex
from runner.tracking.db import Database, SQLiteDatabase, redact
from runner.tracking.record import ACTIVE, iso
from runner.tracking.tables import TablesMixin

T = TypeVar("T")


def open_store(location: str | None, artifacts: str | None = None) -> Store:
    """The store at `location`: a directory (`sqlite:///dir` also accepted) or a
    `postgresql://` URL. Artifacts go to `artifacts`, else beside a SQLite store, else
    `./runs/artifacts` for PostgreSQL."""
    raw = location or "./runs"
    if raw.startswith(("postgresql://", "postgres://")):
        root = Path(artifacts or "./runs/artifacts").expanduser().absolute()
        from runner.tracking.postgres import PostgresDatabase

        db = PostgresDatabase(raw)
        # A server that goes away mid-run is waited for; the run's data stays in memory
        # and in its local run directory meanwhile (never dropped).
        db.reconnect_seconds = settings.get_float("store_retry_seconds")
        return Store(db, root, label=redact(raw))
    if raw.startswith("sqlite:///"):
        raw = raw[len("sqlite:///") - 1 :]
    store = SQLiteStore(Path(raw).expanduser().absolute())
    if artifacts:
        store.artifacts_root = Path(artifacts).expanduser().absolute()
    return store


class Store(TablesMixin):
    """Run records (and metrics, params, tags, files) in a database; artifacts in a directory."""

    def __init__(self, db: Database, artifacts_root: Path, label: str) -> None:
        self.db = db
        self.artifacts_root = artifacts_root
        self.label = label
        self.root = artifacts_root  # where a run's files live; SQLite stores override it
        self._migrated = False

    def reopen(self) -> Store:
        """The same store on a new connection (for another thread)."""
        other = Store(self.db.fresh(), self.artifacts_root, self.label)
        other.root = self.root
        return other

    def exists(self) -> bool:
        """Whether there is anything to read (a SQLite file may not exist yet)."""
        return True

    def writable(self) -> bool:
        """Whether this runner can write the store (a read-only disk can still be listed)."""
        return True

    def excluded_paths(self) -> tuple[Path, ...]:
        """Directories a run's capture must never treat as its inputs or outputs."""
        paths = [self.root, self.artifacts_root]
        with contextlib.suppress(RunnerError):
            paths.append(settings.cache_dir())
        return tuple(paths)

    # -- connection -----------------------------------------------------------------------
    def connect(self, write: bool = True) -> Any:
        """Open the database (creating or migrating its schema on first write)."""
        if not write and not self.exists():
            raise StoreError(
                f"no run store at {self.label}", "run a project first, or pass --store"
            )
        try:
            self._prepare(write)
            self.db.connect_waiting()
            # PostgreSQL: readers migrate too, so a fresh database lists as empty.
            if (write or self.db.dialect != "sqlite") and not self._migrated:
                migrations.migrate(self.db)
                self._migrated = True
        except self._errors() as exc:
            self.db.close()
            raise self._error(exc) from exc
        return self.db.conn

    def _errors(self) -> tuple[type[Exception], ...]:
        return (OSError, *self.db.driver_errors())

    def _prepare(self, write: bool) -> None:
        """Dialect-specific preparation before connecting (SQLite makes its directory)."""

    def _error(self, exc: Exception) -> StoreError:
        text = str(exc).strip()
        denied = isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
        if (
            denied
            or isinstance(exc, PermissionError)
            or "readonly" in text.lower().replace("-", "")
        ):
            return StoreError(
                f"run store {self.label} is read-only ({text})",
                "pass --store DIR (or set RUN_PROJECT_STORE) to a writable directory",
            )
        if self.db.dialect == "postgresql":
            return StoreError(
                f"run store {self.label}: {text}",
                "check that PostgreSQL is running and the URL, user and password are right",
            )
        return StoreError(f"run store {self.label}: {text}", "check the path and disk space")

    def _transaction(self, body: Callable[[Database], T]) -> T:
        self.connect()
        try:
            return self.db.transaction(body)
        except self._errors() as exc:
            raise self._error(exc) from exc

    @contextmanager
    def _reading(self) -> Iterator[Database]:
        self.connect(write=False)
        try:
            yield self.db
        except self.db.driver_errors() as exc:
            raise self._error(exc) from exc
        finally:
            if self.db.dialect != "sqlite" and self.db.conn is not None:
                self.db.conn.rollback()

    # -- writes ---------------------------------------------------------------------------
    def create_run(self, record: dict[str, Any]) -> None:
        """Insert a new run record (before any slow step, so every failure can be recorded)."""
        try:
            self.artifact_dir(record["id"]).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error(exc) from exc
        text = json.dumps(record)

        def body(db: Database) -> None:
            db.execute(
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
                    text,
                ),
            )
            runindex.write(db, record["id"], text, new_run=True)  # one transaction: in step

        self._transaction(body)

    def update_run(self, run_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge `changes` into the record (read-modify-write in one transaction)."""

        def body(db: Database) -> dict[str, Any]:
            row = db.execute(
                "SELECT record FROM runs WHERE id = ?" + db.locking_read, (run_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"run {run_id} is not in the store {self.label}", "check the id")
            record: dict[str, Any] = json.loads(row[0])
            record.update(changes)
            end = time.time() if changes.get("end_time") else None
            text = json.dumps(record)
            db.execute(
                "UPDATE runs SET status = ?, exit_code = ?, end_time = COALESCE(?, end_time),"
                " heartbeat_at = ?, record = ? WHERE id = ?",
                (
                    record["status"],
                    record.get("exit_code"),
                    end,
                    time.time(),
                    text,
                    run_id,
                ),
            )
            runindex.write(db, run_id, text)
            return record

        try:
            return self._transaction(body)
        except StoreError as exc:
            kept = self._keep_locally(run_id, changes)
            if kept is None:
                raise
            raise StoreError(
                f"{exc.message}; the run's results are kept in {kept}", exc.hint
            ) from exc

    def _keep_locally(self, run_id: str, changes: dict[str, Any]) -> Path | None:
        """A record update the database refused, saved beside the run's files (never dropped)."""
        path = self.artifact_dir(run_id) / "pending-updates.jsonl"
        try:
            with open(path, "a") as out:
                out.write(json.dumps(changes) + "\n")
        except OSError:
            return None
        return path

    def heartbeat(self, run_id: str) -> None:
        """Mark the run alive now (a runner that stops beating is presumed dead: LOST)."""
        now = time.time()

        def body(db: Database) -> None:
            db.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (now, run_id))

        self._transaction(body)

    def sweep_lost(self) -> int:
        """Close runs whose runner died (same host, pid gone) or stopped beating: LOST."""
        if not self.exists() or not self.writable():
            return 0
        with self._reading() as db:
            rows = db.execute(
                "SELECT id, host, runner_pid, heartbeat_at, record FROM runs"
                " WHERE status IN (?, ?)",
                ACTIVE,
            ).fetchall()
        lost = [row[0] for row in rows if _is_lost(row[1], row[2], row[3], json.loads(row[4]))]
        for run_id in lost:
            self._mark_lost(run_id)
        return len(lost)

    def _mark_lost(self, run_id: str) -> None:
        def body(db: Database) -> None:
            row = db.execute(
                "SELECT status, record FROM runs WHERE id = ?" + db.locking_read, (run_id,)
            ).fetchone()
            if row is None or row[0] not in ACTIVE:
                return  # it finished while we looked
            record = json.loads(row[1])
            record.update(
                status="LOST",
                end_time=iso(time.time()),
                reason=("the runner stopped sending heartbeats (killed or its machine went down)"),
            )
            text = json.dumps(record)
            db.execute(
                "UPDATE runs SET status = 'LOST', end_time = ?, record = ? WHERE id = ?",
                (time.time(), text, run_id),
            )
            runindex.write(db, run_id, text)

        self._transaction(body)

    # -- reads ----------------------------------------------------------------------------
    def get_run(self, id_or_prefix: str) -> dict[str, Any]:
        """The record whose id is, or uniquely starts with, `id_or_prefix`."""
        prefix = id_or_prefix.strip().lower()
        if not prefix or not all(c in "0123456789abcdef" for c in prefix):
            raise StoreError(
                f"{id_or_prefix!r} is not a run id", "run ids are hex; see `runs list`"
            )
        with self._reading() as db:
            rows = db.execute(
                "SELECT record FROM runs WHERE id LIKE ? LIMIT 2", (prefix + "%",)
            ).fetchall()
        if not rows:
            raise StoreError(f"no run {id_or_prefix} in the store {self.label}", "see `runs list`")
        if len(rows) > 1:
            raise StoreError(f"run id prefix {id_or_prefix} is ambiguous", "type more characters")
        record: dict[str, Any] = json.loads(rows[0][0])
        return record

    def list_runs(
        self,
        experiment: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Records, newest first, optionally filtered, `offset` skipped (none if the store is
        new)."""
        if not self.exists():
            return []
        where, args = run_filters(experiment, status)
        sql = "SELECT record FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start_time DESC, id"
        if limit or offset:
            sql += f" LIMIT {int(limit or 2**62)} OFFSET {int(offset)}"
        with self._reading() as db:
            return [json.loads(row[0]) for row in db.execute(sql, args).fetchall()]

    def artifact_dir(self, run_id: str) -> Path:
        """Where this run's logs, events and artifacts live."""
        return self.artifacts_root / run_id

    def close(self) -> None:
        """Close the connection (the store can be reopened)."""
        self.db.close()


def run_filters(experiment: str | None, status: str | None) -> tuple[list[str], list[Any]]:
    """WHERE conditions on the runs table for `--experiment` and `--status` (any case)."""
    where, args = [], []
    if experiment:
        where.append("runs.experiment = ?")
        args.append(experiment)
    if status:
        where.append("runs.status = ?")
        args.append(status.upper())
    return where, args


def _is_lost(host: str, pid: int, heartbeat_at: float, record: dict[str, Any]) -> bool:
    interval = float(record.get("runner", {}).get("heartbeat_seconds", 5))
    if time.time() - heartbeat_at > 3 * interval + 10:
        return True
    if host == os.uname().nodename and pid:
        return not pid_alive(pid)
    return False


class SQLiteStore(Store):
    """Run records in SQLite (`<root>/runs.db`); artifacts under `<root>/artifacts/`."""

    def __init__(self, root: Path) -> None:
        super().__init__(SQLiteDatabase(root / "runs.db"), root / "artifacts", label=str(root))
        self.root = root
        self.db_path = root / "runs.db"

    def reopen(self) -> Store:
        """The same store on a new connection (for another thread)."""
        other = SQLiteStore(self.root)
        other.artifacts_root = self.artifacts_root
        return other

    def exists(self) -> bool:
        """A store that was never written has no file yet."""
        return self.db_path.exists()

    def writable(self) -> bool:
        """False on a read-only disk or directory."""
        return os.access(self.root, os.W_OK)

    def _prepare(self, write: bool) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if write and not os.access(self.root, os.W_OK):  # also true for root on a read-only mount
            raise PermissionError(f"cannot write to {self.root}")
