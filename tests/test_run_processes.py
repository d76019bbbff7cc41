"""No process of a run outlives it: a `setsid` double fork is stopped when the command ends,
on Ctrl-C and on SIGTERM; after `kill -9` of the runner, the next `runs list` stops what the
lost run left; an interrupted environment build leaves no build backend running
(docs/security.md, processes outlive their run)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.pids import pid_alive, stop_lost_run
from support.cli import REPO, cli, last_record
from support.projects import make_project

# The command leaves a `sleep 1000` in a new session (out of its process group), writes its
# pid, then either ends or waits to be interrupted.
FORK = """\
import subprocess, sys, time
leave = "sleep 1000 & echo $! > leftover.tmp && mv leftover.tmp leftover.pid"
subprocess.run(["setsid", "sh", "-c", leave], check=True)
print("forked", flush=True)
if sys.argv[1:] == ["wait"]:
    time.sleep(1000)
"""
MLPROJECT = """\
name: forks
entry_points:
  main:
    parameters: {then: {type: string, default: end}}
    command: python fork.py {then}
"""
# A grace far longer than any test: a runner that waited it out would fail by timeout.
LONG_GRACE = {"RUN_PROJECT_GRACE_SECONDS": "600"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "forks", {"MLproject": MLPROJECT, "fork.py": FORK})


@pytest.fixture
def watched() -> Iterator[list[int]]:
    """Pids a test saw; any still alive at the end are killed, so a failure leaves none."""
    seen: list[int] = []
    yield seen
    for pid in seen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_for(path: Path, seconds: float = 60) -> int:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return int(path.read_text())


def gone(pid: int, seconds: float = 10) -> bool:
    """`pid` ended (it may need a moment after its parent went away)."""
    deadline = time.monotonic() + seconds
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def start_runner(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, **LONG_GRACE, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "runner", *args], cwd=cwd, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_a_double_fork_is_stopped_when_the_command_ends(project: Path, watched: list[int]) -> None:
    result = cli(str(project), "--env-manager", "local", env=LONG_GRACE, timeout=60)
    assert result.code == 0, result.text
    watched.append(wait_for(project / "leftover.pid"))
    assert gone(watched[0])
    assert last_record()["status"] == "FINISHED"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_double_fork_is_stopped_when_the_run_is_interrupted(
    project: Path, watched: list[int], signum: int
) -> None:
    runner = start_runner(str(project), "--env-manager", "local", "-P", "then=wait", cwd=project)
    watched.append(runner.pid)
    watched.append(wait_for(project / "leftover.pid"))
    runner.send_signal(signum)
    assert runner.wait(timeout=60) == 128 + signum
    assert gone(watched[1])
    record = last_record()
    assert record["status"] == "KILLED"
    assert (Path(record["logs"]["stdout"]).parent.parent / "processes.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("command", [("runs", "list"), ("envs", "gc")])
def test_what_a_killed_runner_left_is_stopped_by_the_next_runs_list(
    project: Path, watched: list[int], command: tuple[str, ...]
) -> None:
    runner = start_runner(str(project), "--env-manager", "local", "-P", "then=wait", cwd=project)
    watched.append(runner.pid)
    watched.append(wait_for(project / "leftover.pid"))
    runner.kill()
    runner.wait(timeout=30)
    assert pid_alive(watched[1])  # orphaned: nobody stopped it yet
    swept = cli(*command, timeout=60)
    assert swept.code == 0, swept.text
    assert gone(watched[1])
    assert last_record()["status"] == "LOST"


def test_a_lost_runs_leftovers_are_found_by_its_id_not_by_its_pids(
    project: Path, watched: list[int], tmp_path: Path
) -> None:
    """A pid the record names but that another program now holds is never signalled."""
    unrelated = subprocess.Popen(["sleep", "1000"])  # no RUN_PROJECT_RUN_ID
    watched.append(unrelated.pid)
    result = cli(str(project), "--env-manager", "local", timeout=60)
    assert result.code == 0, result.text
    watched.append(wait_for(project / "leftover.pid"))
    run_dir = Path(last_record()["logs"]["stdout"]).parent.parent
    data = json.loads((run_dir / "processes.json").read_text())
    data["runner"]["pid"] = 999_999_999  # the runner is gone
    data["command"]["pgid"] = unrelated.pid  # and its group id now belongs to someone else
    (run_dir / "processes.json").write_text(json.dumps(data))
    assert stop_lost_run(run_dir / "processes.json", data["run_id"]) == 0
    assert unrelated.poll() is None


SLOW_BACKEND = """\
import os, time

def _stall():
    with open(os.path.join(os.environ["STALL_DIR"], "backend.tmp"), "w") as out:
        out.write(str(os.getpid()))
    os.replace(os.path.join(os.environ["STALL_DIR"], "backend.tmp"),
               os.path.join(os.environ["STALL_DIR"], "backend.pid"))
    time.sleep(1000)

def get_requires_for_build_wheel(config_settings=None):
    _stall()
    return []

prepare_metadata_for_build_wheel = build_wheel = build_sdist = lambda *a, **k: _stall()
get_requires_for_build_sdist = get_requires_for_build_wheel
"""


@pytest.mark.slow
def test_an_interrupted_env_build_leaves_no_build_backend_running(
    tmp_path: Path, watched: list[int], uv_cache: Path
) -> None:
    proj = make_project(
        tmp_path / "slow",
        {
            "MLproject": "name: slow\npython_env: python_env.yaml\n"
            "entry_points:\n  main:\n    command: python -c pass\n",
            "python_env.yaml": "python: '3.11'\ndependencies: ['./slowpkg']\n",
            "slowpkg/pyproject.toml": (
                '[project]\nname = "slowpkg"\nversion = "1.0"\n'
                '[build-system]\nrequires = []\nbuild-backend = "slow_backend"\n'
                'backend-path = ["."]\n'
            ),
            "slowpkg/slow_backend.py": SLOW_BACKEND,
        },
    )
    env = dict(os.environ, UV_CACHE_DIR=str(uv_cache), STALL_DIR=str(tmp_path))
    env.update(LONG_GRACE, PYTHONPATH=str(REPO))
    runner = subprocess.Popen(
        [sys.executable, "-m", "runner", str(proj), "--env-manager", "virtualenv"], env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    watched.append(runner.pid)
    watched.append(wait_for(tmp_path / "backend.pid", seconds=120))
    runner.send_signal(signal.SIGINT)
    assert runner.wait(timeout=60) == 130
    assert gone(watched[1]), "the build backend outlived the interrupted build"
    assert last_record()["status"] == "KILLED"
