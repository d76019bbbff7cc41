"""`runs push`: copy run records into an MLflow tracking server, so its UI shows them.

    record ─▶ experiment by name (created if missing)
           ─▶ the MLflow run tagged run_project.run_id = <id> (created if missing)
           ─▶ params, tags (log-batch, 100 a call), metric points (1000 a call) not yet there
           ─▶ files through the artifact proxy, unless the run's pushed-files tag says so
           ─▶ status and end time

Idempotent: a second push finds the run by its tag, sends only the points the server lacks
and uploads nothing when the files are the same, so pushing twice creates nothing new (and a
push cut short resumes). Only MLflow's REST API is used (rest.py), never mlflow itself.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import PushError
from runner.tracking.push.entities import (
    FILES_TAG,
    MAPPING_TAG,
    STATUS,
    Point,
    files_of,
    millis,
    params_of,
    point_identity,
    points_of,
    record_json,
    tags_of,
)
from runner.tracking.push.rest import MlflowServer, ServerAnswer
from runner.tracking.record import FINAL
from runner.tracking.store import Store

METRICS_PER_CALL = 1000  # log-batch's limits
PAIRS_PER_CALL = 100
HISTORY_PAGE = 25000


@dataclass
class Pushed:
    """What one record's push did, for the line `runs push` prints."""

    run_id: str
    mlflow_run_id: str
    experiment_id: str
    created: bool
    params: int = 0
    points: int = 0
    tags: int = 0
    files: int = 0
    warnings: list[str] = field(default_factory=list)


def push_runs(
    store: Store, run_ids: Sequence[str], url: str, experiment: str | None,
    report: Callable[[Pushed], None],
) -> list[Pushed]:  # fmt: skip
    """Push every run (all ids checked first: an unknown one pushes nothing)."""
    records = [store.get_run(run_id) for run_id in run_ids]
    server = MlflowServer(url)
    experiments: dict[str, str] = {}
    done = []
    for record in records:
        name = experiment or str(record["experiment"])
        if name not in experiments:
            experiments[name] = experiment_id(server, name)
        pushed = _push_one(server, store, record, experiments[name])
        report(pushed)
        done.append(pushed)
    return done


def experiment_id(server: MlflowServer, name: str) -> str:
    """The id of the experiment called `name`, created when the server has none."""
    try:
        found = server.call("experiments/get-by-name", query={"experiment_name": name})
    except ServerAnswer as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return str(server.call("experiments/create", {"name": name})["experiment_id"])
    info = found["experiment"]
    if info.get("lifecycle_stage") == "deleted":
        raise PushError(
            f"experiment {name!r} is deleted on the MLflow server {server.label}",
            "restore it there (`mlflow experiments restore`), or push with --experiment NAME",
        )
    return str(info["experiment_id"])


def _push_one(server: MlflowServer, store: Store, record: dict[str, Any], exp: str) -> Pushed:
    info, created = _run_for(server, record, exp)
    pushed = Pushed(str(record["id"]), str(info["run_id"]), exp, created)
    existing = {} if created else _logged_so_far(server, pushed.mlflow_run_id)
    _push_pairs(server, pushed, record, existing)
    _push_datasets(server, pushed, record, existing)
    _push_metrics(server, store, pushed, record, created)
    _push_files(server, store, pushed, record, str(info.get("artifact_uri") or ""), existing)
    if record.get("status") in FINAL:
        update: dict[str, Any] = {
            "run_id": pushed.mlflow_run_id,
            "status": STATUS[str(record["status"])],
        }
        end = millis(record.get("end_time"))
        if end is not None:
            update["end_time"] = end
        server.call("runs/update", update)
    return pushed


def _run_for(server: MlflowServer, record: dict[str, Any], exp: str) -> tuple[dict[str, Any], bool]:
    """The MLflow run holding this record (found by its tag), else a new one; whether new."""
    search = {
        "experiment_ids": [exp],
        "filter": f"tags.`{MAPPING_TAG}` = '{record['id']}'",
        "max_results": 1,
    }
    runs = server.call("runs/search", search).get("runs") or []
    if runs:
        return dict(runs[0]["info"]), False
    create: dict[str, Any] = {
        "experiment_id": exp,
        "run_name": str(record.get("run_name") or record["id"][:8]),
        # The mapping tag comes with the run: a push cut short is found and resumed.
        "tags": [{"key": MAPPING_TAG, "value": str(record["id"])}],
    }
    start = millis(record.get("start_time"))
    if start is not None:
        create["start_time"] = start
    return dict(server.call("runs/create", create)["run"]["info"]), True


def _logged_so_far(server: MlflowServer, mlflow_run_id: str) -> dict[str, dict[str, str]]:
    """The params and tags the server already holds for the run."""
    run = server.call("runs/get", query={"run_id": mlflow_run_id})["run"]
    data = run.get("data") or {}
    found = {
        kind: {str(p["key"]): str(p.get("value", "")) for p in data.get(kind) or []}
        for kind in ("params", "tags")
    }
    inputs = (run.get("inputs") or {}).get("dataset_inputs") or []
    found["datasets"] = {
        f"{d['dataset'].get('name')}\0{d['dataset'].get('digest')}": "" for d in inputs
    }
    return found


