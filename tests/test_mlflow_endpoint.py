"""The run's MLflow endpoint spoken to directly over HTTP: the token, MLflow's limits and
errors, NaN/inf, artifact paths that try to leave the run, and 8 threads logging at once
(docs/tracking.md, "MLflow projects"; docs/security.md#mlflow-endpoint). Real clients are in
tests/test_mlflow_clients.py."""

from __future__ import annotations

import json
import math
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.tracking.events import EventReader
from runner.tracking.mlflow_api.server import Endpoint
from runner.tracking.mlflow_api.state import Events, State

RUN_ID = "ab" * 16
TOKEN = "t0ken"


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[Endpoint]:
    run_dir = tmp_path / "store" / "artifacts" / RUN_ID
    run_dir.mkdir(parents=True)
    state = State(Events(str(run_dir / "events.jsonl")), RUN_ID, "exp", "main-1")
    served = Endpoint(state, TOKEN, str(run_dir / "logged"))
    served.start()
    yield served
    served.stop()


def call(
    endpoint: Endpoint,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = TOKEN,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(endpoint.uri + path, data=data, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        payload, status = exc.read(), exc.code
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload


def events(endpoint: Endpoint) -> list[dict[str, Any]]:
    path = Path(endpoint.logged).parent / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def ingested(endpoint: Endpoint) -> EventReader:
    run_dir = Path(endpoint.logged).parent
    reader = EventReader(run_dir / "events.jsonl", run_dir)
    reader.poll()
    return reader


def test_a_request_without_the_runs_token_gets_401_and_changes_nothing(endpoint: Endpoint) -> None:
    body = {"run_id": RUN_ID, "key": "a", "value": "1"}
    for token in (None, "wrong"):
        status, error = call(endpoint, "POST", "/api/2.0/mlflow/runs/log-parameter", body, token)
        assert status == 401 and error["error_code"] == "UNAUTHENTICATED"
    status, _ = call(
        endpoint, "PUT", "/api/2.0/mlflow-artifacts/artifacts/0/x", raw=b"x", token=None
    )
    assert status == 401
    assert not os.path.exists(Path(endpoint.logged).parent / "events.jsonl") or not events(endpoint)


def test_params_metrics_and_tags_become_events_the_record_reads(endpoint: Endpoint) -> None:
    batch = {
        "run_id": RUN_ID,
        "metrics": [{"key": "rmse", "value": v, "timestamp": 1700000000000 + i, "step": i}
                    for i, v in enumerate([0.5, "NaN", "Infinity", "-Infinity", 0.25])],
        "params": [{"key": "alpha", "value": "0.5"}],
        "tags": [{"key": "stage", "value": "x"}],
    }  # fmt: skip
    assert call(endpoint, "POST", "/api/2.0/mlflow/runs/log-batch", batch)[0] == 200
    status, history = call(
        endpoint, "GET", f"/api/2.0/mlflow/metrics/get-history?run_id={RUN_ID}&metric_key=rmse"
    )
    assert status == 200
    assert [p["value"] for p in history["metrics"]] == [0.5, "NaN", "Infinity", "-Infinity", 0.25]
    summary = ingested(endpoint).summary()
    assert summary["logged_params"] == {"alpha": "0.5"}
    assert summary["tags"] == {"stage": "x"}
    assert summary["metrics"]["rmse"] == {"last": 0.25, "step": 4, "min": 0.25, "max": 0.5,
                                          "count": 5}  # fmt: skip
    points = ingested(endpoint).state.pending_points
    assert [p[2] for p in points] == [0, 1, 2, 3, 4]
    assert points[0][3] == 1700000000.0  # MLflow's milliseconds, as seconds
    assert points[1][1] is None and points[2][1] is not None and math.isinf(points[2][1])


def test_a_conflicting_param_is_refused_as_mlflow_refuses_it(endpoint: Endpoint) -> None:
    path = "/api/2.0/mlflow/runs/log-parameter"
    assert call(endpoint, "POST", path, {"run_id": RUN_ID, "key": "a", "value": "1"})[0] == 200
    assert call(endpoint, "POST", path, {"run_id": RUN_ID, "key": "a", "value": "1"})[0] == 200
    status, error = call(endpoint, "POST", path, {"run_id": RUN_ID, "key": "a", "value": "2"})
    assert status == 400 and error["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "Changing param values is not allowed" in error["message"]
    assert ingested(endpoint).summary()["logged_params"] == {"a": "1"}


def test_huge_batches_and_1mb_tags_get_mlflows_errors_and_log_nothing(endpoint: Endpoint) -> None:
    metrics = [{"key": "m", "value": 1.0, "timestamp": 1, "step": i} for i in range(1001)]
    status, error = call(endpoint, "POST", "/api/2.0/mlflow/runs/log-batch",
                         {"run_id": RUN_ID, "metrics": metrics})  # fmt: skip
    assert status == 400 and "at most 1000 metrics" in error["message"]
    params = [{"key": f"p{i}", "value": "v"} for i in range(101)]
    status, error = call(endpoint, "POST", "/api/2.0/mlflow/runs/log-batch",
                         {"run_id": RUN_ID, "params": params})  # fmt: skip
    assert status == 400 and "at most 100 params" in error["message"]
    big = {"run_id": RUN_ID, "key": "big", "value": "x" * (1 << 20)}
    status, error = call(endpoint, "POST", "/api/2.0/mlflow/runs/set-tag", big)
    assert status == 400 and error["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "exceeded length limit of 8000" in error["message"]
    huge_step = [{"key": "m", "value": 1.0, "timestamp": 1, "step": 0},
                 {"key": "m", "value": 2.0, "timestamp": 1, "step": 2**64}]  # fmt: skip
    status, error = call(endpoint, "POST", "/api/2.0/mlflow/runs/log-batch",
                         {"run_id": RUN_ID, "metrics": huge_step})  # fmt: skip
    assert status == 400 and "not a 64-bit integer" in error["message"]
    history = "/api/2.0/mlflow/metrics/get-history?run_id=" + RUN_ID + "&metric_key=m"
    assert call(endpoint, "GET", history)[1].get("metrics", []) == []
    ok_tag = {"run_id": RUN_ID, "key": "long", "value": "y" * 8000}
    assert call(endpoint, "POST", "/api/2.0/mlflow/runs/set-tag", ok_tag)[0] == 200
    state = ingested(endpoint)
    assert state.summary()["tags"] == {"long": "y" * 8000} and not state.state.bad_lines
    assert not state.state.pending_points


@pytest.mark.parametrize(
    "path",
    [f"0/{RUN_ID}/artifacts/../../../../canary", f"0/{RUN_ID}/artifacts/%2e%2e/%2e%2e/canary",
     "//etc/canary", f"0/{RUN_ID}/artifacts/a/./b", f"0/{RUN_ID}/artifacts/a\\..\\b",
     "0/otherrun/artifacts/canary"],
)  # fmt: skip
def test_artifact_paths_that_leave_the_run_are_refused(
    endpoint: Endpoint, tmp_path: Path, path: str
) -> None:
    status, error = call(endpoint, "PUT", f"/api/2.0/mlflow-artifacts/artifacts/{path}", raw=b"x")
    assert status == 400 and error["error_code"] == "INVALID_PARAMETER_VALUE", error
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "events.jsonl"]
    assert written == []


def test_artifacts_upload_list_and_download_under_logged(endpoint: Endpoint) -> None:
    base = f"/api/2.0/mlflow-artifacts/artifacts/0/{RUN_ID}/artifacts"
    assert call(endpoint, "PUT", f"{base}/plots/loss%20curve.txt", raw=b"points")[0] == 200
    assert (Path(endpoint.logged) / "plots" / "loss curve.txt").read_bytes() == b"points"
    status, listed = call(
        endpoint, "GET", f"/api/2.0/mlflow-artifacts/artifacts?path=0/{RUN_ID}/artifacts/plots"
    )
    assert status == 200 and listed["files"] == [
        {"path": "loss curve.txt", "is_dir": False, "file_size": 6}
    ]
    assert call(endpoint, "GET", f"{base}/plots/loss%20curve.txt") == (200, b"points")
    assert ingested(endpoint).state.stored == [
        (str(Path(endpoint.logged) / "plots" / "loss curve.txt"), "plots/loss curve.txt")
    ]


def test_a_link_planted_under_logged_is_not_followed(endpoint: Endpoint, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, Path(endpoint.logged) / "plots")
    base = f"/api/2.0/mlflow-artifacts/artifacts/0/{RUN_ID}/artifacts"
    status, _ = call(endpoint, "PUT", f"{base}/plots/canary", raw=b"x")
    assert status == 400
    assert not (outside / "canary").exists()


def test_a_route_not_served_gets_mlflows_error_and_a_warning_in_the_record(
    endpoint: Endpoint,
) -> None:
    status, error = call(
        endpoint, "POST", "/api/2.0/mlflow/registered-models/create", {"name": "m"}
    )
    assert status == 404 and error["error_code"] == "ENDPOINT_NOT_FOUND"
    assert "does not implement POST /api/2.0/mlflow/registered-models/create" in error["message"]
    section = ingested(endpoint).summary()["mlflow"]
    assert section["warnings"] == [error["message"]]


def test_eight_threads_hammering_the_endpoint_lose_no_point(endpoint: Endpoint) -> None:
    def worker(n: int) -> None:
        for i in range(50):
            metrics = [{"key": f"t{n}", "value": float(j), "timestamp": 1, "step": i * 10 + j}
                       for j in range(10)]  # fmt: skip
            status, _ = call(endpoint, "POST", "/api/2.0/mlflow/runs/log-batch",
                             {"run_id": RUN_ID, "metrics": metrics})  # fmt: skip
            assert status == 200

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    state = ingested(endpoint).state
    assert state.bad_lines == 0
    assert len(state.pending_points) == 8 * 50 * 10
    assert {k: v["count"] for k, v in state.metrics.items()} == {f"t{n}": 500 for n in range(8)}


def test_nested_runs_models_and_datasets_go_to_the_mlflow_section(endpoint: Endpoint) -> None:
    status, created = call(endpoint, "POST", "/api/2.0/mlflow/runs/create", {
        "experiment_id": "0", "run_name": "child",
        "tags": [{"key": "mlflow.parentRunId", "value": RUN_ID}]})  # fmt: skip
    assert status == 200
    child = created["run"]["info"]["run_id"]
    call(endpoint, "POST", "/api/2.0/mlflow/runs/log-metric",
         {"run_id": child, "key": "inner", "value": 2.0, "timestamp": 1, "step": 0})  # fmt: skip
    call(endpoint, "POST", "/api/2.0/mlflow/runs/log-inputs", {"run_id": RUN_ID, "datasets": [
        {"dataset": {"name": "wine", "digest": "abcd1234", "source_type": "local", "source": "{}"},
         "tags": [{"key": "mlflow.data.context", "value": "train"}]}]})  # fmt: skip
    status, model = call(endpoint, "POST", "/api/2.0/mlflow/logged-models",
                         {"experiment_id": "0", "name": "enet", "source_run_id": RUN_ID})  # fmt: skip
    model_id = model["model"]["info"]["model_id"]
    uri = model["model"]["info"]["artifact_uri"]
    assert uri == f"mlflow-artifacts:/0/models/{model_id}/artifacts"
    put = f"/api/2.0/mlflow-artifacts/artifacts/0/models/{model_id}/artifacts/MLmodel"
    assert call(endpoint, "PUT", put, raw=b"flavors: {}")[0] == 200
    call(endpoint, "PATCH", f"/api/2.0/mlflow/logged-models/{model_id}",
         {"model_id": model_id, "status": "LOGGED_MODEL_READY"})  # fmt: skip
    section = ingested(endpoint).summary()
    assert section["metrics"] == {}  # the nested run's metric is not the run's own
    found = section["mlflow"]
    assert found["runs"][0]["id"] == child and found["runs"][0]["parent"] == RUN_ID
    assert found["runs"][0]["metrics"]["inner"]["last"] == 2.0
    assert found["datasets"] == [{"name": "wine", "digest": "abcd1234", "source_type": "local",
                                  "source": "{}", "context": "train"}]  # fmt: skip
    assert found["models"][0]["path"] == "logged/models/enet"
    assert found["models"][0]["status"] == "LOGGED_MODEL_READY"
    assert (Path(endpoint.logged) / "models" / "enet" / "MLmodel").read_bytes() == b"flavors: {}"


def test_config_and_cache_files_are_noise_not_inputs(tmp_path: Path) -> None:
    from support.cli import cli, last_record, ok
    from support.projects import make_project

    config, cache = tmp_path / "config", tmp_path / "xdg-cache"
    (config / "mlflow").mkdir(parents=True)
    (config / "mlflow" / "telemetry.json").write_text("{}")
    code = (
        "import os\n"
        "open(os.path.join(os.environ['XDG_CONFIG_HOME'], 'mlflow', 'telemetry.json')).read()\n"
        "d = os.path.join(os.environ['XDG_CACHE_HOME'], 'matplotlib')\n"
        "os.makedirs(d, exist_ok=True)\n"
        "open(os.path.join(d, 'fontlist-v390.json'), 'w').write('[]')\n"
        "open('data.csv').read()\n"
    )
    project = make_project(tmp_path / "p", {
        "MLproject": "name: n\nentry_points:\n  main:\n    command: python run.py\n",
        "run.py": code, "data.csv": "a\n1\n"})  # fmt: skip
    ok(cli(str(project), "-q", env={"XDG_CACHE_HOME": str(cache)}))
    record = last_record()
    paths = [i["path"] for i in record["inputs"]] + [o["path"] for o in record["outputs"]]
    assert paths == [str(project / "data.csv")]
    assert record["capture"]["noise"] == {"files": 2}


def test_a_stored_event_naming_a_path_out_of_logged_is_refused(tmp_path: Path) -> None:
    """Only the endpoint writes `stored` events, but any process of the run can append to the
    events file: a name that climbs out of logged/ is a bad line, never an artifact."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lines = [
        {"type": "stored", "name": "logged/../../secret", "size": 1},
        {"type": "stored", "name": "logged//etc/passwd", "size": 1},
        {"type": "stored", "name": "logged/ok/model.pkl", "size": 1},
    ]
    (run_dir / "events.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    reader = EventReader(run_dir / "events.jsonl", run_dir)
    reader.poll()
    assert reader.state.bad_lines == 2
    assert reader.state.stored == [(str(run_dir / "logged/ok/model.pkl"), "ok/model.pkl")]


SPEAKER = """\
import json, os, sys, urllib.request
print("parent", os.getppid())
body = json.dumps({"run_id": os.environ["MLFLOW_RUN_ID"], "key": "loss", "value": 0.5,
                   "timestamp": 1, "step": 7}).encode()
request = urllib.request.Request(
    os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/runs/log-metric", data=body,
    headers={"Authorization": "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"]}, method="POST")
urllib.request.urlopen(request, timeout=30).read()
sys.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize("code", [0, 3])
def test_a_local_run_is_served_by_the_runner_and_ends_with_the_commands_code(
    tmp_path: Path, code: int
) -> None:
    """No wrapper process between run-project and the command: the runner serves the endpoint
    itself, and the command's own exit code is the run's."""
    from support.cli import cli, last_record
    from support.projects import make_project

    project = make_project(tmp_path / "p", {
        "MLproject": "name: n\nentry_points:\n  main:\n    command: python speak.py "
                     f"{code}\n", "speak.py": SPEAKER})  # fmt: skip
    result = cli(str(project), "-q")
    assert result.code == code, result.text
    record = last_record()
    assert f"parent {record['runner']['pid']}" in result.out
    assert record["metrics"]["loss"]["last"] == 0.5 and record["metrics"]["loss"]["step"] == 7
    assert record["mlflow"]["tracking_uri"] == "served"
    assert record["status"] == ("FINISHED" if code == 0 else "FAILED")
    assert record["launch_argv"][:2] == ["python", "speak.py"]


def test_an_endpoint_never_called_stops_at_once_and_one_called_keeps_every_event(
    tmp_path: Path,
) -> None:
    from runner.tracking.mlflow_api.wrap import Serving

    env = {"RUN_PROJECT_RUN_ID": RUN_ID, "RUN_PROJECT_EXPERIMENT": "exp"}
    idle = Serving(str(tmp_path / "idle.jsonl"), env)
    idle.stop()
    assert idle.endpoint is None and not idle.thread.is_alive()
    assert not (tmp_path / "idle.jsonl").exists()  # nothing opened, nothing written
    serving = Serving(str(tmp_path / "events.jsonl"), env)
    body = json.dumps({"run_id": RUN_ID, "key": "acc", "value": 1.0}).encode()
    request = urllib.request.Request(serving.uri + "/api/2.0/mlflow/runs/log-metric", data=body,
                                     method="POST")  # fmt: skip
    request.add_header("Authorization", f"Bearer {serving.token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    serving.stop()
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["mlflow_uri", "metric"]


def test_replies_are_not_held_back_by_nagles_algorithm(endpoint: Endpoint) -> None:
    """Headers and body are two writes: with Nagle's algorithm on, every reply to a keep-alive
    client waited for its delayed ACK (tens of ms a call), so the option is checked here."""
    import socket

    seen: list[int] = []
    handler = endpoint.server.RequestHandlerClass

    class Probe(handler):  # type: ignore[valid-type,misc]
        def setup(self) -> None:
            super().setup()
            seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    endpoint.server.RequestHandlerClass = Probe
    status, _ = call(endpoint, "GET", "/api/2.0/mlflow/experiments/get?experiment_id=0")
    assert status == 200 and seen and all(seen)


def test_a_long_history_is_sent_in_chunks_and_whole(endpoint: Endpoint) -> None:
    """25,000 points: more than one chunk of the streamed reply, NaN kept as MLflow writes it."""
    for start in range(0, 25_000, 1000):
        metrics = [{"key": "long", "value": float("nan") if i == 7 else float(i),
                    "timestamp": 1, "step": i} for i in range(start, start + 1000)]  # fmt: skip
        assert call(endpoint, "POST", "/api/2.0/mlflow/runs/log-batch",
                    {"run_id": RUN_ID, "metrics": metrics})[0] == 200  # fmt: skip
    path = f"/api/2.0/mlflow/metrics/get-history?run_id={RUN_ID}&metric_key=long"
    status, found = call(endpoint, "GET", path)
    assert status == 200 and len(found["metrics"]) == 25_000
    assert found["metrics"][7]["value"] == "NaN" and found["metrics"][-1]["step"] == 24_999
    assert call(endpoint, "GET", path.replace(RUN_ID, "f" * 32))[0] == 404
    assert call(endpoint, "GET", "/api/2.0/mlflow/experiments/get?experiment_id=0")[0] == 200


def test_points_logged_while_the_events_disk_is_full_are_answered_and_written_later(
    tiny_disk: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A full disk under the events file: the client still gets its answer (the command goes
    on), and every point reaches the file, in order, once the disk takes lines again."""
    run_dir = tiny_disk / RUN_ID
    run_dir.mkdir()
    state = State(Events(str(run_dir / "events.jsonl")), RUN_ID, "exp", "main-1")
    served = Endpoint(state, TOKEN, str(run_dir / "logged"))
    served.start()
    filler = tiny_disk / "filler"
    try:
        with open(filler, "wb", buffering=0) as out:
            while True:
                out.write(b"\0" * 65536)
    except OSError:
        pass
    try:
        for step in range(3):
            metric = {"run_id": RUN_ID, "key": "loss", "value": step, "timestamp": 1, "step": step}
            assert call(served, "POST", "/api/2.0/mlflow/runs/log-metric", metric)[0] == 200
        filler.unlink()
        metric = {"run_id": RUN_ID, "key": "loss", "value": 3, "timestamp": 1, "step": 3}
        assert call(served, "POST", "/api/2.0/mlflow/runs/log-metric", metric)[0] == 200
    finally:
        served.stop()
        state.events.close()
    lines = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in lines if e.get("type") == "metric"] == [0, 1, 2, 3]
    assert capfd.readouterr().err.count("what is logged waits in memory") == 1
