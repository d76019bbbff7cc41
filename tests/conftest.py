"""Shared fixtures: every test gets its own cache, store and config; the CLI runs for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "example_projects"
# Every subprocess a test starts runs this checkout's code, whatever is installed.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Own cache, store, config and cwd per test; the real home cache raises if touched."""
    monkeypatch.setenv("RUN_PROJECT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RUN_PROJECT_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("RUN_PROJECT_FORBID_HOME_CACHE", "1")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
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


@dataclass
class Result:
    """A finished CLI call."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 120) -> Result:  # fmt: skip
    """Run `python -m runner ARGS` as a real subprocess."""
    full_env = dict(os.environ, **(env or {}))
    # This checkout's code, whatever is installed (worktrees test their own tree).
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "runner", *args], cwd=cwd, env=full_env,
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout, proc.stderr)


def records(store: Path | None = None) -> list[dict[str, Any]]:
    """All run records in the store, newest first (through the CLI, as a user sees them)."""
    args = ["runs", "list", "--json", "--limit", "100000"]
    if store is not None:
        args += ["--store", str(store)]
    result = cli(*args)
    assert result.code == 0, result.text
    data: list[dict[str, Any]] = json.loads(result.out)
    return data


def last_record(store: Path | None = None) -> dict[str, Any]:
    """The newest run record."""
    found = records(store)
    assert found, "no run was recorded"
    return found[0]


def make_project(root: Path, files: dict[str, str]) -> Path:
    """Write a project: {relative path: text (dedented)}."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


ECHO_ARGS = "import json, sys\nprint(json.dumps(sys.argv[1:]))\n"


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

# Fixtures of the tracking tests (PostgreSQL schema per test, read-only and tiny mounts).
from tracking_fixtures import pg_url, read_only_dir, store_url, tiny_disk  # noqa: E402, F401
