"""What the endpoint knows about the run, its experiments, nested runs and logged models.

Every accepted change is appended at once as an event line to `$RUN_PROJECT_EVENTS` (one
`os.write` per line, so the runner reads whole lines while the run goes on); the in-memory
copy answers the client's reads (get run, metric history, search). MLflow's limits and
errors are mirrored so a project sees here what it would see against MLflow's server.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import threading
import time
from array import array

from .errors import ApiError, invalid, missing

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

# MLflow's own limits (mlflow/utils/validation.py, 3.x)
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS_TAGS = 100
MAX_BATCH_ENTITIES = 1000
MAX_DATASETS = 1000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # timestamps and steps, as MLflow's protobufs
DEFAULT_EXPERIMENT = "0"
PARENT_TAG = "mlflow.parentRunId"


def now_ms() -> int:
    return int(time.time() * 1000)


class Events:
    """Appends event lines to the run's events file. Lines its disk refuses (full) wait in
    memory, up to BACKLOG_BYTES, and go first once it takes lines again: the client gets its
    answer and the command goes on (docs/tracking.md, "When the store fails")."""

    BACKLOG_BYTES = 64 << 20

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()
        self._backlog: list[bytes] = []
        self._waiting = 0  # bytes in the backlog
        self.dropped = 0  # lines over the backlog's bound: lost, counted

    def write(self, *events: dict[str, Any]) -> None:
        data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events).encode()
        with self._lock:
            try:
                self._write_backlog()
                os.write(self._fd, data)  # O_APPEND: whole lines, even beside other writers
            except OSError as exc:
                self._keep(data, exc)

    def _write_backlog(self) -> None:
        while self._backlog:
            os.write(self._fd, self._backlog[0])
            self._waiting -= len(self._backlog.pop(0))

    def _keep(self, data: bytes, exc: OSError) -> None:
        if not self._backlog and not self.dropped:
            why = exc.strerror or exc
            sys.stderr.write(f"run-project: the MLflow endpoint cannot write {self.path} "
                             f"({why}); what is logged waits in memory\n")  # fmt: skip
        if self._waiting + len(data) <= self.BACKLOG_BYTES:
            self._backlog.append(data)
            self._waiting += len(data)
        else:
            self.dropped += data.count(b"\n")

    def close(self) -> None:
        with self._lock:
            try:
                self._write_backlog()
            except OSError as exc:
                self.dropped += sum(chunk.count(b"\n") for chunk in self._backlog)
                why = exc.strerror or exc
                sys.stderr.write(f"run-project: {self.dropped} MLflow event line(s) lost: "
                                 f"{self.path} still refuses them ({why})\n")  # fmt: skip
            os.close(self._fd)


class Series:
    """One metric's points (value, timestamp ms, step), as a client reads them back, in three
    typed arrays: 24 bytes a point instead of ~175 as tuples (a million points: benchmarks/
    RESULTS.md, MLflow logging)."""

    __slots__ = ("stamps", "steps", "values")

    def __init__(self) -> None:
        self.values = array("d")
        self.stamps = array("q")
        self.steps = array("q")

    def append(self, value: float, ts: int, step: int) -> None:
        self.values.append(value)
        self.stamps.append(ts)
        self.steps.append(step)

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int) -> tuple[float, int, int]:
        return self.values[index], self.stamps[index], self.steps[index]

    def __iter__(self) -> Iterator[tuple[float, int, int]]:
        return zip(self.values, self.stamps, self.steps, strict=True)


class Run:
    def __init__(self, run_id: str, experiment_id: str, name: str, parent: str | None) -> None:
        self.id = run_id
        self.experiment_id = experiment_id
        self.name = name
        self.parent = parent
        self.status = "RUNNING"
        self.start_time = now_ms()
        self.end_time: int | None = None
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.metrics: dict[str, Series] = {}
        self.datasets: list[dict[str, Any]] = []
        self.lifecycle = "active"


class Model:
    def __init__(self, model_id: str, experiment_id: str, name: str, path: str) -> None:
        self.id = model_id
        self.experiment_id = experiment_id
        self.name = name
        self.path = path  # its files: logged/<path>
        self.status = "LOGGED_MODEL_PENDING"
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.source_run_id: str | None = None
        self.model_type = ""
        self.created = now_ms()
        self.updated = self.created


class State:
    """The run and everything the client created beside it (see module docstring)."""

    def __init__(self, events: Events, run_id: str, experiment: str, run_name: str) -> None:
        self.events = events
        self.run_id = run_id
        self.lock = threading.RLock()
        self.experiments: dict[str, dict[str, Any]] = {}
        self._add_experiment(DEFAULT_EXPERIMENT, experiment or "Default", announce=False)
        self.runs: dict[str, Run] = {run_id: Run(run_id, DEFAULT_EXPERIMENT, run_name, None)}
        self.models: dict[str, Model] = {}
        self.warned: set[str] = set()
        self.called = False

    def first_call(self) -> None:
        """The record says MLflow logged here once a client called; a run that never uses
        MLflow gets no event at all."""
        with self.lock:
            if self.called:
                return
            self.called = True
        self.events.write({"type": "mlflow_uri", "uri": "served"})

    # -- experiments ----------------------------------------------------------------------
    def _add_experiment(self, exp_id: str, name: str, announce: bool = True) -> dict[str, Any]:
        stamp = now_ms()
        experiment = {
            "experiment_id": exp_id,
            "name": name,
            "artifact_location": f"mlflow-artifacts:/{exp_id}",
            "lifecycle_stage": "active",
            "creation_time": stamp,
            "last_update_time": stamp,
            "tags": [],
        }
        self.experiments[exp_id] = experiment
        if announce:
            self.events.write({"type": "mlflow_experiment", "id": exp_id, "name": name})
        return experiment

    def experiment(self, exp_id: str) -> dict[str, Any]:
        found = self.experiments.get(str(exp_id))
        if found is None:
            raise missing(f"No Experiment with id={exp_id} exists")
        return found

    def experiment_by_name(self, name: str) -> dict[str, Any]:
        for experiment in self.experiments.values():
            if experiment["name"] == name:
                return experiment
        raise missing(f"Could not find experiment with name '{name}'")

    def create_experiment(self, name: str) -> str:
        if not name or len(name) > 500:
            raise invalid("Invalid experiment name: must be 1-500 characters")
        with self.lock:
            if any(e["name"] == name for e in self.experiments.values()):
                raise ApiError(
                    "RESOURCE_ALREADY_EXISTS", f"Experiment(name={name}) already exists."
                )
            exp_id = str(len(self.experiments))
            self._add_experiment(exp_id, name)
            return exp_id

    # -- runs -----------------------------------------------------------------------------
    def run(self, run_id: str) -> Run:
        found = self.runs.get(str(run_id))
        if found is None:
            raise missing(
                f"Run with id={run_id} not found: this endpoint serves run {self.run_id} and "
                "its nested runs; a run-project run (one mlflow.projects.run started) is read "
                f"with `run-project runs show {run_id}`"
            )
        return found

    def create_run(self, exp_id: str, name: str, tags: dict[str, str], start: int | None) -> Run:
        self.experiment(exp_id)
        for key, value in tags.items():
            _check_tag(key, value)
        with self.lock:
            run_id = os.urandom(16).hex()
            parent = tags.get(PARENT_TAG)
            run = Run(run_id, str(exp_id), name or f"run-{run_id[:8]}", parent)
            run.start_time = start or run.start_time
            run.tags.update(tags)
            self.runs[run_id] = run
            self._announce(run)
            self.events.write(*(self._pair(run, "tag", k, v) for k, v in tags.items()))
            return run

    def update_run(self, run_id: str, status: str, end: int | None, name: str) -> Run:
        run = self.run(run_id)
        with self.lock:
            run.status = status or run.status
            run.end_time = end if end is not None else run.end_time
            run.name = name or run.name
            if run.id != self.run_id:  # the run-project run ends when its command ends
                self._announce(run)
        return run

    def _announce(self, run: Run) -> None:
        self.events.write(
            {
                "type": "mlflow_run",
                "id": run.id,
                "parent": run.parent,
                "name": run.name,
                "experiment_id": run.experiment_id,
                "status": run.status,
            }
        )

    def _pair(self, run: Run, kind: str, key: str, value: str) -> dict[str, Any]:
        event: dict[str, Any] = {"type": kind, "key": key, "value": value}
        if run.id != self.run_id:
            event["run"] = run.id
        return event

    # -- logging --------------------------------------------------------------------------
    def log_batch(
        self,
        run_id: str,
        metrics: list[dict[str, Any]],
        params: list[dict[str, Any]],
        tags: list[dict[str, Any]],
    ) -> None:
        """Check everything first, then apply all of it: a refused batch changes nothing."""
        _check_batch_size(metrics, params, tags)
        run = self.run(run_id)
        points = [_metric(m) for m in metrics if not self._model_link(run, m)]
        pairs = [(str(p.get("key", "")), _text(p.get("value"))) for p in params]
        for key, value in pairs:
            _check_param(key, value)
        tag_pairs = [(str(t.get("key", "")), _text(t.get("value"))) for t in tags]
        for key, value in tag_pairs:
            _check_tag(key, value)
        with self.lock:
            new_params = self._new_params(run, pairs)
            events = [self._pair(run, "param", k, v) for k, v in new_params.items()]
            run.params.update(new_params)
            for name, number, ts, step in points:
                run.metrics.setdefault(name, Series()).append(number, ts, step)
                event = self._pair(run, "metric", name, "")
                event.update(value=number, step=step, ts=ts / 1000)
                events.append(event)
            for key, value in tag_pairs:
                run.tags[key] = value
                events.append(self._pair(run, "tag", key, value))
            if events:
                self.events.write(*events)

    def _model_link(self, run: Run, raw: dict[str, Any]) -> bool:
        """MLflow 3's `log_model` logs the run's metrics again with the model's id, to link
        them: the same point a second time, not a new one."""
        if not raw.get("model_id"):
            return False
        key, value, ts, step = _metric(raw)
        same = (value, ts, step)
        return any(p == same or (p[1:] == same[1:] and math.isnan(p[0]) and math.isnan(value))
                   for p in run.metrics.get(key, ()))  # fmt: skip

    def _new_params(self, run: Run, pairs: list[tuple[str, str]]) -> dict[str, str]:
        new: dict[str, str] = {}
        for key, value in pairs:
            old = run.params.get(key, new.get(key))
            if old is not None and old != value:
                raise invalid(
                    f"Changing param values is not allowed. Param with key='{key}' was already "
                    f"logged with value='{old}' for run ID='{run.id}'. Attempted logging new "
                    f"value '{value}'."
                )
            if old is None:
                new[key] = value
        return new

    def delete_tag(self, run_id: str, key: str) -> None:
        run = self.run(run_id)
        with self.lock:
            if key not in run.tags:
                raise missing(f"No tag with name: {key} in run with id {run_id}")
            del run.tags[key]
            event: dict[str, Any] = {"type": "tag_deleted", "key": key}
            if run.id != self.run_id:
                event["run"] = run.id
            self.events.write(event)

    def log_inputs(self, run_id: str, datasets: list[dict[str, Any]]) -> None:
        if len(datasets) > MAX_DATASETS:
            raise invalid(f"A request can log at most {MAX_DATASETS} datasets")
        run = self.run(run_id)
        events = []
        for entry in datasets:
            dataset = entry.get("dataset") or {}
            tags = {str(t.get("key")): _text(t.get("value")) for t in entry.get("tags") or []}
            found = {
                "type": "dataset",
                "name": str(dataset.get("name", "")),
                "digest": str(dataset.get("digest", "")),
                "source_type": str(dataset.get("source_type", "")),
                "source": str(dataset.get("source", ""))[:65535],
                "context": tags.get("mlflow.data.context", ""),
            }
            if run.id != self.run_id:
                found["run"] = run.id
            run.datasets.append({**entry})
            events.append(found)
        with self.lock:
            if events:
                self.events.write(*events)

    def history(self, run_id: str, key: str) -> Iterator[dict[str, Any]]:
        """The metric's points logged so far, read lazily (a history can hold a million)."""
        run = self.run(run_id)
        with self.lock:
            series = run.metrics.get(key, Series())
            count = len(series)  # append-only: later points are left out, none move
        return ({"key": key, "value": _json_number(v), "timestamp": ts, "step": step}
                for v, ts, step in itertools.islice(series, count))  # fmt: skip

    # -- logged models (MLflow 3) ---------------------------------------------------------
    def create_model(self, body: dict[str, Any]) -> Model:
        exp_id = str(body.get("experiment_id") or DEFAULT_EXPERIMENT)
        self.experiment(exp_id)
        name = str(body.get("name") or "model")
        with self.lock:
            model_id = "m-" + os.urandom(16).hex()
            model = Model(model_id, exp_id, name, self._model_path(name))
            model.source_run_id = body.get("source_run_id") or None
            model.model_type = str(body.get("model_type") or "")
            model.params.update(_pairs(body.get("params")))
            model.tags.update(_pairs(body.get("tags")))
            self.models[model_id] = model
            self.announce_model(model)
            return model

    def _model_path(self, name: str) -> str:
        """models/<name>, the same path on every rerun; a second model of that name gets -2."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "model"
        taken = {m.path for m in self.models.values()}
        path, n = f"models/{safe}", 1
        while path in taken:
            n += 1
            path = f"models/{safe}-{n}"
        return path

    def model(self, model_id: str) -> Model:
        found = self.models.get(str(model_id))
        if found is None:
            raise missing(f"Logged model with ID '{model_id}' not found.")
        return found

    def announce_model(self, model: Model) -> None:
        model.updated = now_ms()
        self.events.write(
            {
                "type": "model",
                "model_id": model.id,
                "name": model.name,
                "path": f"logged/{model.path}",
                "status": model.status,
                "source_run_id": model.source_run_id,
                "params": model.params,
                "tags": model.tags,
                "model_type": model.model_type,
            }
        )

    def warn(self, message: str) -> None:
        """Once per message: a route this endpoint does not serve, a filter it ignored."""
        with self.lock:
            if message in self.warned:
                return
            self.warned.add(message)
        self.events.write({"type": "mlflow_warning", "message": message})


def _check_batch_size(metrics: list[Any], params: list[Any], tags: list[Any]) -> None:
    if len(metrics) > MAX_BATCH_METRICS:
        raise invalid(
            f"A batch logging request can contain at most {MAX_BATCH_METRICS} metrics. "
            f"Got {len(metrics)} metrics. Please split up metrics across multiple requests "
            "and try again."
        )
    for what, items in (("params", params), ("tags", tags)):
        if len(items) > MAX_BATCH_PARAMS_TAGS:
            raise invalid(
                f"A batch logging request can contain at most {MAX_BATCH_PARAMS_TAGS} {what}. "
                f"Got {len(items)} {what}. Please split up {what} across multiple requests "
                "and try again."
            )
    total = len(metrics) + len(params) + len(tags)
    if total > MAX_BATCH_ENTITIES:
        raise invalid(
            f"A batch logging request can contain at most {MAX_BATCH_ENTITIES} total metrics, "
            f"params, and tags. Got {total} total. Please split up across multiple requests."
        )


def _check_key(key: str, what: str) -> None:
    if not key or len(key) > MAX_KEY or any(ord(c) < 32 for c in key):
        raise invalid(f"Invalid {what} name: '{key[:60]}'. Names must be 1-{MAX_KEY} printable "
                      "characters.")  # fmt: skip


def _check_param(key: str, value: str) -> None:
    _check_pair(key, value, "parameter", "Param", MAX_PARAM_VALUE)


def _check_tag(key: str, value: str) -> None:
    _check_pair(key, value, "tag", "Tag", MAX_TAG_VALUE)


def _check_pair(key: str, value: str, what: str, label: str, limit: int) -> None:
    """A key and its value within MLflow's limits, refused with MLflow's messages."""
    _check_key(key, what)
    if len(value) > limit:
        raise invalid(
            f"{label} value '{value[:50]}...' had length {len(value)}, which exceeded length "
            f"limit of {limit}"
        )


def _metric(raw: dict[str, Any]) -> tuple[str, float, int, int]:
    key = str(raw.get("key", ""))
    _check_key(key, "metric")
    try:
        value = float(raw["value"])
        ts = int(raw.get("timestamp") or now_ms())
        step = int(raw.get("step") or 0)
    except (KeyError, TypeError, ValueError) as exc:
        raise invalid(f"Got invalid value for metric '{key}': {exc}") from None
    if not (INT64_MIN <= ts <= INT64_MAX and INT64_MIN <= step <= INT64_MAX):
        raise invalid(f"Got invalid timestamp or step for metric '{key}': not a 64-bit integer")
    return key, value, ts, step


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _pairs(items: Any) -> dict[str, str]:
    return {str(i.get("key")): _text(i.get("value")) for i in items or []}


def _json_number(value: float) -> float | str:
    """NaN and ±inf as MLflow's server writes them in JSON."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value
