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
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from runner import settings
from runner.errors import RunnerError, StoreError
from runner.pids import SESSION_FILE, pid_alive, stop_lost_run
from runner.tracking import journal, migrations, runindex
from runner.tracking.artifacts import ObjectStore, private_dirs, private_file
from runner.tracking.db import Database, SQLiteDatabase, redact
from runner.tracking.journal import Applied, Replayed
from runner.tracking.record import ACTIVE, iso
from runner.tracking.tables import BATCH, TablesMixin, write_files, write_metrics, write_pairs

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


def open_current(location: str | None, artifacts: str | None = None) -> Store:
    """`open_store()` for a command: the journals (and artifact copies) waiting for the store
    are applied first, so what the command reads is current. Every verb that opens a store
    opens it here (docs/tracking.md#durability-the-runs-journal, "Replay")."""
    store = open_store(location, artifacts)
    store.catch_up()
    return store


class Store(TablesMixin):
    """Run records (and metrics, params, tags, files) in a database; artifacts in a directory."""

    def __init__(self, db: Database, artifacts_root: Path, label: str) -> None:
        self.db = db
        self.artifacts_root = artifacts_root
        self.label = label
        self.root = artifacts_root  # where a run's files live; SQLite stores override it
        self._migrated = False
        self._caught_up = False

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

    def child_settings(self) -> dict[str, str]:
        """Settings a run's command inherits so that a run-project it starts (a workflow's
        step) records into this store (docs/tracking.md#workflows). A PostgreSQL URL holds
        credentials: it is never handed to project code (RUN_PROJECT_STORE set by the user
        is inherited as it is)."""
        return {}

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
        self.make_run_dir(record["id"])
        self._transaction(lambda db: _insert(db, record, time.time()))

    def make_run_dir(self, run_id: str) -> None:
        """The run's directory for logs, events and artifacts."""
        try:
            private_dirs(self.artifact_dir(run_id))
        except OSError as exc:
            raise self._error(exc) from exc

    def update_run(self, run_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge `changes` into the record (read-modify-write in one transaction)."""
        return self._transaction(lambda db: self._merge(db, run_id, changes, time.time()))

    def _merge(
        self, db: Database, run_id: str, changes: dict[str, Any], at: float
    ) -> dict[str, Any]:
        record = self._locked_record(db, run_id, "check the id")
        record.update(changes)
        return self._write_record(db, run_id, record, at if changes.get("end_time") else None)

    def _locked_record(self, db: Database, run_id: str, hint: str) -> dict[str, Any]:
        """The run's record, its row locked until the transaction ends."""
        row = db.execute(
            "SELECT record FROM runs WHERE id = ?" + db.locking_read, (run_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"run {run_id} is not in the store {self.label}", hint)
        record: dict[str, Any] = json.loads(row[0])
        return record

    def _write_record(
        self, db: Database, run_id: str, record: dict[str, Any], end: float | None
    ) -> dict[str, Any]:
        text = json.dumps(record)
        db.execute(
            "UPDATE runs SET status = ?, exit_code = ?, end_time = COALESCE(?, end_time),"
            " heartbeat_at = ?, record = ? WHERE id = ?",
            (record["status"], record.get("exit_code"), end, time.time(), text, run_id),
        )
        runindex.write(db, run_id, text)
        return record

    # -- the journal (journal.py) ---------------------------------------------------------
    def apply_entries(self, run_id: str, entries: Iterable[dict[str, Any]]) -> Applied:
        """Apply a run's journal entries not applied yet, in order, each exactly once: the
        run's `journal_seq` moves in the same transaction as the entries, under the run's
        row lock (SQLite: the write lock), so an interrupted or concurrent replay is safe."""
        applied = points = 0
        for chunk in _chunks(entries):

            def body(db: Database, c: list[dict[str, Any]] = chunk) -> tuple[int, int]:
                return self._apply_chunk(db, run_id, c)

            counts = self._transaction(body)
            applied, points = applied + counts[0], points + counts[1]
        return Applied(applied, points)

    def _apply_chunk(
        self, db: Database, run_id: str, chunk: list[dict[str, Any]]
    ) -> tuple[int, int]:
        row = db.execute(
            "SELECT journal_seq FROM runs WHERE id = ?" + db.locking_read, (run_id,)
        ).fetchone()
        done, exists = (int(row[0]), True) if row else (0, False)
        applied = points = 0
        for entry in chunk:
            if entry["seq"] <= done:
                continue
            if not exists and entry["op"] != "create":
                raise StoreError(
                    f"the journal of run {run_id} does not begin with the run's creation",
                    "it cannot be applied; keep it for inspection or delete it",
                )
            points += self._apply_one(db, run_id, entry)
            applied, done, exists = applied + 1, entry["seq"], True
        if applied:
            db.execute("UPDATE runs SET journal_seq = ? WHERE id = ?", (done, run_id))
        return applied, points

    def _apply_one(self, db: Database, run_id: str, entry: dict[str, Any]) -> int:
        """Apply one entry; how many metric points it held."""
        op = entry["op"]
        if op == "create":
            with contextlib.suppress(StoreError):  # a replay on another machine has no dir
                self.make_run_dir(run_id)
            _insert(db, entry["record"], entry["t"])
        elif op == "update":
            self._merge(db, run_id, entry["changes"], entry["t"])
        elif op == "metrics":
            write_metrics(db, run_id, entry["points"])
            return len(entry["points"])
        elif op == "pairs":
            write_pairs(db, entry["table"], run_id, entry["pairs"])
        elif op == "files":
            write_files(db, run_id, entry["files"])
        else:
            raise StoreError(
                f"unknown journal entry {op!r} for run {run_id}", "upgrade run-project"
            )
        return 0

    def store_pending(self, run_id: str, copies: list[dict[str, Any]]) -> tuple[int, int]:
        """Copy the outputs a run's runner could not store (journal.py, "Artifacts not yet
        copied") and mark them stored in its record; (stored now, changed or gone since the
        run: their record entries keep `stored: false`). Safe to repeat: an object already
        there is not copied again, and only outputs still pending are counted.

        Raises ArtifactError when the artifacts' disk still refuses (the list is kept)."""
        copied, gone = set(), set()
        for copy in copies:
            # Into the artifacts directory of the run (the one it had), whatever this
            # command's RUN_PROJECT_ARTIFACTS.
            root = Path(copy.get("root") or self.artifacts_root)
            objects, source, expected = ObjectStore(root), Path(copy["from"]), copy["sha256"]
            there = objects.path_of(expected).is_file()  # an earlier replay stored it
            if not there and (not source.is_file() or objects.put(source) != expected):
                gone.add((copy["name"], expected))
                continue
            objects.link(expected, root / run_id / copy["name"])
            copied.add((copy["name"], expected))
        return self._transaction(lambda db: self._mark_stored(db, run_id, copied, gone))

    def _mark_stored(
        self, db: Database, run_id: str, copied: set[tuple[str, str]], gone: set[tuple[str, str]]
    ) -> tuple[int, int]:
        record = self._locked_record(db, run_id, "run `runs sync`")
        outputs, stored_bytes, counts = record.get("outputs") or [], 0, [0, 0]
        for output in outputs:
            key = (output["name"], output["sha256"])
            if not output.get("pending") or (key not in copied and key not in gone):
                continue
            del output["pending"]
            if key in copied:
                del output["stored"]
                stored_bytes += int(output.get("size") or 0)
            counts[key not in copied] += 1
        if "capture" in record:
            before = int(record["capture"].get("stored_bytes") or 0)
            record["capture"] = {**record["capture"], "stored_bytes": before + stored_bytes}
        if any(counts):  # the record read above, written back once
            self._write_record(db, run_id, record, None)
        return counts[0], counts[1]

    def replay_journals(self) -> list[Replayed]:
        """Apply every pending journal of this store (journal.replay); cheap when there is
        none: one directory listing."""
        if self.exists() and not self.writable():
            return []
        return journal.replay(self)

    def catch_up(self) -> None:
        """Replay the pending journals once for this object, warning about the ones that
        were torn or could not be applied (`runs sync` reports on every one instead)."""
        if self._caught_up:
            return
        self._caught_up = True
        for replayed in self.replay_journals():
            if replayed.torn or replayed.error:
                print(f"warning: {replayed.describe()}", file=sys.stderr)

    def heartbeat(self, run_id: str) -> None:
        """Mark the run alive now (a runner that stops beating is presumed dead: LOST)."""
        now = time.time()

        def body(db: Database) -> None:
            db.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (now, run_id))

        self._transaction(body)

    def sweep_lost(self) -> int:
        """Close runs whose runner died (same host, pid gone) or stopped beating: LOST."""
        self.catch_up()  # a finished run's journal beats LOST
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
            # What the dead runner left running here (its orphans went to init) is stopped.
            stop_lost_run(self.artifact_dir(run_id) / SESSION_FILE, run_id)
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
    def status_of(self, run_id: str) -> str | None:
        """The run's status, or None if it is not in the store."""
        with self._reading() as db:
            row = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        return str(row[0]) if row else None

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

    def children_of(self, run_id: str) -> list[tuple[str, str, str]]:
        """(id, run name, status) of the runs started from inside run `run_id`, oldest
        first (records whose `parent_run` is it)."""
        if not self.exists():
            return []
        pattern = f'%"parent_run": "{run_id}"%'  # run ids are hex: nothing to escape
        with self._reading() as db:
            rows = db.execute(
                "SELECT id, run_name, status FROM runs WHERE record LIKE ? ORDER BY start_time",
                (pattern,),
            ).fetchall()
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    def artifact_dir(self, run_id: str) -> Path:
        """Where this run's logs, events and artifacts live."""
        return self.artifacts_root / run_id

    def close(self) -> None:
        """Close the connection (the store can be reopened)."""
        self.db.close()


def _insert(db: Database, record: dict[str, Any], at: float) -> None:
    text = json.dumps(record)
    db.execute(
        "INSERT INTO runs (id, experiment, run_name, status, start_time, heartbeat_at,"
        " host, runner_pid, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record["id"],
            record["experiment"],
            record["run_name"],
            record["status"],
            at,
            time.time(),
            record["runner"]["host"],
            record["runner"]["pid"],
            text,
        ),
    )
    runindex.write(db, record["id"], text, new_run=True)  # one transaction: in step


def _chunks(entries: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Entries in transaction-sized groups: at most BATCH metric points or 500 entries."""
    chunk: list[dict[str, Any]] = []
    points = 0
    for entry in entries:
        chunk.append(entry)
        points += len(entry.get("points", ()))
        if points >= BATCH or len(chunk) >= 500:
            yield chunk
            chunk, points = [], 0
    if chunk:
        yield chunk


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

    def child_settings(self) -> dict[str, str]:
        """A directory store: its path and artifacts (see Store.child_settings)."""
        return {"RUN_PROJECT_STORE": str(self.root),
                "RUN_PROJECT_ARTIFACTS": str(self.artifacts_root)}  # fmt: skip

    def exists(self) -> bool:
        """A store that was never written has no file yet."""
        return self.db_path.exists()

    def writable(self) -> bool:
        """False on a read-only disk or directory."""
        return os.access(self.root, os.W_OK)

    def _prepare(self, write: bool) -> None:
        private_dirs(self.root)
        if write and not os.access(self.root, os.W_OK):  # also true for root on a read-only mount
            raise PermissionError(f"cannot write to {self.root}")
        if write:
            private_file(self.db_path)  # SQLite gives its -wal and -shm files the same mode
