"""The PostgreSQL side of the one SQL code path (db.py): psycopg 3, imported only here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from runner.errors import StoreError
from runner.tracking.db import Database, redact


class PostgresDatabase(Database):
    """A PostgreSQL database reached by a libpq URL (psycopg 3, imported here only)."""

    dialect = "postgresql"
    locking_read = " FOR UPDATE"

    def __init__(self, url: str) -> None:
        super().__init__(redact(url))
        self.url = url

    def driver_errors(self) -> tuple[type[Exception], ...]:
        import psycopg

        return (psycopg.Error,)

    def _open(self) -> Any:
        try:
            import psycopg
        except ImportError as exc:
            raise StoreError(
                f"store {self.where} needs the PostgreSQL driver psycopg, which is not installed",
                "pip install 'run-project[postgres]' (or: pip install 'psycopg[binary]')",
            ) from exc
        return psycopg.connect(self.url, connect_timeout=5)

    def _begin(self) -> None:
        """psycopg opens a transaction implicitly at the first statement."""

    def _retryable(self, exc: Exception) -> bool:
        import psycopg

        # Two runs creating the schema at once, or a serialization conflict: try again.
        retry = isinstance(
            exc, psycopg.errors.SerializationFailure | psycopg.errors.UniqueViolation
        )
        return retry

    def _reconnectable(self, exc: Exception) -> bool:
        import psycopg

        if not isinstance(exc, psycopg.OperationalError):
            return False
        state = exc.sqlstate or ""
        if state.startswith(("08", "57P")):  # connection lost; server shutting down/starting
            return True
        text = str(exc)
        transient = ("shutting down", "starting up", "recovery mode", "Connection refused")
        # A FATAL from a live server about the password or database will not heal by waiting.
        return "FATAL:" not in text or any(t in text for t in transient)

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def lock_schema(self) -> None:
        """Serialise migrations between runners (released at commit)."""
        self.execute("SELECT pg_advisory_xact_lock(7226091)")

    def insert_many(
        self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        # COPY moves 100k metric points in well under a second; executemany takes many.
        with (
            self.connect().cursor() as cursor,
            cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(tuple(row))
