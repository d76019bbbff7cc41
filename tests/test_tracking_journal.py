"""The run's write-ahead journal (tracking/journal.py): nothing is lost when the store or the
disk fails. Real faults: a PostgreSQL of the test's own stopped with an immediate shutdown
mid-run, a SQLite store on a tmpfs filled mid-run, kill -9 during a replay, two replays at
once, a torn journal, a log file on a full disk."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.tracking.journal import COPIES, Journal, journals_dir, pending
from runner.tracking.record import iso
from runner.tracking.run_record import RunRecord
from runner.tracking.store import Store, open_store
from support.cli import REPO, cli, ok
from support.pg_instance import own_postgres
from support.projects import make_project

TRAIN = """\
import sys, time
from run_project_client import log_metric
n, pause, code = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    log_metric("loss", 1.0 / (i + 1), step=i)
    print(f"step {i}", flush=True)
    time.sleep(pause)
sys.exit(code)
"""
MLPROJECT = """\
name: faults
entry_points:
  main:
    parameters:
      n: {type: int, default: 10}
      pause: {type: float, default: 0.5}
      code: {type: int, default: 0}
    command: "python train.py {n} {pause} {code}"
  loud:
    command: "python -c \\"import sys; [print('x' * 1000) for _ in range(3000)]\\""
  model:
    parameters:
      go: {type: string}
      code: {type: int, default: 0}
    command: "python model.py {go} {code}"
"""
MODEL = """\
import os, sys, time
print("waiting", flush=True)
while not os.path.exists(sys.argv[1]):  # the test breaks the artifacts' disk, then says go
    time.sleep(0.05)
open("model.bin", "wb").write(bytes(range(256)) * 1200)  # 300 KB in the working directory
sys.exit(int(sys.argv[2]))
"""


def _project(tmp_path: Path) -> Path:
    files = {"MLproject": MLPROJECT, "train.py": TRAIN, "model.py": MODEL}
    return make_project(tmp_path / "proj", files)


def _start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    full = dict(os.environ, **env)
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "runner", *args], env=full, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _until_output(proc: subprocess.Popen[str], text: str) -> list[str]:
    """Lines of the run's stdout up to the one holding `text` (the run is mid-way there)."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"{text!r} never printed: {seen} {proc.stderr and proc.stderr.read()}")


def _journal(store: Store, points: int, per_entry: int, end: str = "FINISHED") -> str:
    """A run's journal as the runner writes it (the real Journal), for a store that never got
    it: created, RUNNING, `points` metric points, then closed."""
    document = RunRecord.new(
        store, experiment="exp", run_name=None,
        source={"kind": "local", "uri": "/p", "path": "/p", "commit": None, "dirty": False},
        entry_point="main", template="python t.py", argv=["python", "t.py"], shell=False,
        params={}, env_kind="local", backend="local", backend_config={}, heartbeat_seconds=5,
    ).document()  # fmt: skip
    journal = Journal.start(store.label, document["id"])
    journal.append("create", {"record": document})
    journal.append("update", {"changes": {"status": "RUNNING"}})
    for start in range(0, points, per_entry):
        chunk = [["loss", float(i), i, 1.0] for i in range(start, min(points, start + per_entry))]
        journal.append("metrics", {"points": chunk}, points=len(chunk))
    journal.append("pairs", {"table": "tags", "pairs": {"stage": "a"}})
    changes = {"status": end, "exit_code": 0, "reason": None, "end_time": iso(time.time())}
    journal.append("update", {"changes": changes})
    journal.close()
    return str(document["id"])


def _steps(store: Store, run_id: str) -> list[int]:
    return [step for step, _ in store.metric_history(run_id, "loss")]


# -- the plain path ------------------------------------------------------------------------


def test_a_run_writes_through_its_journal_and_leaves_none_behind(tmp_path: Path) -> None:
    project = _project(tmp_path)
    ok(cli(str(project), "-q", "-P", "n=3", "-P", "pause=0"))
    store = open_store(str(tmp_path / "store"))
    (record,) = store.list_runs()
    assert record["status"] == "FINISHED" and _steps(store, record["id"]) == [0, 1, 2]
    assert pending(store.label) == []  # applied at the close, then deleted


