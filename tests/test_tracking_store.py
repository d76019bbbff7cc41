"""The same store behaviour on SQLite and PostgreSQL (one code path, schema migrations)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from runner.errors import StoreError
from runner.tracking.migrations import SCHEMA_VERSION
from runner.tracking.record import new_record
from runner.tracking.store import open_store
from support.cli import EXAMPLES, cli


def _record(experiment: str = "exp") -> dict[str, object]:
    return new_record(
        experiment=experiment,
        run_name=None,
        source={"kind": "local", "uri": "x", "path": "/x", "commit": None, "dirty": False},
        entry_point="main",
        command={"template": "true", "argv": ["true"], "shell": False},
        params={"lr": {"type": "float", "value": 0.1, "source": "cli"}},
        env={"kind": "local"},
        backend="local",
        heartbeat_seconds=5,
    )


def test_store_round_trip_of_records_metrics_params_and_files(
    store_url: str, tmp_path: Path
) -> None:
    store = open_store(store_url, str(tmp_path / "artifacts"))
    record = _record()
    store.create_run(record)
    store.update_run(str(record["id"]), {"status": "FINISHED", "exit_code": 0})
    points = [("loss", 1.0 / (i + 1), i, 1.0) for i in range(25_000)]
    store.add_metrics(str(record["id"]), points)
    store.set_pairs("logged_params", str(record["id"]), {"layers": "3"})
    store.set_pairs("tags", str(record["id"]), {"stage": "a"})
    store.set_pairs("tags", str(record["id"]), {"stage": "b"})
    files = [{"direction": "output", "path": "/m", "sha256": "a" * 64, "size": 3, "source": "x"}]
    store.set_files(str(record["id"]), files)

    again = open_store(store_url, str(tmp_path / "artifacts"))
    got = again.get_run(str(record["id"])[:10])
    assert got["status"] == "FINISHED" and got["exit_code"] == 0
    assert again.metric_count(str(record["id"])) == 25_000
    history = again.metric_history(str(record["id"]), "loss")
    assert history[0] == (0, 1.0) and history[-1][0] == 24_999
    assert again.files_with_hash("a" * 64, "output") == [(record["id"], "/m")]
    assert [r["id"] for r in again.list_runs(experiment="exp", status="finished")] == [record["id"]]
    assert again.list_runs(experiment="other") == []


def test_store_refuses_a_schema_newer_than_the_runner_knows(store_url: str) -> None:
    store = open_store(store_url)
    store.create_run(_record())
    store.db.transaction(
        lambda db: db.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    )
    fresh = open_store(store_url)
    with pytest.raises(StoreError) as info:
        fresh.create_run(_record())
    assert "schema version" in info.value.message and "upgrade" in info.value.hint


def test_sqlite_store_from_the_first_version_is_migrated_in_place(tmp_path: Path) -> None:
    # A store written by the walking skeleton: runs table only, no schema_version row.
    root = tmp_path / "old"
    root.mkdir()
    conn = sqlite3.connect(root / "runs.db")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(
        "CREATE TABLE runs (id TEXT PRIMARY KEY, experiment TEXT NOT NULL, run_name TEXT,"
        " status TEXT NOT NULL, start_time REAL NOT NULL, end_time REAL, heartbeat_at REAL"
        " NOT NULL, host TEXT, runner_pid INTEGER, exit_code INTEGER, record TEXT NOT NULL)"
    )
    old = _record()
    conn.execute(
        "INSERT INTO runs VALUES (?, 'exp', 'n', 'FINISHED', 1, 2, 2, 'h', 1, 0, ?)",
        (old["id"], json.dumps(old)),
    )
    conn.commit()
    conn.close()
    store = open_store(str(root))
    store.create_run(_record())
    assert len(store.list_runs()) == 2
    version = sqlite3.connect(root / "runs.db").execute(
        "SELECT value FROM meta WHERE key = 'schema_version'"
    )
    assert version.fetchone() == (str(SCHEMA_VERSION),)


@pytest.mark.slow
def test_run_and_runs_cli_through_either_store(store_url: str, tmp_path: Path) -> None:
    project = tmp_path / "csv_train"
    shutil.copytree(EXAMPLES / "csv_train", project)
    artifacts = tmp_path / "shared-artifacts"
    env = {"RUN_PROJECT_ARTIFACTS": str(artifacts)}
    result = cli(str(project), "--store", store_url, "-P", "epochs=4", env=env)
    assert result.code == 0, result.text
    listed = cli("runs", "list", "--json", "--store", store_url, env=env)
    assert listed.code == 0, listed.text
    (record,) = json.loads(listed.out)
    assert record["status"] == "FINISHED"
    assert record["metrics"]["loss"]["count"] == 4
    model = next(o for o in record["outputs"] if o["name"] == "workdir/model.json")
    assert (artifacts / record["id"] / "workdir" / "model.json").read_bytes() == (
        project / "model.json"
    ).read_bytes()
    assert model["sha256"] in {p.name for p in (artifacts / "objects").rglob("*")}
    assert "password" not in json.dumps(record)


def test_postgres_url_password_is_never_shown(pg_url: str) -> None:
    bad = pg_url.replace("rp:rp@", "rp:s3cret-pw@")
    result = cli("runs", "list", "--store", bad)
    assert result.code == 125
    assert "s3cret-pw" not in result.text and "***" in result.text
    assert "hint:" in result.text


def test_a_fresh_store_lists_no_runs(store_url: str) -> None:
    result = cli("runs", "list", "--store", store_url)
    assert result.code == 0 and "no runs yet" in result.out, result.text
