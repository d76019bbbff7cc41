"""Environment builds that are killed, interrupted, raced, broken or impossible
(docs/security.md#environments): nothing half-built is ever used, and the next run recovers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest

from support.cli import REPO, cli, last_record, records
from support.envs import fake_python, hold_package, wait_for
from support.projects import make_project

MINOR = f"{sys.version_info[0]}.{sys.version_info[1]}"
SHOW = "import json, sys, holdpkg\nprint(json.dumps({'prefix': sys.prefix, 'v': holdpkg.VALUE}))\n"


@pytest.fixture(autouse=True)
def _shared_uv_cache(uv_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UV_CACHE_DIR", str(uv_cache))


def held_project(root: Path) -> Path:
    """A project whose env build waits inside `uv pip sync` until `holdpkg/hold` is removed."""
    project = make_project(root, {"show.py": SHOW, "requirements.txt": "./holdpkg\n"})
    hold_package(project)
    return project


def start(project: Path, logs: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    """Start a run in the background; its stderr goes to `logs/<name>.err`."""
    logs.mkdir(exist_ok=True)
    err = logs / f"{name}.err"
    out: IO[bytes] = open(logs / f"{name}.out", "wb")  # noqa: SIM115 (closed by the child's exit)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", str(project), "-e", "show.py"],
        stdout=out, stderr=open(err, "wb"), env=env, stdin=subprocess.DEVNULL,  # noqa: SIM115
    )  # fmt: skip
    return proc, err


def area(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "envs" / "virtualenv"


def leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in area(tmp_path).iterdir() if p.name.startswith(".staging"))


def complete(tmp_path: Path) -> list[Path]:
    return [p for p in area(tmp_path).iterdir() if (p / ".run-project-complete").is_file()]


def check_recovers(tmp_path: Path, project: Path) -> None:
    """The next run builds afresh, succeeds, and leaves no unfinished build behind."""
    (project / "holdpkg" / "hold").unlink(missing_ok=True)
    result = cli(str(project), "-e", "show.py")
    assert result.code == 0, result.text
    assert json.loads(result.out)["v"] == 42
    assert last_record()["env"]["built"] is True
    assert leftovers(tmp_path) == [] and len(complete(tmp_path)) == 1


def test_kill_9_during_a_build_leaves_nothing_that_is_used(tmp_path: Path) -> None:
    """docs/security.md#environments, also at the worst moment: renamed into place but without a marker."""
    project = held_project(tmp_path / "p")
    proc, _ = start(project, tmp_path / "logs", "victim")
    wait_for(lambda: (project / "holdpkg" / "started").exists(), what="the build to start")
    proc.kill()
    proc.wait()
    half = leftovers(tmp_path)
    assert len(half) == 1 and complete(tmp_path) == []
    # As if killed between the rename and the marker: the final name, still no marker.
    key = half[0].split("-")[1]
    os.rename(area(tmp_path) / half[0], area(tmp_path) / key)
    check_recovers(tmp_path, project)
    assert last_record()["env"]["key"] == key


def test_ctrl_c_twice_during_a_build_and_its_cleanup_then_the_next_run_recovers(
    tmp_path: Path,
) -> None:
    """docs/security.md#environments: Ctrl-C during the build, then during its cleanup."""
    project = held_project(tmp_path / "p")
    proc, err = start(project, tmp_path / "logs", "victim")
    wait_for(lambda: (project / "holdpkg" / "started").exists(), what="the build to start")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130, err.read_text()
    assert "Traceback" not in err.read_text()
    assert complete(tmp_path) == []
    check_recovers(tmp_path, project)


@pytest.mark.parametrize("runs", [3, 10])
def test_concurrent_runs_needing_one_new_env_build_it_once_and_all_succeed(
    tmp_path: Path, runs: int
) -> None:
    """docs/security.md#environments: one run builds, the others wait on the lock and then reuse it."""
    project = held_project(tmp_path / "p")
    started = [start(project, tmp_path / "logs", f"run{i}") for i in range(runs)]

    def waiting() -> int:
        return sum("waiting for another run" in err.read_text() for _, err in started)

    wait_for(lambda: waiting() == runs - 1, timeout=120, what=f"{runs - 1} runs to wait")
    (project / "holdpkg" / "hold").unlink()
    for proc, err in started:
        assert proc.wait(timeout=120) == 0, err.read_text()
    found = records()
    assert len(found) == runs and all(r["status"] == "FINISHED" for r in found)
    assert sum(r["env"]["built"] for r in found) == 1
    assert len({r["env"]["key"] for r in found}) == 1
    assert len(complete(tmp_path)) == 1 and leftovers(tmp_path) == []


def test_an_env_whose_python_link_was_deleted_is_rebuilt(tmp_path: Path) -> None:
    """docs/security.md#environments (the env's interpreter)."""
    project = held_project(tmp_path / "p")
    check_recovers(tmp_path, project)
    (complete(tmp_path)[0] / "bin" / "python").unlink()
    check_recovers(tmp_path, project)


def test_an_env_whose_base_site_py_was_deleted_is_never_used(tmp_path: Path) -> None:
    """docs/security.md#environments (site.py): on a private copy of this Python. The broken env fails its
    health check and is removed; the rebuild says the interpreter cannot start; once the
    interpreter is repaired, the next run builds and works."""
    bin_dir = fake_python(tmp_path / "fakepy")
    project = make_project(tmp_path / "p", {
        "MLproject": "python_env: python_env.yaml\nentry_points:\n  main: {command: python -c 'print(1)'}\n",
        "python_env.yaml": f'python: "{MINOR}"\n',
    })  # fmt: skip
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    assert cli(str(project), env=env).code == 0
    assert last_record()["env"]["interpreter"] == str(bin_dir / f"python{MINOR}")
    site = tmp_path / "fakepy" / "lib" / f"python{MINOR}" / "site.py"
    saved = site.read_bytes()
    site.unlink()
    broken = cli(str(project), env=env)
    assert broken.code == 125 and "is incomplete: the standard library file" in broken.err
    assert f"{site} is missing" in broken.err and "hint: repair or reinstall" in broken.err
    assert last_record()["status"] == "FAILED" and complete(tmp_path) == []
    site.write_bytes(saved)
    assert cli(str(project), env=env).code == 0
    assert last_record()["env"]["built"] is True and len(complete(tmp_path)) == 1


def test_an_uninstallable_requirement_fails_the_run_with_uvs_message(tmp_path: Path) -> None:
    """docs/security.md#environments: FAILED, the installer's own words shown and recorded, nothing cached."""
    project = make_project(tmp_path / "p", {
        "show.py": "print(1)\n",
        "requirements.txt": "six==1.17.0\nrp-no-such-package-x4==1.0\n",
    })  # fmt: skip
    result = cli(str(project), "-e", "show.py")
    assert result.code == 125
    assert "rp-no-such-package-x4" in result.err and "not found in the package registry" in (
        result.err
    )
    assert "hint: fix the requirement named above" in result.err
    record = last_record()
    assert record["status"] == "FAILED" and "rp-no-such-package-x4" in record["reason"]
    assert complete(tmp_path) == [] and leftovers(tmp_path) == []
    assert [p for p in area(tmp_path).iterdir() if p.is_dir()] == []
    shutil.rmtree(project)
