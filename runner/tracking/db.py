"""One SQL code path for two databases: SQLite (a file) and PostgreSQL (a URL).

The store writes SQL once, with `?` placeholders and portable types; this module opens the
connection, runs short write transactions (SQLite: `BEGIN IMMEDIATE` under WAL with a busy
timeout; PostgreSQL: plain short transactions) and applies the schema migrations in order.
PostgreSQL lives in postgres.py, which imports psycopg: a local run never pays for either.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

T = TypeVar("T")
BUSY_TIMEOUT_MS = 60_000
_said_waiting = False  # the wait for a store that went away is announced once per process


class Cursorish(Protocol):
    """What both drivers' cursors offer that the store uses."""

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Database:
    """A connection to SQLite or PostgreSQL with portable execute/transaction/read."""

    dialect = "sqlite"

    def __init__(self, where: str) -> None:
        self.where = where  # shown in errors (a path, or a URL without its password)
        self.conn: Any = None
        self.reconnect_seconds = 0.0
        # Only a server that answered before is waited for: a wrong URL fails at once.
        self.ever_connected = False

    # -- to be provided per dialect ------------------------------------------------------
    def _open(self) -> Any:
        raise NotImplementedError

    def _begin(self) -> None:
        raise NotImplementedError

    def _retryable(self, exc: Exception) -> bool:
        return False

    def _reconnectable(self, exc: Exception) -> bool:
        return False

    def driver_errors(self) -> tuple[type[Exception], ...]:
        """Exceptions of this driver that mean 'the database said no'."""
        return (sqlite3.Error,)

    def lock_schema(self) -> None:
        """Keep other runners out of the schema until this transaction ends."""

    def _commit(self) -> None:
        self.conn.commit()

    # Appended to a SELECT whose row the transaction then rewrites (PostgreSQL: FOR UPDATE,
    # so two writers of one run take turns; SQLite's BEGIN IMMEDIATE already serialises).
    locking_read = ""

    # -- common --------------------------------------------------------------------------
    def connect(self) -> Any:
        """The open connection (opened on first use)."""
        if self.conn is None:
            self.conn = self._open()
            self.ever_connected = True
        return self.conn

    def connect_waiting(self) -> Any:
        """`connect`, waiting up to `reconnect_seconds` for a server that is away."""
        deadline = time.monotonic() + (self.reconnect_seconds if self.ever_connected else 0)
        while True:
            try:
                return self.connect()
            except self.driver_errors() as exc:
                if not self._reconnectable(exc) or time.monotonic() >= deadline:
                    raise
                self._say_waiting(exc)
                time.sleep(1.0)

    def fresh(self) -> Database:
        """A new, unconnected handle on the same database (one per thread)."""
        other = type(self).__new__(type(self))
        other.__dict__.update(self.__dict__, conn=None)
        return other

    def sql(self, text: str) -> str:
        """`?` placeholders as this driver wants them."""
        return text

    def execute(self, text: str, args: Sequence[Any] = ()) -> Cursorish:
        """Run one statement on the open connection."""
        cursor: Cursorish = self.connect().execute(self.sql(text), tuple(args))
        return cursor

    def insert_many(
        self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        """Insert many rows inside the current transaction (the fastest way this driver has)."""
        marks = ", ".join("?" for _ in columns)
        self.connect().executemany(
            self.sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"),
            [tuple(row) for row in rows],
        )

    def transaction(self, body: Callable[[Database], T]) -> T:
        """Run `body` in one short write transaction, retrying when the database is busy."""
        deadline = time.monotonic() + (self.reconnect_seconds if self.ever_connected else 0)
        attempt = 0
        while True:
            attempt += 1
            try:
                self.connect()
                self._begin()
                try:
                    result = body(self)
                except BaseException:
                    self._rollback()
                    raise
                self._commit()
                return result
            except self.driver_errors() as exc:
                if self._retryable(exc) and attempt < 200:
                    time.sleep(0.01 + 0.005 * attempt)
                elif self._reconnectable(exc) and time.monotonic() < deadline:
                    # The server went away: the caller's data is still in memory (and in
                    # the run's local files); wait for it to come back rather than drop it.
                    self.close()
                    self._say_waiting(exc)
                    time.sleep(1.0)
                else:
                    raise

    def _say_waiting(self, exc: Exception) -> None:
        """One line per process, the first time it waits for a store that went away."""
        global _said_waiting
        if not _said_waiting:
            _said_waiting = True
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(
                f"run-project: waiting up to {self.reconnect_seconds:g}s for the run store "
                f"{self.where} ({why})",
                file=sys.stderr,
                flush=True,
            )

    def _rollback(self) -> None:
        try:
            if self.dialect == "sqlite":
                self.conn.execute("ROLLBACK")
            else:
                self.conn.rollback()
        except Exception:  # the connection may be gone; the transaction went with it
            self.conn = None

    def close(self) -> None:
        """Close the connection (it reopens on next use)."""
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None


class SQLiteDatabase(Database):
    """A SQLite file under WAL; writers queue behind `BEGIN IMMEDIATE`."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path

    def _open(self) -> Any:
        if not os.access(self.path.parent, os.W_OK) and self.path.exists():
            # A store on a read-only disk can still be read; nobody can be writing it.
            uri = f"file:{quote(str(self.path))}?immutable=1"
            return sqlite3.connect(uri, uri=True, isolation_level=None)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        for attempt in range(200):  # switching to WAL can skip the busy handler
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if not self._retryable(exc) or attempt == 199:
                    raise
                time.sleep(0.01 + 0.005 * attempt)
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self.conn.execute("COMMIT")

    def _retryable(self, exc: Exception) -> bool:
        text = str(exc)
        return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def redact(url: str) -> str:
    """The URL with any password replaced by `***` (safe to show and store)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
