"""MLflow's tracking REST routes (`/api/2.0/mlflow/...`, and the `/api/3.0` spellings MLflow 3
clients use) as functions of the request's JSON (or query) onto `State`."""

from __future__ import annotations

from .errors import ApiError, invalid
from .state import State, _json_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from .state import Model, Run

    Handler = Callable[[State, dict[str, Any]], dict[str, Any]]


def run_json(state: State, run: Run) -> dict[str, Any]:
    info = {
        "run_id": run.id, "run_uuid": run.id, "run_name": run.name,
        "experiment_id": run.experiment_id, "user_id": "", "status": run.status,
        "start_time": run.start_time, "artifact_uri": artifact_uri(state, run),
        "lifecycle_stage": run.lifecycle,
    }  # fmt: skip
    if run.end_time is not None:
        info["end_time"] = run.end_time
    metrics = [
        {"key": k, "value": _json_number(v[-1][0]), "timestamp": v[-1][1], "step": v[-1][2]}
        for k, v in run.metrics.items()
    ]
    return {
        "info": info,
        "data": {
            "metrics": metrics,
            "params": [{"key": k, "value": v} for k, v in run.params.items()],
            "tags": [{"key": k, "value": v} for k, v in run.tags.items()],
        },
        "inputs": {"dataset_inputs": list(run.datasets)},
    }


def artifact_uri(state: State, run: Run) -> str:
    return f"mlflow-artifacts:/{run.experiment_id}/{run.id}/artifacts"


def model_json(model: Model) -> dict[str, Any]:
    info = {
        "model_id": model.id, "experiment_id": model.experiment_id, "name": model.name,
        "creation_timestamp_ms": model.created, "last_updated_timestamp_ms": model.updated,
        "artifact_uri": f"mlflow-artifacts:/{model.experiment_id}/models/{model.id}/artifacts",
        "status": model.status, "model_type": model.model_type,
        "tags": [{"key": k, "value": v} for k, v in model.tags.items()],
    }  # fmt: skip
    if model.source_run_id:
        info["source_run_id"] = model.source_run_id
    params = [{"key": k, "value": v} for k, v in model.params.items()]
    return {"info": info, "data": {"params": params, "metrics": []}}


def _run_id(body: dict[str, Any]) -> str:
    run_id = body.get("run_id") or body.get("run_uuid")
    if not run_id:
        raise invalid("Missing value for required parameter 'run_id'.")
    return str(run_id)


def get_experiment(state: State, body: dict[str, Any]) -> dict[str, Any]:
    return {"experiment": state.experiment(str(body.get("experiment_id", "")))}


def get_experiment_by_name(state: State, body: dict[str, Any]) -> dict[str, Any]:
    return {"experiment": state.experiment_by_name(str(body.get("experiment_name", "")))}


def create_experiment(state: State, body: dict[str, Any]) -> dict[str, Any]:
    return {"experiment_id": state.create_experiment(str(body.get("name", "")))}


def search_experiments(state: State, body: dict[str, Any]) -> dict[str, Any]:
    if body.get("filter"):
        state.warn("experiments/search: the filter is ignored; every experiment is returned")
    return {"experiments": list(state.experiments.values())}


def create_run(state: State, body: dict[str, Any]) -> dict[str, Any]:
    tags = {str(t.get("key")): str(t.get("value", "")) for t in body.get("tags") or []}
    run = state.create_run(
        str(body.get("experiment_id") or "0"),
        str(body.get("run_name") or tags.get("mlflow.runName") or ""),
        tags,
        body.get("start_time"),
    )
    return {"run": run_json(state, run)}


def update_run(state: State, body: dict[str, Any]) -> dict[str, Any]:
    run = state.update_run(
        _run_id(body), str(body.get("status") or ""), body.get("end_time"),
        str(body.get("run_name") or ""),
    )  # fmt: skip
    return {"run_info": run_json(state, run)["info"]}


def get_run(state: State, body: dict[str, Any]) -> dict[str, Any]:
    return {"run": run_json(state, state.run(_run_id(body)))}


def search_runs(state: State, body: dict[str, Any]) -> dict[str, Any]:
    if body.get("filter"):
        state.warn("runs/search: the filter is ignored; every run of the experiments is returned")
    wanted = {str(e) for e in body.get("experiment_ids") or []}
    runs = [r for r in state.runs.values() if not wanted or r.experiment_id in wanted]
    return {"runs": [run_json(state, r) for r in runs]}


def log_metric(state: State, body: dict[str, Any]) -> dict[str, Any]:
    state.log_batch(_run_id(body), [body], [], [])
    return {}


def log_param(state: State, body: dict[str, Any]) -> dict[str, Any]:
    state.log_batch(_run_id(body), [], [body], [])
    return {}


def set_tag(state: State, body: dict[str, Any]) -> dict[str, Any]:
    state.log_batch(_run_id(body), [], [], [body])
    return {}


def delete_tag(state: State, body: dict[str, Any]) -> dict[str, Any]:
    state.delete_tag(_run_id(body), str(body.get("key", "")))
    return {}


