"""A run record as MLflow entities: params, tags, metric points and files to upload, within
MLflow's limits (keys of 250 characters, param values of 6000, tag values of 8000)."""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAPPING_TAG = "run_project.run_id"  # the MLflow run that holds a record: found, never duplicated
FILES_TAG = "run_project.pushed_files"  # what was uploaded, so a second push uploads nothing
STATUS = {"FINISHED": "FINISHED", "FAILED": "FAILED", "KILLED": "KILLED", "LOST": "FAILED"}

Point = dict[str, Any]  # {"key", "value", "timestamp", "step"} as log-batch takes it


def millis(iso_time: str | None) -> int | None:
    """A record's ISO 8601 time as MLflow's epoch milliseconds."""
    if not iso_time:
        return None
    return int(datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp() * 1000)


def params_of(record: dict[str, Any], warnings: list[str]) -> dict[str, str]:
    """The entry point's parameters, then what the project logged (which wins, as in MLflow a
    project's own log_param of an entry point parameter is the value it used)."""
    params = {name: _text(entry.get("value")) for name, entry in
              (record.get("params") or {}).items() if isinstance(entry, dict)}  # fmt: skip
    params.update({str(k): _text(v) for k, v in (record.get("logged_params") or {}).items()})
    return _limited(params, MAX_PARAM_VALUE, "param", warnings)


def tags_of(record: dict[str, Any], warnings: list[str]) -> dict[str, str]:
    """MLflow's system tags (what `mlflow run` sets), run-project's facts, then the run's tags."""
    source = record.get("source") or {}
    tags = {
        MAPPING_TAG: str(record["id"]),
        "mlflow.runName": str(record.get("run_name") or ""),
        "mlflow.source.type": "PROJECT",
        "mlflow.source.name": str(source.get("uri") or source.get("path") or ""),
        "mlflow.project.entryPoint": str(record.get("entry_point") or ""),
        "mlflow.project.env": str((record.get("env") or {}).get("kind") or ""),
        "mlflow.project.backend": str(record.get("backend") or ""),
        "run_project.status": str(record.get("status") or ""),
    }
    if source.get("commit"):
        tags["mlflow.source.git.commit"] = str(source["commit"])
    if source.get("dirty"):
        tags["run_project.dirty"] = "true"
    for key in ("exit_code", "reason", "rerun_of"):
        if record.get(key) is not None:
            tags[f"run_project.{key}"] = str(record[key])
    tags.update({str(k): _text(v) for k, v in (record.get("tags") or {}).items()})
    return _limited({k: v for k, v in tags.items() if v}, MAX_TAG_VALUE, "tag", warnings)


def points_of(key: str, rows: list[tuple[int, float | None, float]]) -> list[Point]:
    """Stored points (step, value, seconds) as log-batch metrics; a NaN point was stored as
    None and goes back as "NaN" (JSON has no NaN; MLflow's parser takes the string)."""
    return [{"key": key, "value": _number(value), "timestamp": int(ts * 1000), "step": step}
            for step, value, ts in rows]  # fmt: skip


def point_identity(point: Point) -> tuple[str, int, int, str]:
    """What makes a point the same point on both sides (MLflow's own uniqueness). MLflow
    stores infinity as the largest float, so both spellings are one value here."""
    value = float(point["value"])  # "NaN" and "Infinity" parse too
    if math.isinf(value) or abs(value) == sys.float_info.max:
        value = math.copysign(math.inf, value)
    return (str(point["key"]), int(point["step"]), int(point["timestamp"]), repr(value))


def files_of(record: dict[str, Any], run_dir: Path) -> dict[str, Path]:
    """Artifact path on the server → the stored file. What the project logged keeps its MLflow
    path; run-project's own outputs, logs and the record go under `run_project/`."""
    files: dict[str, Path] = {}
    for output in record.get("outputs") or []:
        name = str(output.get("name") or "")
        stored = run_dir / name
        if not name or not stored.is_file():
            continue
        logged = name.removeprefix("logged/")
        files[logged if logged != name else f"run_project/{name}"] = stored
    for stream in ("stdout", "stderr"):
        log = run_dir / "logs" / f"{stream}.log"
        if log.is_file():
            files[f"run_project/logs/{stream}.log"] = log
    return files


def record_json(record: dict[str, Any]) -> bytes:
    """The whole record, as `runs show --json` prints it (pushed as run_project/record.json)."""
    return json.dumps(record, indent=2, sort_keys=True).encode()


def _number(value: float | None) -> float | str:
    if value is None or math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return float(value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _limited(
    pairs: dict[str, str], max_value: int, what: str, warnings: list[str]
) -> dict[str, str]:
    kept: dict[str, str] = {}
    for key, value in pairs.items():
        if len(key) > MAX_KEY:
            warnings.append(
                f"{what} {key[:40]!r}... has a key over MLflow's {MAX_KEY} characters; "
                "not pushed (it is in run_project/record.json)"
            )
            continue
        if len(value) > max_value:
            warnings.append(
                f"{what} {key!r} is {len(value)} characters, over MLflow's {max_value}; "
                "pushed cut short (whole in run_project/record.json)"
            )
            value = value[:max_value]
        kept[key] = value
    return kept
