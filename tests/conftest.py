"""Shared fixtures: every test gets its own cache, store and config; the CLI runs for real.

Only fixtures live here; the helpers they use are in tests/support/.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import REPO
from support.conda import CHANNEL_BUILDER, CHANNEL_SERVER
from support.git_servers import Served, build_project, start_daemon, start_http
from support.mlflow_server import MlflowServer, mlflow_python, mlflow_server
from support.mounts import mount
from support.postgres import pg_base_url, with_schema
from support.services import require

# Every subprocess a test starts runs this checkout's code, whatever is installed.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Own cache, store, config and cwd per test; the real home cache raises if touched."""
    monkeypatch.setenv("RUN_PROJECT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RUN_PROJECT_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("RUN_PROJECT_FORBID_HOME_CACHE", "1")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # the runs' journals
    monkeypatch.setenv("RUN_PROJECT_GRACE_SECONDS", "3")
    monkeypatch.setenv("RUN_PROJECT_IGNORE_OLD_GIT", "1")  # the old-git warning has its own test
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture(autouse=True)
def records_match_their_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every run record state written, here or in a CLI subprocess, is checked against
    schemas/run-record.schema.json (tracking/run_record.py); any violation fails the test."""
    found = tmp_path / "record-schema-violations.txt"
    monkeypatch.setenv("RUN_PROJECT_CHECK_RECORDS", str(found))
    yield
    assert not found.exists(), found.read_text()


@pytest.fixture(scope="session")
def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uv cache for the whole session (uv's cache is safe to share), so builds after the
    first download nothing. Shared by xdist workers of the same session."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    path = root / "uv-cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def shared_uv_cache(uv_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """uv uses the session's cache (modules that build virtualenvs use it for every test:
    `pytestmark = pytest.mark.usefixtures("shared_uv_cache")`)."""
    monkeypatch.setenv("UV_CACHE_DIR", str(uv_cache))


# Tracking: a PostgreSQL schema per test, read-only and tiny mounts.


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


# Git sources: git daemon and smart HTTP serving real repositories.


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """git daemon and smart HTTP serving proj.git (and anything tests add to `root`)."""
    base = tmp_path_factory.mktemp("served")
    root = base / "repos"
    root.mkdir()
    first, second, feature = build_project(root, base / "work")
    daemon = start_daemon(root)
    http = start_http(root, auth="alice:s3cr3t-t0ken")
    try:
        yield Served(root, daemon, http, first, second, feature)
    finally:
        daemon.stop()
        http.stop()


# Conda: the test channel, built and served once per session. Modules that use it say
# `pytestmark = pytest.mark.usefixtures("conda_settings")`.


@pytest.fixture(scope="session")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Build the test channel (in a child: py-rattler) and serve it; yields (alias, root)."""
    # find_spec, not import: py-rattler must not load into the pytest process (exit crash)
    if importlib.util.find_spec("rattler") is None:
        require("py-rattler", "py-rattler is not installed: pip install -e '.[test]'")
    root = tmp_path_factory.mktemp("conda-channel")
    subprocess.run([sys.executable, str(CHANNEL_BUILDER), str(root)], check=True)
    port_file = root.parent / f"{root.name}.port"
    server = subprocess.Popen([sys.executable, str(CHANNEL_SERVER), str(root),
                               str(port_file)])  # fmt: skip
    try:
        for _ in range(200):
            if port_file.exists():
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text()}/", root
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=10)


@pytest.fixture
def conda_settings(
    channel: tuple[str, Path], uv_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Channel names resolve to the local server; the CLI finds this checkout's runner."""
    monkeypatch.setenv("RUN_PROJECT_CHANNEL_ALIAS", channel[0])
    monkeypatch.setenv("UV_CACHE_DIR", str(uv_cache))
    monkeypatch.setenv("PYTHONPATH", str(REPO))


# MLflow: a real tracking server for `runs push`, once per session (per xdist worker).


@pytest.fixture(scope="session")
def mlflow_tracking(
    tmp_path_factory: pytest.TempPathFactory, uv_cache: Path
) -> Iterator[MlflowServer]:
    """`mlflow server` on 127.0.0.1 (basic auth on), stopped by its PID at the end."""
    root = tmp_path_factory.mktemp("mlflow")
    with mlflow_server(mlflow_python(root, uv_cache), root) as server:
        yield server
