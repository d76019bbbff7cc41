"""Read the JSON lines a run appends to `$RUN_PROJECT_EVENTS` (run_record.py writes them to the
store: live from a thread, and at the end).

One event per line, from the injected Python client or from any language:

    {"type": "metric", "key": "loss", "value": 0.25, "step": 3, "ts": 1700000000.0}
    {"type": "param", "key": "layers", "value": "3"}
    {"type": "tag", "key": "stage", "value": "tuning"}
    {"type": "artifact", "path": "plots/loss.png", "name": "plots/loss.png"}
    {"type": "open", "path": "/data/train.csv", "mode": "r"}      (written by the audit hook)

and from the MLflow endpoint (runner/tracking/mlflow_api/; docs/tracking.md, "MLflow
projects"): `stored`, `tag_deleted`, `model`, `dataset`, `mlflow_run`, `mlflow_experiment`,
`mlflow_warning`, `mlflow_uri`; a metric, param or tag event with a `run` key belongs to a
nested MLflow run and goes to its entry under the record's `mlflow.runs`.

Metric points wait in `Ingested.pending_points` until written in batches, so 100k points in
one run cost seconds. A malformed line is skipped and counted; the user gets one warning
naming the first bad line.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

MAX_KEY = 250
MAX_VALUE = 6000
MAX_TAG_VALUE = 8000  # MLflow's limits: param values 6000 characters, tag values 8000


class Ingested:
    """Everything read from the events file so far."""

    def __init__(self) -> None:
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.metrics: dict[str, dict[str, Any]] = {}
        self.opened: dict[str, set[str]] = {}
        self.artifacts: list[tuple[str, str]] = []
        self.stored: list[tuple[str, str]] = []  # files the MLflow endpoint wrote
        self.bad_lines = 0
        self.first_bad = ""
        self.pending_points: list[tuple[str, float | None, int, float]] = []
        self.pending_pairs = False
        self.mlflow: dict[str, Any] = {}  # the record's `mlflow` section, once anything came


class EventReader:
    """Reads complete new lines from the events file and folds them into `Ingested`."""

    def __init__(self, path: Path, workdir: Path) -> None:
        self.path = path
        self.workdir = workdir
        self.offset = 0
        self.line_no = 0
        self.state = Ingested()
        self._steps: dict[str, int] = {}
        self.lock = threading.Lock()  # the live thread and the final pass never overlap

    def poll(self) -> None:
        """Read what was appended since the last poll (a partial last line waits)."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self.offset += end
        for raw in data[:end].splitlines():
            self.line_no += 1
            if raw.strip():
                self._one(raw)

    def _one(self, raw: bytes) -> None:
        try:
            event = json.loads(raw)
            if not isinstance(event, dict):
                raise ValueError("not a JSON object")
            self._apply(event)
        except (ValueError, TypeError, KeyError) as exc:
            state = self.state
            state.bad_lines += 1
            if not state.first_bad:
                state.first_bad = f"line {self.line_no}: {exc}"

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        state = self.state
        if event.get("run") or kind in MLFLOW_EVENTS:
            self._mlflow(kind, event)
        elif kind == "metric":
            key = _key(event["key"])
            value = float(event["value"])
            step = event.get("step")
            step = self._steps.get(key, 0) if step is None else int(step)
            self._steps[key] = step + 1
            ts = float(event.get("ts") or time.time())
            stored = None if math.isnan(value) else value
            state.pending_points.append((key, stored, step, ts))
            _summarise(state.metrics, key, value, step)
        elif kind in ("param", "tag"):
            target = state.params if kind == "param" else state.tags
            limit = MAX_VALUE if kind == "param" else MAX_TAG_VALUE
            target[_key(event["key"])] = _value(event["value"], limit)
            state.pending_pairs = True
        elif kind == "tag_deleted":
            state.tags.pop(_key(event["key"]), None)
            state.pending_pairs = True
        elif kind == "artifact":
            path = os.path.join(self.workdir, str(event["path"]))
            name = str(event["name"]) if "name" in event else os.path.basename(str(event["path"]))
            state.artifacts.append((path, name))
        elif kind == "open":
            mode = "w" if str(event.get("mode", "r")) == "w" else "r"
            state.opened.setdefault(str(event["path"]), set()).add(mode)
        else:
            raise ValueError(f"unknown event type {kind!r}")

    def _mlflow(self, kind: str, event: dict[str, Any]) -> None:
        """What came through the MLflow endpoint beyond the run's own params/metrics/tags."""
        section = self.state.mlflow
        if kind == "stored":
            name = str(event["name"])
            parts = name.split("/")
            if parts[0] != "logged" or len(parts) < 2 or {"", ".", ".."} & set(parts[1:]):
                raise ValueError(f"stored file {name!r} is not a plain path under logged/")
            # Made here from a checked name, so already a path on this machine (not one in a
            # container's or a job's view): kept apart from the command's own artifacts.
            self.state.stored.append((str(self.path.parent / name), name[len("logged/") :]))
        elif kind == "mlflow_uri":
            section["tracking_uri"] = str(event["uri"])
        elif kind == "mlflow_warning":
            warnings = section.setdefault("warnings", [])
            if len(warnings) < 100:
                warnings.append(str(event["message"])[:500])
        elif kind == "mlflow_experiment":
            section.setdefault("experiments", {})[str(event["id"])] = str(event["name"])
        elif kind == "dataset":
            dataset = {k: str(event.get(k, "")) for k in DATASET_FIELDS}
            section.setdefault("datasets", []).append(dataset)
        elif kind == "model":
            models = section.setdefault("models", {})
            models[str(event["model_id"])] = {k: v for k, v in event.items() if k != "type"}
        elif kind == "mlflow_run":
            entry = self._nested(str(event["id"]))
            entry["name"] = str(event.get("name") or "")
            entry["parent"] = event.get("parent")
            entry["status"] = str(event.get("status") or "")
        else:
            self._nested_value(kind, event)

    def _nested(self, run_id: str) -> dict[str, Any]:
        runs = self.state.mlflow.setdefault("runs", {})
        if run_id not in runs:
            runs[run_id] = {"name": "", "parent": None, "status": "", "params": {},
                            "tags": {}, "metrics": {}}  # fmt: skip
        entry: dict[str, Any] = runs[run_id]
        return entry

    def _nested_value(self, kind: str, event: dict[str, Any]) -> None:
        entry = self._nested(str(event["run"]))
        if kind == "metric":
            value, step = float(event["value"]), int(event.get("step") or 0)
            _summarise(entry["metrics"], _key(event["key"]), value, step)
        elif kind == "param":
            entry["params"][_key(event["key"])] = _value(event["value"])
        elif kind == "tag":
            entry["tags"][_key(event["key"])] = _value(event["value"], MAX_TAG_VALUE)
        elif kind == "tag_deleted":
            entry["tags"].pop(str(event["key"]), None)
        elif kind == "dataset":
            self.state.mlflow.setdefault("datasets", []).append(
                {**{k: str(event.get(k, "")) for k in DATASET_FIELDS}, "run": str(event["run"])}
            )
        else:
            raise ValueError(f"unknown event type {kind!r} for a nested run")

    def summary(self) -> dict[str, Any]:
        """The record's view of what was logged so far."""
        state = self.state
        found = {"metrics": state.metrics, "logged_params": state.params, "tags": state.tags}
        if state.mlflow:
            section = dict(state.mlflow)
            if "runs" in section:
                section["runs"] = [{"id": k, **v} for k, v in section["runs"].items()]
            if "models" in section:
                section["models"] = list(section["models"].values())
            found["mlflow"] = section
        return found