def log_batch(state: State, body: dict[str, Any]) -> dict[str, Any]:
    state.log_batch(
        _run_id(body), body.get("metrics") or [], body.get("params") or [], body.get("tags") or []
    )
    return {}


def log_inputs(state: State, body: dict[str, Any]) -> dict[str, Any]:
    state.log_inputs(_run_id(body), body.get("datasets") or [])
    return {}


def log_outputs(state: State, body: dict[str, Any]) -> dict[str, Any]:
    state.run(_run_id(body))
    return {}


def log_model_v2(state: State, body: dict[str, Any]) -> dict[str, Any]:
    """MLflow 2's `log_model` record: the model's files came as artifacts already."""
    import json

    run = state.run(_run_id(body))
    try:
        model = json.loads(str(body.get("model_json") or "{}"))
    except ValueError:
        raise invalid("model_json is not JSON") from None
    path = str(model.get("artifact_path") or "model")
    state.events.write(
        {
            "type": "model",
            "model_id": str(model.get("model_uuid") or path),
            "name": path,
            "path": f"logged/{path}",
            "status": "LOGGED_MODEL_READY",
            "source_run_id": run.id,
            "params": {},
            "tags": {},
            "flavors": sorted(model.get("flavors") or {}),
        }
    )
    return {}


def metric_history(state: State, body: dict[str, Any]) -> dict[str, Any]:
    return {"metrics": list(history_points(state, body))}


def history_points(state: State, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """get-history's points, lazily: the server sends them in chunks."""
    return state.history(_run_id(body), str(body.get("metric_key", "")))


def create_model(state: State, body: dict[str, Any]) -> dict[str, Any]:
    return {"model": model_json(state.create_model(body))}


def search_models(state: State, body: dict[str, Any]) -> dict[str, Any]:
    import re

    text = str(body.get("filter") or "")
    by_name = re.fullmatch(r"\s*name\s*=\s*'([^']*)'\s*", text)
    if text and by_name is None:
        state.warn(f"logged-models/search: the filter {text[:80]!r} is ignored")
    wanted = {str(e) for e in body.get("experiment_ids") or []}
    found = [m for m in state.models.values() if not wanted or m.experiment_id in wanted]
    if by_name is not None:
        found = [m for m in found if m.name == by_name.group(1)]
    return {"models": [model_json(m) for m in found]}


def model_route(state: State, body: dict[str, Any], method: str, rest: str) -> dict[str, Any]:
    """/logged-models/<id>[/tags[/<key>]|/params]: get, finalize, tags, params."""
    model_id, _, tail = rest.partition("/")
    model = state.model(model_id)
    with state.lock:
        if method == "GET" and not tail:
            return {"model": model_json(model)}
        if method == "PATCH" and not tail:
            model.status = str(body.get("status") or model.status)
        elif method == "PATCH" and tail == "tags":
            model.tags.update({str(t.get("key")): str(t.get("value", "")) for t in
                               body.get("tags") or []})  # fmt: skip
        elif method == "DELETE" and tail.startswith("tags/"):
            model.tags.pop(tail[len("tags/") :], None)
        elif method == "POST" and tail == "params":
            model.params.update({str(p.get("key")): str(p.get("value", "")) for p in
                                 body.get("params") or []})  # fmt: skip
        elif method == "DELETE" and not tail:
            model.status = "DELETED"
        else:
            raise ApiError("ENDPOINT_NOT_FOUND", "")
        state.announce_model(model)
    return {"model": model_json(model)}


def server_info(state: State, body: dict[str, Any]) -> dict[str, Any]:
    """What MLflow 3 clients ask first: artifacts are served here, nothing multipart."""
    return {"store_type": "run-project", "artifact_serving_enabled": True,
            "multipart_uploads_enabled": False, "multipart_downloads_enabled": False,
            "workspaces_enabled": False}  # fmt: skip


ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "experiments/get"): get_experiment,
    ("GET", "experiments/get-by-name"): get_experiment_by_name,
    ("POST", "experiments/create"): create_experiment,
    ("POST", "experiments/search"): search_experiments,
    ("GET", "experiments/search"): search_experiments,
    ("POST", "runs/create"): create_run,
    ("POST", "runs/update"): update_run,
    ("GET", "runs/get"): get_run,
    ("POST", "runs/search"): search_runs,
    ("POST", "runs/log-metric"): log_metric,
    ("POST", "runs/log-parameter"): log_param,
    ("POST", "runs/set-tag"): set_tag,
    ("POST", "runs/delete-tag"): delete_tag,
    ("POST", "runs/log-batch"): log_batch,
    ("POST", "runs/log-inputs"): log_inputs,
    ("POST", "runs/outputs"): log_outputs,
    ("POST", "runs/log-model"): log_model_v2,
    ("GET", "metrics/get-history"): metric_history,
    ("POST", "logged-models"): create_model,
    ("POST", "logged-models/search"): search_models,
    ("GET", "server-info"): server_info,
}
