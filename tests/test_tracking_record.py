"""The run record's one owner (tracking/run_record.py): steps in order, each state checked
against the schema under tests, and the periodic thread behind the heartbeat and live events."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runner.tracking.periodic import every
from runner.tracking.run_record import (
    CHECK_RECORDS,
    RecordSchemaError,
    RecordStateError,
    RunRecord,
)
from runner.tracking.store import Store, open_store
from support.cli import REPO

SOURCE = {"kind": "local", "uri": "/p", "path": "/p", "commit": None, "dirty": False}


def _record(store: Store, env_kind: str = "local") -> RunRecord:
    return RunRecord.new(
        store,
        experiment="exp",
        run_name=None,
        source=SOURCE,
        entry_point="main",
        template="python train.py {lr}",
        argv=["python", "train.py", "0.1"],
        shell=False,
        params={"lr": {"type": "float", "value": 0.1, "source": "cli"}},
        env_kind=env_kind,
        backend="local",
        backend_config={},
        heartbeat_seconds=5,
    )


def test_each_step_writes_the_record_and_out_of_order_steps_are_refused(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    record = _record(store)
    with pytest.raises(RecordStateError, match="running"):
        record.running([], {"kind": "local"}, ["python"], {})
    record.create()
    assert store.get_run(record.id)["status"] == "STARTING"
    with pytest.raises(RecordStateError, match="verdict"):
        record.verdict({"identical": True, "summary": "same"})
    record.running([], {"kind": "local"}, ["python", "train.py"], {"stdout": "/o"})
    record.backend_job({"id": "local-1"})
    record.close("FINISHED", 0, None)
    with pytest.raises(RecordStateError, match="close"):
        record.close("FAILED", None, "twice")
    stored = store.get_run(record.id)
    assert (stored["status"], stored["exit_code"], stored["backend_job"]) == (
        "FINISHED",
        0,
        {"id": "local-1"},
    )
    RunRecord.load(store, record.id[:10]).verdict({"identical": True, "summary": "same"})
    assert store.get_run(record.id)["rerun_verdict"]["summary"] == "same"


def test_a_record_that_violates_the_schema_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its own file, not conftest's: this violation is the one the test wants.
    found = tmp_path / "wanted-violations.txt"
    monkeypatch.setenv(CHECK_RECORDS, str(found))
    store = open_store(str(tmp_path / "store"))
    with pytest.raises(RecordSchemaError, match="env/kind"):
        _record(store, env_kind="no-such-kind").create()
    record = _record(store)
    record.create()
    record.running([], {"kind": "local"}, ["python"], {})
    record.close("FINISHED", 0, None)
    with pytest.raises(RecordSchemaError, match="rerun_verdict"):
        record.verdict({"identical": "yes"})  # no summary, and not a boolean
    assert len(found.read_text().splitlines()) == 2  # what conftest's fixture fails a test on


def test_a_violation_in_a_subprocess_reaches_the_test(tmp_path: Path) -> None:
    """A run-project subprocess whose error is swallowed or expected still leaves the
    violation where conftest's fixture looks."""
    found = tmp_path / "wanted-violations.txt"
    code = (
        "from runner.tracking.store import open_store\n"
        "from test_tracking_record import _record\n"
        f"_record(open_store({str(tmp_path / 'store')!r}), env_kind='bad').create()\n"
    )
    env = dict(os.environ, **{CHECK_RECORDS: str(found)})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests")])
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "RecordSchemaError" in proc.stderr
    assert "env/kind" in found.read_text()


def test_periodic_thread_ticks_until_the_block_ends_then_finishes() -> None:
    ticks: list[float] = []
    done = threading.Event()
    with every(0.01, lambda: ticks.append(time.time()), name="t", join_seconds=5, done=done.set):
        deadline = time.time() + 5
        while len(ticks) < 3 and time.time() < deadline:
            time.sleep(0.01)
    assert len(ticks) >= 3 and done.is_set()
    count = len(ticks)
    time.sleep(0.05)
    assert len(ticks) == count