def test_entries_are_applied_once_however_often_and_however_concurrently_replayed(
    store_url: str, tmp_path: Path
) -> None:
    store = open_store(store_url, str(tmp_path / "artifacts"))
    run_id = _journal(store, points=3000, per_entry=500)
    (path,) = pending(store.label)
    from runner.tracking.journal import read_entries

    entries = list(read_entries(path))
    first = store.apply_entries(run_id, entries[:4])  # an interrupted replay: part applied
    assert first.entries == 4

    def again() -> None:
        mine = store.reopen()
        mine.apply_entries(run_id, entries)
        mine.close()

    threads = [threading.Thread(target=again) for _ in range(3)]  # no flock between them
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.apply_entries(run_id, entries).entries == 0
    assert _steps(store, run_id) == list(range(3000))
    assert store.get_run(run_id)["status"] == "FINISHED"


# -- replay through the CLI ----------------------------------------------------------------


def test_runs_sync_applies_a_torn_journal_and_warns(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    run_id = _journal(store, points=20, per_entry=5)
    (path,) = pending(store.label)
    with open(path, "ab") as out:
        out.write(b'{"seq": 99, "op": "metrics", "points": [["loss", 1')  # the crash mid-write
    result = ok(cli("runs", "sync"))
    assert f"run {run_id[:8]}: applied 8 journal entries (20 metric points); now FINISHED" in (
        result.out
    )
    assert "1 torn line(s) skipped" in result.out
    assert _steps(store, run_id) == list(range(20)) and pending(store.label) == []
    assert "nothing to apply" in ok(cli("runs", "sync")).out


def test_runs_sync_exits_125_when_the_store_refuses_a_journal(tmp_path: Path) -> None:
    """docs/tracking.md#exit-codes: a journal not applied is run-project failing, not usage."""
    store = open_store(str(tmp_path / "store"))
    _journal(store, points=2, per_entry=1)
    (path,) = pending(store.label)
    with open(path, "a") as out:
        out.write('{"seq": 99, "t": 0, "op": "written-by-a-newer-run-project"}\n')
    result = cli("runs", "sync")
    assert result.code == 125, result.text
    assert "not applied" in result.out and pending(store.label) == [path]


def test_a_run_marked_lost_gets_its_real_outcome_from_its_journal(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    run_id = _journal(store, points=10, per_entry=5)
    (path,) = pending(store.label)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2]))  # the store saw the start only ...
    store.replay_journals()
    gone = subprocess.Popen(["true"])  # its runner died: a pid that is gone
    gone.wait()
    with sqlite3.connect(tmp_path / "store" / "runs.db") as db:
        db.execute("UPDATE runs SET runner_pid = ? WHERE id = ?", (gone.pid, run_id))
    assert store.sweep_lost() == 1 and store.get_run(run_id)["status"] == "LOST"
    journal = journals_dir(store.label) / f"{run_id}.jsonl"
    journal.write_bytes(b"".join(lines))  # ... then its journal arrives whole
    shown = ok(cli("runs", "show", run_id))  # any command that opens the store replays it
    assert "FINISHED" in shown.out
    record = store.get_run(run_id)
    assert (record["status"], record["exit_code"]) == ("FINISHED", 0)
    assert _steps(store, run_id) == list(range(10))


