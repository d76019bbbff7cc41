"""Fixtures for the tracking tests: a real PostgreSQL (a schema per test) and mounts.

PostgreSQL: the URL in RUN_PROJECT_TEST_PG_URL (.ci/run starts the Debian cluster and sets
it). Outside CI a missing server skips with the reason; with CI=true it fails.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

DEFAULT_PG_URL = "postgresql://rp:rp@127.0.0.1:5432/rp_test"


def missing(reason: str) -> None:
    """Fail under CI, skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: required service missing)")
    pytest.skip(reason)


def pg_base_url() -> str:
    """The test server's URL, checked to answer; skips or fails when it does not."""
    url = os.environ.get("RUN_PROJECT_TEST_PG_URL", DEFAULT_PG_URL)
    try:
        import psycopg
    except ImportError:
        missing("psycopg is not installed (pip install 'psycopg[binary]')")
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        missing(f"PostgreSQL at {url} is not reachable: {exc}".strip())
    return url


def with_schema(url: str, schema: str) -> str:
    """The URL with libpq options that put every table into `schema`."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty schema on the test server, dropped afterwards."""
    import psycopg

    base = pg_base_url()
    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_schema(base, schema)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test against a SQLite directory and a PostgreSQL schema."""
    if request.param == "sqlite":
        return str(tmp_path / "store")
    url: str = request.getfixturevalue("pg_url")
    return url


def mount(args: list[str]) -> None:
    """Run mount(8); skips (fails under CI) where mounting is not permitted."""
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        missing(f"mount {' '.join(args)} is not permitted here: {proc.stderr.strip()}")


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on a read-only bind mount: even root cannot write there (EROFS), which
    chmod alone cannot achieve since the tests run as root."""
    target = tmp_path / "ro"
    target.mkdir()
    mount(["--bind", str(target), str(target)])
    try:
        mount(["-o", "remount,ro,bind", str(target)])
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a real full disk for the artifact copy."""
    target = tmp_path / "tiny"
    target.mkdir()
    mount(["-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)])
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False)