MLFLOW_EVENTS = frozenset(
    {"stored", "mlflow_uri", "mlflow_warning", "mlflow_experiment", "dataset", "model",
     "mlflow_run"}
)  # fmt: skip
DATASET_FIELDS = ("name", "digest", "source_type", "source", "context")


def _key(raw: Any) -> str:
    key = str(raw)
    if not key or len(key) > MAX_KEY or any(ord(c) < 32 for c in key):
        raise ValueError(f"key {key[:40]!r} must be 1-{MAX_KEY} printable characters")
    return key


def _value(raw: Any, limit: int = MAX_VALUE) -> str:
    value = raw if isinstance(raw, str) else json.dumps(raw)
    if len(value) > limit:
        raise ValueError(f"value longer than {limit} characters")
    return value


def _summarise(metrics: dict[str, dict[str, Any]], key: str, value: float, step: int) -> None:
    if math.isnan(value) or math.isinf(value):
        value_or_none: float | None = None
    else:
        value_or_none = value
    summary = metrics.get(key)
    if summary is None:
        metrics[key] = summary = {"last": None, "step": step, "min": None, "max": None, "count": 0}
    summary["count"] += 1
    if step >= summary["step"]:
        summary["last"], summary["step"] = value_or_none, step
    if value_or_none is not None:
        low, high = summary["min"], summary["max"]
        summary["min"] = value_or_none if low is None else min(low, value_or_none)
        summary["max"] = value_or_none if high is None else max(high, value_or_none)