@pytest.mark.slow
def test_kill_9_during_a_replay_then_a_replay_applies_every_point_once(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    total = 600_000
    run_id = _journal(store, points=total, per_entry=20_000)
    store.connect()  # the store exists (empty) before the replay starts
    store.close()
    syncing = _start("runs", "sync", env={})
    db = sqlite3.connect(tmp_path / "store" / "runs.db", timeout=30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and syncing.poll() is None:
        if db.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] > 0:
            break
        time.sleep(0.01)
    syncing.send_signal(signal.SIGKILL)
    syncing.wait()
    part = db.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    assert 0 < part < total, "the replay was not interrupted mid-way"
    assert pending(store.label), "an interrupted replay keeps the journal"
    result = ok(cli("runs", "sync"))
    assert f"({total - part} metric points); now FINISHED" in result.out
    assert _steps(store, run_id) == list(range(total))


@pytest.mark.slow
def test_two_replays_at_once_apply_every_entry_once(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    total = 200_000
    run_id = _journal(store, points=total, per_entry=10_000)
    both = [_start("runs", "sync", env={}) for _ in range(2)]
    outs = [proc.communicate(timeout=120) for proc in both]
    assert [proc.returncode for proc in both] == [0, 0], outs
    assert sum(f"({total} metric points)" in out for out, _ in outs) == 1, outs
    assert _steps(store, run_id) == list(range(total))
    assert store.get_run(run_id)["status"] == "FINISHED" and pending(store.label) == []


# -- faults during a run -------------------------------------------------------------------


@pytest.mark.slow
def test_postgresql_stopped_mid_run_loses_nothing(tmp_path: Path) -> None:
    project = _project(tmp_path)
    with own_postgres() as server:
        env = {"RUN_PROJECT_STORE": server.url, "RUN_PROJECT_STORE_RETRY_SECONDS": "3"}
        running = _start(str(project), "-P", "n=10", "-P", "pause=0.5", env=env)
        _until_output(running, "step 3")
        server.stop("immediate")
        out, err = running.communicate(timeout=120)
        assert running.returncode == 0, err
        assert "step 9" in out  # the command's output kept coming
        assert err.count("waiting up to 3s for the run store") == 1, err
        (away,) = [line for line in err.splitlines() if "stopped answering" in line]
        store = open_store(server.url)
        (journal,) = pending(store.label)
        assert str(journal) in away
        server.start()
        synced = ok(cli("runs", "sync", env=env))
        assert "now FINISHED" in synced.out, synced.out
        (record,) = store.list_runs()
        assert (record["status"], record["exit_code"]) == ("FINISHED", 0)
        assert _steps(store, record["id"]) == list(range(10))
        assert record["metrics"]["loss"]["count"] == 10
        assert pending(store.label) == []
        store.close()


@pytest.mark.slow
def test_a_sqlite_store_on_a_disk_that_fills_mid_run_loses_nothing(
    tmp_path: Path, tiny_disk: Path
) -> None:
    project = _project(tmp_path)
    env = {
        "RUN_PROJECT_STORE": str(tiny_disk / "store"),
        "RUN_PROJECT_ARTIFACTS": str(tmp_path / "artifacts"),
    }
    running = _start(str(project), "-P", "n=10", "-P", "pause=0.5", "-P", "code=3", env=env)
    _until_output(running, "step 3")
    filler = tiny_disk / "filler"
    _fill(filler)
    out, err = running.communicate(timeout=120)
    assert running.returncode == 3, err  # the command's own exit code
    assert "step 9" in out
    assert len([line for line in err.splitlines() if "stopped answering" in line]) == 1, err
    assert "Traceback" not in err
    filler.unlink()
    shown = ok(cli("runs", "list", "--json", env=env))  # opening the store replays
    store = open_store(env["RUN_PROJECT_STORE"], env["RUN_PROJECT_ARTIFACTS"])
    (record,) = store.list_runs()
    assert (record["status"], record["exit_code"]) == ("FAILED", 3), shown.text
    assert _steps(store, record["id"]) == list(range(10))
    assert pending(store.label) == []
    store.close()  # the tmpfs is unmounted next


def _fill(path: Path) -> None:
    with open(path, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass


@pytest.mark.slow
def test_a_log_file_on_a_full_disk_is_reported_once_and_the_terminal_gets_everything(
    tmp_path: Path, tiny_disk: Path
) -> None:
    project = _project(tmp_path)
    env = {"RUN_PROJECT_ARTIFACTS": str(tiny_disk / "artifacts")}
    result = cli(str(project), "-e", "loud", env=env)
    assert result.code == 0, result.err
    assert result.out.count("x" * 1000) == 3000  # 3 MB through a 1 MiB disk's log
    assert result.err.count("cannot write the log") == 1, result.err
    assert "Traceback" not in result.err
    store = open_store(str(tmp_path / "store"), env["RUN_PROJECT_ARTIFACTS"])
    assert store.list_runs()[0]["status"] == "FINISHED"


@pytest.mark.slow
def test_a_run_writes_to_its_store_again_once_it_is_back(tmp_path: Path) -> None:
    project = _project(tmp_path)
    with own_postgres() as server:
        env = {"RUN_PROJECT_STORE": server.url, "RUN_PROJECT_STORE_RETRY_SECONDS": "2"}
        running = _start(str(project), "-P", "n=40", "-P", "pause=0.5", env=env)
        _until_output(running, "step 2")
        server.stop("immediate")
        err: list[str] = []
        reader = threading.Thread(target=lambda: err.extend(running.stderr or []))
        reader.start()
        deadline = time.monotonic() + 60
        while not any("stopped answering" in line for line in err):
            assert time.monotonic() < deadline and running.poll() is None, err
            time.sleep(0.1)
        server.start()
        assert running.stdout is not None
        assert "step 39" in running.stdout.read()
        assert running.wait(timeout=60) == 0, err
        reader.join()
        assert any("answers again" in line for line in err), err
        store = open_store(server.url)
        assert pending(store.label) == []  # no sync needed: the run wrote it all itself
        (record,) = store.list_runs()
        assert (record["status"], record["exit_code"]) == ("FINISHED", 0)
        assert _steps(store, record["id"]) == list(range(40))
        store.close()


def test_a_run_whose_journal_cannot_be_written_still_records_everything(
    tmp_path: Path, read_only_dir: Path
) -> None:
    project = _project(tmp_path)
    result = cli(
        str(project), "-P", "n=3", "-P", "pause=0", env={"XDG_STATE_HOME": str(read_only_dir)}
    )
    assert result.code == 0, result.err
    assert result.err.count("cannot write the journal") == 1, result.err
    store = open_store(str(tmp_path / "store"))
    (record,) = store.list_runs()
    assert record["status"] == "FINISHED" and _steps(store, record["id"]) == [0, 1, 2]


# -- every command that opens the store replays first --------------------------------------


def _pending_copy_of_a_real_run(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A finished run recorded in another store, whose journal waits for this test's store
    (RUN_PROJECT_STORE): the store has never heard of it until a replay. Both stores share
    one artifacts directory, so the run's files are where a rerun looks for them."""
    project = _project(tmp_path)
    first = tmp_path / "first"
    shared = str(first / "artifacts")
    ok(cli(str(project), "-P", "n=3", "-P", "pause=0", env={"RUN_PROJECT_STORE": str(first)}))
    (record,) = open_store(str(first)).list_runs()
    store = open_store(os.environ["RUN_PROJECT_STORE"], shared)
    journal = Journal.start(store.label, record["id"])
    journal.append("create", {"record": record})
    journal.close()
    return str(record["id"]), {"RUN_PROJECT_ARTIFACTS": shared}


def test_a_rerun_replays_the_journal_of_the_run_it_repeats_first(tmp_path: Path) -> None:
    run_id, env = _pending_copy_of_a_real_run(tmp_path)
    result = ok(cli("rerun", run_id, env=env))
    assert f"of {run_id[:8]}: " in result.out and "different" not in result.out, result.text
    store = open_store(os.environ["RUN_PROJECT_STORE"], env["RUN_PROJECT_ARTIFACTS"])
    assert pending(store.label) == []
    assert {r["id"] for r in store.list_runs() if r.get("rerun_of") == run_id}


@pytest.mark.parametrize("verb", [("envs", "list"), ("envs", "gc", "--dry-run")])
def test_envs_verbs_replay_the_journals_waiting_for_the_store(
    tmp_path: Path, verb: tuple[str, ...]
) -> None:
    store = open_store(os.environ["RUN_PROJECT_STORE"])
    run_id = _journal(store, points=5, per_entry=5)
    ok(cli(*verb))
    assert pending(store.label) == []
    assert store.get_run(run_id)["status"] == "FINISHED" and _steps(store, run_id) == [
        0,
        1,
        2,
        3,
        4,
    ]


# -- outputs the artifacts' disk refuses ---------------------------------------------------


def _model_run_with_a_broken_artifacts_disk(
    tmp_path: Path, artifacts: Path, code: int, break_disk: Callable[[], object]
) -> tuple[str, dict[str, Any]]:
    """A run whose output is written once `break_disk` made the artifacts' disk full or
    read-only; the command exits with `code`. Returns the run's stderr and its record."""
    project = _project(tmp_path)
    go = tmp_path / "go"
    running = _start(
        str(project), "-e", "model", "-P", f"go={go}", "-P", f"code={code}",
        env={"RUN_PROJECT_ARTIFACTS": str(artifacts)},
    )  # fmt: skip
    _until_output(running, "waiting")
    try:
        break_disk()
    except BaseException:
        running.terminate()  # the command waits for `go` forever otherwise
        running.wait()
        raise
    go.touch()
    _out, err = running.communicate(timeout=120)
    assert running.returncode == code, err  # the command's own exit code
    assert "Traceback" not in err
    (record,) = open_store(os.environ["RUN_PROJECT_STORE"], str(artifacts)).list_runs()
    return err, record


def _model_output(record: dict[str, Any]) -> dict[str, Any]:
    (output,) = [o for o in record["outputs"] if o["name"] == "workdir/model.bin"]
    return dict(output)


@pytest.mark.slow
def test_an_output_the_full_artifacts_disk_refused_is_stored_by_the_next_sync(
    tmp_path: Path, tiny_disk: Path
) -> None:
    filler = tiny_disk / "filler"
    err, record = _model_run_with_a_broken_artifacts_disk(
        tmp_path, tiny_disk, 0, lambda: _fill(filler)
    )
    (line,) = [line for line in err.splitlines() if "could not be stored" in line]
    assert "disk is full" in line and "runs sync" in line, err
    assert (record["status"], record["exit_code"]) == ("FINISHED", 0)
    output = _model_output(record)
    assert output["pending"] is True and output["stored"] is False
    assert line.removeprefix("run-project: ") in record["capture"]["warnings"]
    model = tmp_path / "proj" / "model.bin"
    expected = hashlib.sha256(model.read_bytes()).hexdigest()
    model.write_bytes(b"changed after the run")  # the journal kept the run's own bytes
    filler.unlink()
    env = {"RUN_PROJECT_ARTIFACTS": str(tiny_disk)}
    synced = ok(cli("runs", "sync", env=env))
    assert f"run {record['id'][:8]}: stored 1 pending artifact(s)" in synced.out, synced.out
    kept = tiny_disk / record["id"] / "workdir" / "model.bin"
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == expected == output["sha256"]
    store = open_store(os.environ["RUN_PROJECT_STORE"], str(tiny_disk))
    after = store.get_run(record["id"])
    assert "pending" not in _model_output(after) and "stored" not in _model_output(after)
    assert after["capture"]["stored_bytes"] == record["capture"]["stored_bytes"] + 307_200
    assert pending(store.label, COPIES) == [] and os.listdir(journals_dir(store.label)) == []


@pytest.mark.slow
def test_an_output_a_read_only_artifacts_disk_refused_is_stored_by_the_next_command(
    tmp_path: Path,
) -> None:
    # The objects directory, where every artifact's bytes go, bind-mounted read-only over
    # itself mid-run (EROFS even for root), then made writable again by unmounting it.
    artifacts = tmp_path / "artifacts"
    objects = artifacts / "objects"
    objects.mkdir(parents=True)

    def read_only() -> None:
        subprocess.run(["mount", "--bind", str(objects), str(objects)], check=True)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(objects)], check=True)

    try:
        err, record = _model_run_with_a_broken_artifacts_disk(tmp_path, artifacts, 3, read_only)
    finally:
        subprocess.run(["umount", str(objects)], check=False)
    assert len([line for line in err.splitlines() if "could not be stored" in line]) == 1, err
    assert (record["status"], record["exit_code"]) == ("FAILED", 3)  # the command's outcome
    assert _model_output(record)["pending"] is True
    ok(cli("runs", "show", record["id"], env={"RUN_PROJECT_ARTIFACTS": str(artifacts)}))
    kept = artifacts / record["id"] / "workdir" / "model.bin"
    assert kept.read_bytes() == (tmp_path / "proj" / "model.bin").read_bytes()
    store = open_store(os.environ["RUN_PROJECT_STORE"], str(artifacts))
    assert "pending" not in _model_output(store.get_run(record["id"]))
    assert pending(store.label, COPIES) == []


def test_a_pending_output_whose_artifacts_disk_still_refuses_is_kept_for_later(
    tmp_path: Path, read_only_dir: Path
) -> None:
    store = open_store(os.environ["RUN_PROJECT_STORE"], str(read_only_dir))
    run_id = _journal(store, points=0, per_entry=1)
    source = tmp_path / "model.bin"
    source.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    copies = journals_dir(store.label) / f"{run_id}{COPIES}"
    copy = {"from": str(source), "name": "workdir/model.bin", "sha256": digest, "size": 7}
    copies.write_text(json.dumps(copy) + "\n")
    synced = cli("runs", "sync", env={"RUN_PROJECT_ARTIFACTS": str(read_only_dir)})
    assert synced.code != 0, synced.text
    assert f"run {run_id[:8]}: pending artifacts not stored (cannot store artifact" in synced.out
    assert pending(store.label) == [] and pending(store.label, COPIES) == [copies]


def test_kept_bytes_no_list_points_to_are_removed_by_the_next_replay(tmp_path: Path) -> None:
    """A runner killed between keeping an output's bytes and writing their list leaves a
    spool nobody points to; a spool whose list or live journal is there stays."""
    store = open_store(os.environ["RUN_PROJECT_STORE"], str(tmp_path / "artifacts"))
    folder = journals_dir(store.label)
    folder.mkdir(parents=True, exist_ok=True)
    orphan, listed = folder / "0badc0de.files", folder / "0addedd.files"
    for spool in (orphan, listed):
        (spool / "ab").mkdir(parents=True)
        (spool / "ab" / "cdef").write_bytes(b"kept")
    (folder / f"0addedd{COPIES}").write_text("")  # a list: its spool is not orphaned
    cli("runs", "sync")  # the list's run is not in this store: it stays, with its spool
    assert not orphan.exists()
    assert (listed / "ab" / "cdef").read_bytes() == b"kept"


FILLS_ITS_OWN_DISK = """\
import os
from run_project_client import log_metric

filler = os.path.join(os.path.dirname(os.environ["RUN_PROJECT_EVENTS"]), "filler")
try:
    with open(filler, "wb", buffering=0) as out:  # the events file's disk, full
        while True:
            out.write(b"\\0" * 65536)
except OSError:
    pass
for step in range(3):
    log_metric("loss", 1.0 / (step + 1), step=step)  # refused by the disk: kept in memory
os.remove(filler)
for step in range(3, 5):
    log_metric("loss", 1.0 / (step + 1), step=step)  # the disk takes them, and the kept ones
print("logged")
"""


@pytest.mark.slow
def test_metrics_logged_while_the_events_disk_is_full_reach_the_record(
    tmp_path: Path, tiny_disk: Path
) -> None:
    """The command goes on (no OSError from log_metric), says so once, and the points it
    logged while its events file's disk was full arrive once the disk takes them again."""
    project = make_project(tmp_path / "p", {"fill.py": FILLS_ITS_OWN_DISK})
    result = cli(str(project), "-e", "fill.py", env={"RUN_PROJECT_ARTIFACTS": str(tiny_disk)})
    assert result.code == 0, result.text
    assert "logged" in result.out and "Traceback" not in result.err
    assert result.err.count("the command goes on and what it logs is kept") == 1, result.err
    store = open_store(os.environ["RUN_PROJECT_STORE"], str(tiny_disk))
    (record,) = store.list_runs()
    assert record["status"] == "FINISHED"
    assert _steps(store, record["id"]) == list(range(5))
    store.close()  # the tmpfs is unmounted next
