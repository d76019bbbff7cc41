"""`runs push ID... --to URL`: runs copied into a real `mlflow server`, read back with
MLflow's own client; pushing twice creates nothing new; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.tracking.store import open_store
from support.cli import cli, last_record, ok
from support.clusters import free_ports
from support.mlflow_server import MlflowServer, read_back
from support.projects import make_project

DATASET = {"name": "wine", "digest": "a1b2c3d4", "source_type": "local",
           "source": '{"uri": "/data/wine.csv"}', "context": "training"}  # fmt: skip
POINTS = 2500  # over log-batch's 1000 metrics per call
PARAMS = 150  # over its 100 params per call

LOGGING_PROJECT = {
    "MLproject": """\
        name: logging
        entry_points:
          main:
            parameters:
              alpha: {type: float, default: 0.5}
            command: "python train.py {alpha}"
        """,
    "train.py": f"""\
        import os, sys, time
        import run_project_client as rp
        for i in range({PARAMS}):
            rp.log_param(f"p{{i:03d}}", i)
        rp.set_tag("stage", "tuning")
        for step in range({POINTS}):
            rp.log_metric("loss", 1.0 / (step + 1), step=step)
        rp.log_metric("nan_metric", float("nan"))
        rp.log_metric("inf_metric", float("inf"))
        os.makedirs("model", exist_ok=True)
        with open("model/MLmodel", "w") as out:
            out.write("flavors: {{}}\\n")
        rp.log_artifact("model/MLmodel", name="model/MLmodel")
        print("alpha", sys.argv[1])
        """,
}


def _logged_run(tmp_path: Path) -> dict[str, object]:
    project = make_project(tmp_path / "proj", LOGGING_PROJECT)
    ok(cli(str(project), "-P", "alpha=0.25", "-q"))
    return last_record()


def _with_dataset(run_id: str, store: Path) -> None:
    """The record section the MLflow tracking endpoint writes for mlflow.log_input, set
    here directly in the store (the run above logged through run_project_client)."""
    opened = open_store(str(store))
    opened.update_run(run_id, {"mlflow": {"datasets": [DATASET]}})
    opened.close()


@pytest.mark.slow
def test_push_copies_params_every_metric_point_tags_and_files_and_twice_creates_nothing(
    tmp_path: Path, mlflow_tracking: MlflowServer
) -> None:
    record = _logged_run(tmp_path)
    run_id = str(record["id"])
    _with_dataset(run_id, tmp_path / "store")
    pushed = ok(cli("runs", "push", run_id[:8], "--to", mlflow_tracking.url,
                    "--experiment", "push-full", env=mlflow_tracking.env, timeout=600))  # fmt: skip
    assert "created" in pushed.out

    (run,) = read_back(mlflow_tracking, "push-full")["runs"]
    assert run["status"] == "FINISHED"
    assert run["tags"]["run_project.run_id"] == run_id
    assert run["tags"]["stage"] == "tuning"
    assert run["tags"]["mlflow.runName"] == record["run_name"]
    assert run["params"]["alpha"] == "0.25"
    assert {f"p{i:03d}" for i in range(PARAMS)} <= set(run["params"])
    loss = run["history"]["loss"]
    assert sorted(p[0] for p in loss) == list(range(POINTS))
    assert {p[0]: p[1] for p in loss}[9] == pytest.approx(0.1)
    assert all(p[2] > 1_600_000_000_000 for p in loss)  # the logged time, in ms
    assert json.dumps(run["history"]["nan_metric"][0][1]) == "NaN"
    assert run["history"]["inf_metric"][0][1] > 1e300
    assert "model/MLmodel" in run["files"]
    assert {"run_project/record.json", "run_project/logs/stdout.log"} <= set(run["files"])
    assert run["datasets"] == [["wine", "a1b2c3d4", {"mlflow.data.context": "training"}]]

    again = ok(cli("runs", "push", run_id, "--to", mlflow_tracking.url,
                   "--experiment", "push-full", env=mlflow_tracking.env, timeout=600))  # fmt: skip
    assert "already there" in again.out, again.text
    (same,) = read_back(mlflow_tracking, "push-full")["runs"]
    assert same["run_id"] == run["run_id"]
    assert len(same["history"]["loss"]) == POINTS
    assert len(same["datasets"]) == 1


@pytest.mark.slow
def test_a_wrong_password_is_a_clear_error(tmp_path: Path, mlflow_tracking: MlflowServer) -> None:
    record = _logged_run(tmp_path)
    env = dict(mlflow_tracking.env, MLFLOW_TRACKING_PASSWORD="wrong")
    result = cli(
        "runs", "push", str(record["id"]), "--to", mlflow_tracking.url, env=env, timeout=600
    )
    assert result.code == 125, result.text
    assert "refused the credentials" in result.err
    assert "MLFLOW_TRACKING_USERNAME" in result.err
    assert "Traceback" not in result.text


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    record = _logged_run(tmp_path)
    (port,) = free_ports(1)  # nothing listens there
    result = cli("runs", "push", str(record["id"]), "--to", f"http://127.0.0.1:{port}")
    assert result.code == 125, result.text
    assert f"cannot reach the MLflow tracking server at http://127.0.0.1:{port}" in result.err
    assert "Traceback" not in result.text


def test_an_unknown_run_id_pushes_nothing(tmp_path: Path) -> None:
    record = _logged_run(tmp_path)
    (port,) = free_ports(1)
    result = cli("runs", "push", str(record["id"]), "abcdef12", "--to", f"http://127.0.0.1:{port}")
    assert result.code == 125, result.text
    assert "no run abcdef12" in result.err  # checked before the server is contacted


def test_a_url_that_is_not_http_is_refused(tmp_path: Path) -> None:
    record = _logged_run(tmp_path)
    result = cli("runs", "push", str(record["id"]), "--to", "file:///tmp/mlruns")
    assert result.code == 2, result.text
    assert "is not an http(s) URL" in result.err
