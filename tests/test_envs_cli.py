"""`run-project envs list|gc`: every kind's cache area, and never removing an env in use."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from support.cli import EXAMPLES, REPO, cli
from support.envs import wait_for
from support.projects import make_project

WAITER = """\
import os, time
open("running", "w").write("1")
while not os.path.exists("release"):
    time.sleep(0.05)
"""


@pytest.fixture(autouse=True)
def _shared_uv_cache(uv_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UV_CACHE_DIR", str(uv_cache))


def listed() -> list[dict[str, Any]]:
    result = cli("envs", "list", "--json", "--no-images")
    assert result.code == 0, result.text
    data: list[dict[str, Any]] = json.loads(result.out)
    return data


def build_env(tmp_path: Path, name: str, requirement: str) -> Path:
    project = make_project(tmp_path / name, {"t.py": "print(1)\n", "requirements.txt": requirement})
    result = cli(str(project), "-e", "t.py")
    assert result.code == 0, result.text
    return project


def test_list_shows_key_kind_size_last_used_and_projects(tmp_path: Path) -> None:
    assert cli("envs", "list", "--no-images").out.strip() == "no cached environments"
    project = Path(shutil.copytree(EXAMPLES / "python_env", tmp_path / "python_env"))
    assert cli(str(project)).code == 0
    other = tmp_path / "copy"
    shutil.copytree(project, other)
    assert cli(str(other)).code == 0
    [row] = listed()
    assert row["kind"] == "virtualenv" and len(row["key"]) == 32 and row["size"] > 10_000
    assert row["projects"] == [str(project), str(other)]
    assert row["python"].startswith(f"{sys.version_info[0]}.") and row["last_used"] > 0
    table = cli("envs", "list", "--no-images").out
    assert "KEY" in table and row["key"][:12] in table and str(other) in table


def test_list_and_gc_cover_every_kind_area(tmp_path: Path) -> None:
    """Another kind (conda: test_conda_env.py::test_envs_list_and_gc_cover_conda_envs) keeps entries in the same layout: they are listed
    and collected the same way."""
    entry = tmp_path / "cache" / "envs" / "conda" / "abc123"
    entry.mkdir(parents=True)
    (entry / ".run-project-complete").write_text(json.dumps({"key": "abc123", "facts": {}}))
    assert [r["kind"] for r in listed()] == ["conda"]
    result = cli("envs", "gc", "--keep-last", "0")
    assert result.code == 0 and "removed conda/abc123" in result.out
    assert listed() == [] and not entry.exists()


def test_gc_keep_last_and_older_than(tmp_path: Path) -> None:
    build_env(tmp_path, "a", "six==1.16.0\n")
    build_env(tmp_path, "b", "six==1.17.0\n")
    old, new = sorted(listed(), key=lambda r: r["last_used"])
    past = time.time() - 3 * 86400
    os.utime(Path(old["path"]) / ".run-project-last-used", (past, past))
    dry = cli("envs", "gc", "--older-than", "2", "--dry-run")
    assert dry.code == 0, dry.text
    [line] = [ln for ln in dry.out.splitlines() if ln.startswith("would remove")]
    when = time.strftime("%Y-%m-%d", time.localtime(past))
    assert f"virtualenv/{old['key'][:12]} (" in line and f"last used {when}" in line
    assert " KB" in line or " MB" in line  # its size
    assert "unused for 3.0 days (--older-than 2)" in line
    assert new["key"][:12] not in dry.out
    assert "would free" in dry.out and "(1 environment(s))" in dry.out
    assert "nothing removed" in dry.out and "freed" not in dry.out.replace("would free", "")
    assert len(listed()) == 2
    both = cli("envs", "gc", "--keep-last", "0", "--older-than", "2", "--dry-run").out
    assert "(--older-than 2); not among the 0 most recently used (--keep-last 0)" in both
    assert "(2 environment(s))" in both and len(listed()) == 2
    result = cli("envs", "gc", "--older-than", "2")
    assert result.code == 0 and f"removed virtualenv/{old['key'][:12]}" in result.out
    assert [r["key"] for r in listed()] == [new["key"]]
    assert cli("envs", "gc", "--keep-last", "1").code == 0 and len(listed()) == 1
    assert cli("envs", "gc", "--keep-last", "0").code == 0 and listed() == []


def test_gc_never_removes_an_env_in_use(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"wait.py": WAITER, "requirements.txt": "six\n"})
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", str(project), "-e", "wait.py"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        wait_for(lambda: (project / "running").exists(), timeout=120, what="the run to start")
        [row] = listed()
        dry = cli("envs", "gc", "--keep-last", "0", "--dry-run")
        assert "would keep virtualenv/" in dry.out and "in use by a run" in dry.out, dry.text
        assert "would free 0 B (0 environment(s)); 1 in use, kept" in dry.out
        result = cli("envs", "gc", "--keep-last", "0")
        assert result.code == 0 and "in use by a run" in result.out, result.text
        assert Path(row["path"], ".run-project-complete").is_file()
    finally:
        (project / "release").write_text("")
        assert proc.wait(timeout=60) == 0
    assert "removed virtualenv/" in cli("envs", "gc", "--keep-last", "0").out
    assert listed() == []


def test_gc_sweeps_unfinished_builds_but_not_a_live_one(tmp_path: Path) -> None:
    area = tmp_path / "cache" / "envs" / "virtualenv"
    area.mkdir(parents=True)
    dead = area / ".staging-deadbeef-123-abcd1234"
    (dead / "bin").mkdir(parents=True)
    unmarked = area / "feedface"  # renamed into place, killed before its marker
    unmarked.mkdir()
    result = cli("envs", "gc")
    assert result.code == 0 and "removed 2 unfinished build(s)" in result.out
    assert not dead.exists() and not unmarked.exists()
    # A build in progress holds its key's lock: its staging dir stays.
    live = area / ".staging-cafe-1-aaaa"
    live.mkdir()
    holder = subprocess.Popen(
        ["flock", str(area / "cafe.lock"), "sleep", "30"], stdin=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: _locked(area / "cafe.lock"), what="the lock to be held")
        assert cli("envs", "gc").code == 0 and live.exists()
    finally:
        holder.kill()
        holder.wait()


def _locked(path: Path) -> bool:
    return subprocess.run(["flock", "-n", str(path), "true"], check=False).returncode != 0


def test_gc_refuses_negative_values(tmp_path: Path) -> None:
    result = cli("envs", "gc", "--keep-last", "-1")
    assert result.code == 2 and "must not be negative" in result.err
