"""The store's schema, version by version, and the upgrade of an older store in place.

Apart from db.py so that a step may use the modules built on the database (runindex.py
fills its index from the records already stored).
"""

from __future__ import annotations

from collections.abc import Callable

from runner.errors import StoreError
from runner.tracking import runindex
from runner.tracking.db import Database

# Each entry moves the database from version i to i+1. Types are spelt so both databases
# read them right: DOUBLE PRECISION is REAL affinity in SQLite, BIGINT is INTEGER.
# A step is SQL, or a function that moves data (it runs in the same transaction).
Step = str | Callable[["Database"], None]
MIGRATIONS: tuple[tuple[Step, ...], ...] = (
    (
        "CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, experiment TEXT NOT NULL,"
        " run_name TEXT, status TEXT NOT NULL, start_time DOUBLE PRECISION NOT NULL,"
        " end_time DOUBLE PRECISION, heartbeat_at DOUBLE PRECISION NOT NULL, host TEXT,"
        " runner_pid BIGINT, exit_code BIGINT, record TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS runs_by_start ON runs (start_time DESC)",
        "CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status)",
    ),
    (
        "CREATE TABLE IF NOT EXISTS metrics (run_id TEXT NOT NULL, key TEXT NOT NULL,"
        " value DOUBLE PRECISION, step BIGINT NOT NULL, ts DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX IF NOT EXISTS metrics_by_run ON metrics (run_id, key, step)",
        "CREATE TABLE IF NOT EXISTS logged_params (run_id TEXT NOT NULL, key TEXT NOT NULL,"
        " value TEXT NOT NULL, PRIMARY KEY (run_id, key))",
        "CREATE TABLE IF NOT EXISTS tags (run_id TEXT NOT NULL, key TEXT NOT NULL,"
        " value TEXT NOT NULL, PRIMARY KEY (run_id, key))",
        "CREATE TABLE IF NOT EXISTS files (run_id TEXT NOT NULL, direction TEXT NOT NULL,"
        " path TEXT NOT NULL, sha256 TEXT NOT NULL, size BIGINT NOT NULL, source TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS files_by_hash ON files (sha256, direction)",
        "CREATE INDEX IF NOT EXISTS files_by_run ON files (run_id)",
    ),
    (
        # What `runs list` filters and sorts on, one row per run and value (runindex.py).
        lambda db: _create_run_values(db),
        runindex.backfill,
    ),
    (
        # The last journal entry applied per run (journal.py): replays apply each entry once.
        "ALTER TABLE runs ADD COLUMN journal_seq BIGINT NOT NULL DEFAULT 0",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: Database) -> None:
    """Bring the schema to SCHEMA_VERSION; refuse a store written by a newer runner."""
    db.transaction(_migrate)


def _migrate(db: Database) -> None:
    db.lock_schema()
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    current = int(row[0]) if row else 0
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"run store {db.where} has schema version {current}; this run-project knows "
            f"only up to {SCHEMA_VERSION}",
            "upgrade run-project (pip install -U run-project) to use this store",
        )
    for version in range(current, SCHEMA_VERSION):
        for statement in MIGRATIONS[version]:
            if callable(statement):
                statement(db)
            else:
                db.execute(statement)
    if current != SCHEMA_VERSION:
        db.execute("DELETE FROM meta WHERE key = 'schema_version'")
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )


def _create_run_values(db: Database) -> None:
    # Bytes compare bytewise in both (BLOB, BYTEA). SQLite keeps the rows in primary-key
    # order (WITHOUT ROWID): a second copy of run_id in a separate key index would double it.
    sqlite = db.dialect == "sqlite"
    db.execute(
        "CREATE TABLE IF NOT EXISTS run_values (run_id TEXT NOT NULL, kind TEXT NOT NULL,"
        " name TEXT NOT NULL, num DOUBLE PRECISION, isnum BIGINT NOT NULL,"
        f" txt {'BLOB' if sqlite else 'BYTEA'} NOT NULL, PRIMARY KEY (run_id, kind, name))"
        + (" WITHOUT ROWID" if sqlite else "")
    )
