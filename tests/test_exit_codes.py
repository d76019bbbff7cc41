"""The exit code table (runner/errors.py EXIT_CODES, docs/tracking.md#exit-codes), row by row:
2 for what was typed wrong, 125 when run-project failed around the command, 126/127 when the
command cannot be executed / is not found, 130/143 when run-project is interrupted, and
otherwise the command's own code. Real failures: a port with nothing listening, an
unreachable package index, an unreachable PostgreSQL, a read-only store directory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import REPO, cli, last_record
from support.git_servers import free_port
from support.projects import make_project

COMMANDS = """\
name: codes
entry_points:
  missing: {command: "no-such-command-here"}
  not_executable: {command: "./script.sh"}
  seven: {command: "python -c 'import sys; sys.exit(7)'"}
  takes_lr:
    parameters: {lr: {type: float, default: 0.1}}
    command: "python -c pass {lr}"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(tmp_path / "p", {"MLproject": COMMANDS, "script.sh": "echo hi\n"})
    (root / "script.sh").chmod(0o644)  # found, but not executable
    return root


def test_help_prints_the_exit_code_table() -> None:
    out = cli("--help").out
    for line in ("2 ", "125 ", "126/127", "130/143"):
        assert f"\n  {line}" in out, out


# 2: what was typed is wrong.


@pytest.mark.parametrize(
    "args",
    [
        ["--no-such-flag"],
        ["-P", "lr"],  # no '='
        ["-e", "takes_lr", "-P", "lr=fast"],  # not a float
        ["-e", "no_such_entry_point"],
        ["--env-manager", "pip"],
        ["--backend", "kubernetes"],
        ["--backend-config", "{not json"],
    ],
)
def test_a_command_line_error_exits_2(project: Path, args: list[str]) -> None:
    result = cli(str(project), *args)
    assert result.code == 2, result.text
    assert "error:" in result.err and "Traceback" not in result.err


def test_a_bad_flag_value_of_a_verb_that_runs_nothing_exits_2() -> None:
    assert cli("runs", "list", "--limit", "-1").code == 2
    assert cli("runs", "list", "--filter", "lr>>1").code == 2
    assert cli("envs", "gc", "--older-than", "-3").code == 2


# 125: run-project failed around the command.


def test_an_unreachable_git_server_exits_125() -> None:
    result = cli(f"git://127.0.0.1:{free_port()}/proj.git")  # nothing listens there
    assert result.code == 125, result.text
    assert "error:" in result.err


def test_a_missing_project_directory_exits_125(tmp_path: Path) -> None:
    result = cli(str(tmp_path / "nowhere"))
    assert result.code == 125, result.text


def test_a_refused_manifest_exits_125(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"MLproject": "entry_points: [not, a, mapping]\n"})
    result = cli(str(project))
    assert result.code == 125, result.text


@pytest.mark.slow
@pytest.mark.usefixtures("shared_uv_cache")
def test_a_requirement_the_unreachable_index_cannot_resolve_exits_125(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {
        "MLproject": "python_env: python_env.yaml\nentry_points:\n  main: {command: 'python -V'}\n",
        "python_env.yaml": "dependencies: [no-such-package-anywhere-w18]\n",
    })  # fmt: skip
    dead = f"http://127.0.0.1:{free_port()}/simple"  # nothing listens there
    result = cli(str(project), env={"UV_INDEX_URL": dead, "UV_DEFAULT_INDEX": dead})
    assert result.code == 125, result.text
    record = last_record()
    assert (record["status"], record["exit_code"]) == ("FAILED", None)


def test_an_unreachable_postgresql_store_exits_125_for_a_run_and_for_runs_list(
    project: Path,
) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql://rp:rp@127.0.0.1:{free_port()}/rp_test"  # nothing listens there
    run = cli(str(project), "-e", "seven", "--store", url)
    assert run.code == 125, run.text
    listing = cli("runs", "list", "--store", url)
    assert listing.code == 125, listing.text
    assert "error:" in listing.err and "Traceback" not in listing.err


def test_a_store_in_a_read_only_directory_exits_125(project: Path, read_only_dir: Path) -> None:
    result = cli(str(project), "-e", "seven", "--store", str(read_only_dir / "runs"))
    assert result.code == 125, result.text


def test_an_unknown_run_id_exits_125() -> None:
    assert cli("runs", "show", "0123abcd").code == 125
    assert cli("rerun", "0123abcd").code == 125


# The command's own code, 126 and 127, on this machine.


@pytest.mark.parametrize(
    ("entry", "code"), [("missing", 127), ("not_executable", 126), ("seven", 7)]
)
def test_a_local_run_exits_with_the_commands_code(project: Path, entry: str, code: int) -> None:
    result = cli(str(project), "-e", entry, "--env-manager", "local")
    assert result.code == code, result.text
    assert (last_record()["status"], last_record()["exit_code"]) == ("FAILED", code)


@pytest.mark.slow
@pytest.mark.usefixtures("shared_uv_cache")
def test_a_virtualenv_run_exits_126_or_127_when_the_command_cannot_start(project: Path) -> None:
    (project / "python_env.yaml").write_text("dependencies: []\n")
    assert cli(str(project), "-e", "missing", "--env-manager", "virtualenv").code == 127
    assert cli(str(project), "-e", "not_executable", "--env-manager", "virtualenv").code == 126


# 130/143: run-project interrupted while it fetches the project (no command yet).


@pytest.fixture
def silent_git_server() -> Iterator[tuple[int, threading.Event]]:
    """A port that accepts connections and never answers: a fetch hangs there."""
    listener = socket.create_server(("127.0.0.1", 0))
    connected = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        try:
            held.append(listener.accept()[0])
            connected.set()
        except OSError:
            pass  # closed by the fixture

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1], connected
    finally:
        listener.close()
        for conn in held:
            conn.close()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_the_fetch_exits_128_plus_its_number(
    silent_git_server: tuple[int, threading.Event], signum: int, code: int
) -> None:
    port, connected = silent_git_server
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", f"git://127.0.0.1:{port}/proj.git"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert connected.wait(60), "run-project never reached the git server"
        proc.send_signal(signum)
        assert proc.wait(timeout=60) == code, proc.communicate()[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