def _push_pairs(server: MlflowServer, pushed: Pushed, record: dict[str, Any],
                existing: dict[str, dict[str, str]]) -> None:  # fmt: skip
    params = params_of(record, pushed.warnings)
    tags = tags_of(record, pushed.warnings)
    there = existing.get("params") or {}
    for key in [k for k in params if k in there and there[k] != params[k]]:
        # MLflow refuses to change a param; the server keeps its value.
        pushed.warnings.append(f"param {key!r} is {there[key]!r} on the server, "
                               f"{params.pop(key)!r} here; the server's value stays")  # fmt: skip
    params = {k: v for k, v in params.items() if k not in there}
    tags = {k: v for k, v in tags.items() if (existing.get("tags") or {}).get(k) != v}
    p_items, t_items = list(params.items()), list(tags.items())
    for start in range(0, max(len(p_items), len(t_items)), PAIRS_PER_CALL):
        batch = {
            "run_id": pushed.mlflow_run_id,
            "params": [{"key": k, "value": v} for k, v in p_items[start : start + PAIRS_PER_CALL]],
            "tags": [{"key": k, "value": v} for k, v in t_items[start : start + PAIRS_PER_CALL]],
        }
        server.call("runs/log-batch", batch)
    pushed.params, pushed.tags = len(p_items), len(t_items)


def _push_datasets(server: MlflowServer, pushed: Pushed, record: dict[str, Any],
                   existing: dict[str, dict[str, str]]) -> None:  # fmt: skip
    """Datasets the run logged as inputs (the record's `mlflow.datasets`), by digest."""
    there = existing.get("datasets") or {}
    inputs = []
    for entry in (record.get("mlflow") or {}).get("datasets") or []:
        if entry.get("run") or f"{entry.get('name')}\0{entry.get('digest')}" in there:
            continue  # a nested run's, or already on the server
        dataset = {key: str(entry.get(key) or "") for key in ("name", "digest", "source_type")}
        dataset["source"] = str(entry.get("source") or "{}")
        tags = [{"key": "mlflow.data.context", "value": str(entry["context"])}] if entry.get(
            "context") else []  # fmt: skip
        inputs.append({"dataset": dataset, "tags": tags})
    if inputs:
        server.call("runs/log-inputs", {"run_id": pushed.mlflow_run_id, "datasets": inputs})


def _push_metrics(server: MlflowServer, store: Store, pushed: Pushed,
                  record: dict[str, Any], created: bool) -> None:  # fmt: skip
    """Every stored point of every metric; on a run already there, only the points it lacks."""
    for key in sorted(record.get("metrics") or {}):
        points = points_of(key, store.metric_points(str(record["id"]), key))
        if not created:
            have = {point_identity(p) for p in _history(server, pushed.mlflow_run_id, key)}
            points = [p for p in points if point_identity(p) not in have]
        for start in range(0, len(points), METRICS_PER_CALL):
            chunk = points[start : start + METRICS_PER_CALL]
            server.call("runs/log-batch", {"run_id": pushed.mlflow_run_id, "metrics": chunk})
        pushed.points += len(points)


def _history(server: MlflowServer, mlflow_run_id: str, key: str) -> list[Point]:
    points: list[Point] = []
    token = ""
    while True:
        query = {"run_id": mlflow_run_id, "metric_key": key, "max_results": str(HISTORY_PAGE)}
        if token:
            query["page_token"] = token
        answer = server.call("metrics/get-history", query=query)
        points += [{**p, "key": key} for p in answer.get("metrics") or []]
        token = str(answer.get("next_page_token") or "")
        if not token:
            return points


def _push_files(server: MlflowServer, store: Store, pushed: Pushed, record: dict[str, Any],
                artifact_uri: str, existing: dict[str, dict[str, str]]) -> None:  # fmt: skip
    """Upload the run's files unless the same set was uploaded before (the files tag)."""
    files = files_of(record, store.artifact_dir(str(record["id"])))
    summary = record_json(record)
    digest = _digest(files, summary)
    if (existing.get("tags") or {}).get(FILES_TAG) == digest:
        return
    root = _proxied_root(artifact_uri)
    if root is None:
        pushed.warnings.append(
            f"the server stores this run's artifacts at {artifact_uri}, not through its "
            "artifact proxy; no file was pushed (start `mlflow server` with "
            "--artifacts-destination, which serves artifacts by default)"
        )
        return
    for path, stored in sorted(files.items()):
        server.upload(f"{root}/{path}", stored)
    server.upload(f"{root}/run_project/record.json", summary)
    pushed.files = len(files) + 1
    server.call("runs/set-tag", {"run_id": pushed.mlflow_run_id, "key": FILES_TAG,
                                 "value": digest})  # fmt: skip


def _proxied_root(artifact_uri: str) -> str | None:
    """`mlflow-artifacts:/1/<run>/artifacts` (or with a host) → `1/<run>/artifacts`."""
    parts = urllib.parse.urlsplit(artifact_uri)
    if parts.scheme != "mlflow-artifacts":
        return None
    return parts.path.strip("/")


def _digest(files: dict[str, Path], summary: bytes) -> str:
    """Names, sizes and change times of the files, and the record: what a re-upload would
    change (stored files are content-addressed links, so a new content is a new inode)."""
    hasher = hashlib.sha256(summary)
    for path, stored in sorted(files.items()):
        st = stored.stat()
        hasher.update(f"{path}\0{st.st_size}\0{st.st_ino}\0{st.st_mtime_ns}\n".encode())
    return hasher.hexdigest()[:32]
