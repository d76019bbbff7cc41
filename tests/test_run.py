"""Running entry points end to end: scripts, exit codes, logs, signals, records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from support.cli import EXAMPLES, REPO, cli, last_record, records
from support.projects import make_project
from support.services import require

SCHEMA = json.loads((REPO / "schemas" / "run-record.schema.json").read_text())


def validate(record: dict[str, object]) -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(record)


def test_mlflow_example_runs_and_is_recorded(tmp_path: Path) -> None:
    result = cli(str(EXAMPLES / "mlflow_params"), "-P", "epochs=2", "--experiment", "demo",
                 "--run-name", "first")  # fmt: skip
    assert result.code == 0, result.text
    assert "epoch 1 loss" in result.out
    record = last_record()
    validate(record)
    assert (record["status"], record["exit_code"], record["reason"]) == ("FINISHED", 0, None)
    assert (record["experiment"], record["run_name"], record["entry_point"]) == (
        "demo",
        "first",
        "main",
    )
    assert record["params"]["epochs"] == {"type": "int", "value": 2, "source": "cli"}
    assert record["command"]["argv"][:2] == ["python", "train.py"]
    assert record["env"]["kind"] == "local"
    assert record["source"]["commit"] and len(record["source"]["commit"]) == 40  # in this repo
    assert "epoch 1 loss" in Path(record["logs"]["stdout"]).read_text()
    assert record["end_time"] >= record["start_time"]


def test_bare_python_and_shell_scripts_get_extras_as_flags(tmp_path: Path) -> None:
    project = str(EXAMPLES / "bare_script")
    py = cli(project, "-e", "train.py", "-P", "lr=0.1", "-P", "name=a b")
    assert py.code == 0 and "bare script args: --lr 0.1 --name a b" in py.out
    sh = cli(project, "-e", "run.sh", "-P", "k=v")
    assert sh.code == 0 and "shell script args: --k v" in sh.out
    assert last_record()["command"]["argv"] == ["bash", "run.sh", "--k", "v"]
    assert last_record()["params"]["k"]["declared"] is False


def test_unknown_entry_point_names_what_exists(tmp_path: Path) -> None:
    result = cli(str(EXAMPLES / "mlflow_params"), "-e", "trian")
    assert result.code == 2
    assert "no entry point 'trian'" in result.err and "echo, main, shell" in result.err
    missing = cli(str(EXAMPLES / "bare_script"), "-e", "nope.py")
    assert missing.code == 2 and "no script nope.py" in missing.err


def test_script_outside_the_project_is_not_an_entry_point(tmp_path: Path) -> None:
    make_project(tmp_path, {"outside.py": "print('escaped')\n"})
    project = make_project(tmp_path / "p", {"ok.py": "print(1)\n"})
    result = cli(str(project), "-e", "../outside.py")
    assert result.code == 2 and "escaped" not in result.out


def test_nonzero_exit_fails_the_run_with_that_code(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "p", {"fail.py": "import sys\nprint('bad', file=sys.stderr)\nsys.exit(3)\n"}
    )
    result = cli(str(project), "-e", "fail.py")
    assert result.code == 3
    record = last_record()
    assert (record["status"], record["exit_code"]) == ("FAILED", 3)
    assert "exited with code 3" in record["reason"]
    assert Path(record["logs"]["stderr"]).read_text() == "bad\n"


def test_command_not_found_fails_with_the_reason(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "p", {"MLproject": "entry_points:\n  main: {command: no-such-tool-x1}\n"}
    )
    result = cli(str(project))
    assert result.code == 127
    record = last_record()
    assert record["status"] == "FAILED" and "command not found: no-such-tool-x1" in record["reason"]


def test_missing_environment_kind_closes_nothing_open(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "p",
        {"MLproject": "docker_env: {image: x}\nentry_points:\n  main: {command: 'true'}\n"},
    )
    result = cli(str(project), "--env-manager", "nonsense")
    assert result.code == 2 and "unknown --env-manager" in result.err
    assert all(r["status"] not in ("STARTING", "RUNNING") for r in records())


SLEEPER = """\
    import os, subprocess, sys, time
    child = subprocess.Popen(["bash", "-c", "sleep 1000 & echo $! > bg.pid; wait"])
    open("fg.pid", "w").write(str(child.pid))
    print("ready", flush=True)
    time.sleep(1000)
    """


def start_sleeper(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    project = make_project(tmp_path / "p", {"sleeper.py": SLEEPER})
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", str(project), "-e", "sleeper.py"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    for _ in range(100):
        if (project / "bg.pid").exists() and (project / "bg.pid").read_text().strip():
            break
        time.sleep(0.05)
    return proc, project


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_the_whole_group_and_records_killed(
    tmp_path: Path, signum: int, code: int
) -> None:
    proc, project = start_sleeper(tmp_path)
    pids = [int((project / name).read_text()) for name in ("bg.pid", "fg.pid")]
    assert all(alive(pid) for pid in pids)
    proc.send_signal(signum)
    assert proc.wait(timeout=30) == code
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids), "a process of the run was left behind"
    record = last_record()
    assert (record["status"], record["exit_code"]) == ("KILLED", code)


def test_background_processes_left_by_a_finished_run_are_stopped(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "p", {"run.sh": "sleep 1000 &\necho $! > bg.pid\necho done\n"}
    )
    result = cli(str(project), "-e", "run.sh")
    assert result.code == 0 and "done" in result.out
    pid = int((project / "bg.pid").read_text())
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


def test_runner_killed_with_sigkill_shows_lost_not_running(tmp_path: Path) -> None:
    proc, _ = start_sleeper(tmp_path)
    assert last_record()["status"] == "RUNNING"
    proc.kill()
    proc.wait(timeout=10)
    record = last_record()  # listing sweeps runs whose runner is gone
    assert record["status"] == "LOST"
    assert "heartbeat" in record["reason"]
    assert record["end_time"] is not None


def test_lost_is_also_found_by_an_expired_heartbeat(tmp_path: Path) -> None:
    proc, _ = start_sleeper(tmp_path)
    record = last_record()
    db = tmp_path / "store" / "runs.db"
    import sqlite3

    proc.kill()
    proc.wait(timeout=10)
    # Pretend the runner ran on another host: only the heartbeat can tell it is gone.
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET host = 'elsewhere', heartbeat_at = heartbeat_at - 3600 WHERE id = ?",
                     (record["id"],))  # fmt: skip
    assert last_record()["status"] == "LOST"


@pytest.mark.slow
def test_fifty_parallel_runs_lose_no_row(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"MLproject": """\
        entry_points:
          main:
            parameters: {i: int}
            command: "python -c pass"
        """})  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [
        subprocess.Popen([sys.executable, "-m", "runner", str(project), "-P", f"i={i}", "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for i in range(50)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 50, outputs
    assert not any("locked" in out + err for out, err in outputs)
    found = records()
    assert len(found) == 50
    assert sorted(r["params"]["i"]["value"] for r in found) == list(range(50))
    assert {r["status"] for r in found} == {"FINISHED"}


def test_runs_list_is_a_table_newest_first_and_show_prints_everything(tmp_path: Path) -> None:
    project = str(EXAMPLES / "bare_script")
    cli(project, "-e", "train.py", "--run-name", "older")
    cli(project, "-e", "train.py", "--run-name", "newer")
    table = cli("runs", "list").out.splitlines()
    assert table[0].split()[:4] == ["ID", "NAME", "EXPERIMENT", "STATUS"]
    assert "newer" in table[1] and "older" in table[2]
    run_id = last_record()["id"]
    shown = cli("runs", "show", run_id[:6])
    assert shown.code == 0 and run_id in shown.out and "platform:" in shown.out
    as_json = json.loads(cli("runs", "show", run_id, "--json").out)
    validate(as_json)
    assert cli("runs", "show", "ffffffff").code == 125


def test_store_location_flag_env_and_default(tmp_path: Path) -> None:
    project = str(EXAMPLES / "bare_script")
    env_no_store = {k: v for k, v in os.environ.items() if k != "RUN_PROJECT_STORE"}
    subprocess.run([sys.executable, "-m", "runner", project, "-e", "train.py", "-q"],
                   env=dict(env_no_store, PYTHONPATH=str(REPO)), cwd=tmp_path, check=True)  # fmt: skip
    assert (tmp_path / "runs" / "runs.db").exists()
    assert cli(project, "-e", "train.py", "--store", str(tmp_path / "flag")).code == 0
    assert len(records(tmp_path / "flag")) == 1
    assert len(records()) == 0  # RUN_PROJECT_STORE's store was not used by the flagged run


def test_a_project_directory_named_like_a_verb_is_reached_with_dot_slash(tmp_path: Path) -> None:
    make_project(tmp_path / "runs", {"hello.py": "print('hello from ./runs')\n"})
    result = cli("./runs", "-e", "hello.py", cwd=tmp_path)
    assert result.code == 0 and "hello from ./runs" in result.out


def test_dirty_git_directory_records_commit_and_dirty_flag(tmp_path: Path) -> None:
    project = make_project(tmp_path / "repo", {"t.py": "print('v1')\n"})
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(project)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert cli(str(project), "-e", "t.py").code == 0
    assert (last_record()["source"]["commit"], last_record()["source"]["dirty"]) == (head, False)
    (project / "t.py").write_text("print('v2')\n")
    assert cli(str(project), "-e", "t.py").code == 0
    assert last_record()["source"]["dirty"] is True


def mount_read_only(path: Path) -> bool:
    """Bind-mount `path` read-only over itself (root only: chmod does not stop root)."""
    ok = (
        subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode
        == 0
    )
    return ok and subprocess.run(["mount", "-o", "remount,ro,bind", str(path)],
                                 capture_output=True).returncode == 0  # fmt: skip


def test_read_only_store_is_refused_before_the_command_runs(tmp_path: Path) -> None:
    canary = tmp_path / "CANARY"
    project = make_project(
        tmp_path / "p", {"MLproject": f"entry_points:\n  main: {{command: 'touch {canary}'}}\n"}
    )
    store = tmp_path / "ro-store"
    assert cli(str(EXAMPLES / "bare_script"), "-e", "train.py", "--store", str(store)).code == 0
    if not mount_read_only(store):
        require("mount", "needs root to bind-mount the store read-only (chmod does not stop root)")
    try:
        result = cli(str(project), "--store", str(store))
    finally:
        subprocess.run(["umount", str(store)], check=True)
    assert result.code == 125
    assert "read-only" in result.err and "--store" in result.err
    assert not canary.exists()
    assert len(records(store)) == 1  # the earlier run is intact
