"""The test PostgreSQL server: the URL in RUN_PROJECT_TEST_PG_URL (.ci/run starts the Debian
cluster and sets it), checked to answer; `require` skips or fails when it does not."""

from __future__ import annotations

import os

from support.services import require

DEFAULT_PG_URL = "postgresql://rp:rp@127.0.0.1:5432/rp_test"


def pg_base_url() -> str:
    """The test server's URL, checked to answer; skips or fails when it does not."""
    url = os.environ.get("RUN_PROJECT_TEST_PG_URL", DEFAULT_PG_URL)
    try:
        import psycopg
    except ImportError:
        require("postgres", "psycopg is not installed (pip install 'psycopg[binary]')")
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        require("postgres", f"PostgreSQL at {url} is not reachable: {exc}".strip())
    return url


def with_schema(url: str, schema: str) -> str:
    """The URL with libpq options that put every table into `schema`."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"
