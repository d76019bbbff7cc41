"""Store worker: populate, query and ingest into run-project's or MLflow's SQLite store.

    python store_ops.py ours|mlflow populate|list|ingest DIR N

`populate` fills DIR with N runs by bulk SQL (setup, not measured). `list` and `ingest` time
only their call, in this process, after the library is imported, and print `seconds=<float>`:
the interpreter and import start-up are not counted for either tool.

list: runs of one experiment with metric acc > 0.5, sorted by acc descending, first 100.
ingest: N metric points (one key, steps 0..N-1) into one run, through each tool's batch path
(run-project: the events-file reader that ingests a run's JSON lines; MLflow: log_batch, which
takes at most 1000 metrics per call).
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

EXPERIMENT = "bench"


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(started: tuple[float, float]) -> str:
    """The `seconds=…,cpu=…` line harness.run_worker reads."""
    wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
    return f"seconds={wall:.6f},cpu={cpu:.6f}"


def ours_populate(root: Path, n: int) -> None:
    from runner.tracking import runindex
    from runner.tracking.record import new_record
    from runner.tracking.store import SQLiteStore

    store = SQLiteStore(root)
    base = new_record(experiment=EXPERIMENT, run_name=None, source={"kind": "local"},
                      entry_point="main", command={"template": "python train.py", "argv": [],
                      "shell": False}, params={}, env={"kind": "local"}, backend="local",
                      heartbeat_seconds=10.0)  # fmt: skip
    store.create_run(base)  # applies the schema
    rng = random.Random(1)
    rows = []
    for i in range(n):
        acc, lr = rng.random(), rng.random()
        record = dict(base, id=f"{i:032x}", run_name=f"run-{i}", status="FINISHED",
                      params={"lr": {"value": lr, "type": "float"}},
                      metrics={"acc": {"last": acc, "step": 9, "min": 0.0, "max": acc,
                                       "count": 10}})  # fmt: skip
        rows.append((record["id"], EXPERIMENT, record["run_name"], "FINISHED", 1e9 + i, 1e9 + i,
                     1e9 + i, "bench", 1, 0, json.dumps(record)))  # fmt: skip
    # The values `runs list` filters and sorts on, as the store writes them with each record.
    values = [(row[0], *value) for row in rows for value in runindex.values(json.loads(row[-1]))]
    with sqlite3.connect(root / "runs.db") as conn:
        conn.execute("DELETE FROM runs")
        conn.execute("DELETE FROM run_values")
        conn.executemany("INSERT INTO runs (id, experiment, run_name, status, start_time,"
                         " end_time, heartbeat_at, host, runner_pid, exit_code, record)"
                         " VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)  # fmt: skip
        conn.executemany(f"INSERT INTO run_values ({', '.join(runindex.COLUMNS)})"
                         " VALUES (?,?,?,?,?,?)", values)  # fmt: skip


def ours_list(root: Path) -> str:
    import argparse

    from runner.cli import runs_compare
    from runner.tracking.store import SQLiteStore

    ns = argparse.Namespace(experiment=EXPERIMENT, status=None, limit=100, param=[],
                            metric=["acc>0.5"], sort="-metric.acc")  # fmt: skip
    started = _clock()
    store = SQLiteStore(root)
    records = runs_compare.select(store, ns)
    elapsed = _since(started)
    assert len(records) == 100, len(records)
    return elapsed


def ours_ingest(root: Path, n: int) -> str:
    from runner.tracking.events import EventReader
    from runner.tracking.run_record import RunRecord
    from runner.tracking.store import SQLiteStore

    store = SQLiteStore(root)
    record = RunRecord.new(store, experiment=EXPERIMENT, run_name=None, source={"kind": "local"},
                           entry_point="main", template="x", argv=[], shell=False, params={},
                           env_kind="local", backend="local", backend_config={},
                           heartbeat_seconds=10.0)  # fmt: skip
    record.create()
    record.running([], {"kind": "local"}, [], {})
    events = root / "events.jsonl"
    ts = time.time()
    with open(events, "w") as out:
        for step in range(n):
            out.write(json.dumps({"type": "metric", "key": "loss", "value": 1.0 / (step + 1),
                                  "step": step, "ts": ts}) + "\n")  # fmt: skip
    started = _clock()
    reader = EventReader(events, root)
    with reader.lock:
        record.ingest(reader)  # reads the file, writes the points in batches
    record.logged(reader.summary())
    elapsed = _since(started)
    assert store.metric_count(record.id) == n
    return elapsed


def _mlflow_store(root: Path) -> Any:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    return SqlAlchemyStore(f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts"))


def mlflow_populate(root: Path, n: int) -> None:
    store = _mlflow_store(root)
    exp_id = store.create_experiment(EXPERIMENT)
    rng = random.Random(1)
    runs, params, latest, metrics = [], [], [], []
    for i in range(n):
        uid, acc, lr = f"{i:032x}", rng.random(), rng.random()
        runs.append({"run_uuid": uid, "name": f"run-{i}", "source_type": "PROJECT",
                     "source_name": "", "entry_point_name": "main", "user_id": "bench",
                     "status": "FINISHED", "start_time": 10**12 + i, "end_time": 10**12 + i,
                     "lifecycle_stage": "active", "artifact_uri": str(root / "artifacts" / uid),
                     "experiment_id": int(exp_id)})  # fmt: skip
        params.append({"key": "lr", "value": str(lr), "run_uuid": uid})
        point = {"key": "acc", "value": acc, "timestamp": 10**12, "step": 9, "is_nan": 0,
                 "run_uuid": uid}  # fmt: skip
        latest.append(point)
        metrics.append(point)
    with sqlite3.connect(root / "mlflow.db") as conn:
        for table, rows in (("runs", runs), ("params", params), ("latest_metrics", latest),
                            ("metrics", metrics)):  # fmt: skip
            _bulk_insert(conn, table, rows)


def _bulk_insert(conn: sqlite3.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    """Insert rows, filling columns this MLflow version adds with their NOT NULL defaults."""
    info = conn.execute(f"PRAGMA table_info({table})").fetchall()
    cols = [c[1] for c in info]
    fill = {c[1]: (0 if "INT" in (c[2] or "").upper() else "") for c in info if c[3]}
    values = [tuple(row.get(c, fill.get(c)) for c in cols) for row in rows]
    marks = ",".join("?" * len(cols))
    conn.executemany(f"INSERT INTO {table} ({','.join(cols)}) VALUES ({marks})", values)


def mlflow_list(root: Path) -> str:
    store = _mlflow_store(root)
    exp_id = store.get_experiment_by_name(EXPERIMENT).experiment_id
    started = _clock()
    runs = store.search_runs([exp_id], "metrics.acc > 0.5", 1, 100, ["metrics.acc DESC"])
    elapsed = _since(started)
    assert len(runs) == 100, len(runs)
    return elapsed


def mlflow_ingest(root: Path, n: int) -> str:
    from mlflow.entities import Metric

    store = _mlflow_store(root)
    exp_id = store.create_experiment(f"ingest-{time.time_ns()}")
    run = store.create_run(exp_id, "bench", 0, [], "ingest")
    run_id = run.info.run_id
    ts = int(time.time() * 1000)
    points = [Metric("loss", 1.0 / (step + 1), ts, step) for step in range(n)]
    started = _clock()
    for start in range(0, n, 1000):  # MLflow's limit per log_batch call
        store.log_batch(run_id, metrics=points[start : start + 1000], params=[], tags=[])
    elapsed = _since(started)
    assert len(store.get_metric_history(run_id, "loss")) == n
    return elapsed


def main() -> None:
    tool, action, root, n = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    root.mkdir(parents=True, exist_ok=True)
    if action == "populate":
        (ours_populate if tool == "ours" else mlflow_populate)(root, n)
        print("seconds=0")
        return
    if action == "list":
        seconds = ours_list(root) if tool == "ours" else mlflow_list(root)
    else:
        seconds = ours_ingest(root, n) if tool == "ours" else mlflow_ingest(root, n)
    print(seconds)


if __name__ == "__main__":
    main()
