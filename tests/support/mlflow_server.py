"""A real `mlflow server` on 127.0.0.1 for the `runs push` tests, and MLflow's own client to
read back what it holds.

MLflow lives in a venv of its own (it is heavy and pins its dependencies; run-project never
imports it): $RUN_PROJECT_TEST_MLFLOW_PYTHON names its python (.ci/run makes .venv-mlflow),
else the session builds one with uv. The server runs with basic auth on, so the credential
paths are tested too; it is stopped by its process group id at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.clusters import free_ports
from support.services import require

MLFLOW = "mlflow[auth]==3.18.0"  # the version the push is tested against
USER, PASSWORD = "admin", "push-test-Pa55word"
START_SECONDS = 600  # a loaded 2-core machine takes minutes to import MLflow's server


@dataclass(frozen=True)
class MlflowServer:
    """A running server: its URL, the python that has mlflow, credentials as env vars."""

    url: str
    python: str

    @property
    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_USERNAME": USER, "MLFLOW_TRACKING_PASSWORD": PASSWORD}


def mlflow_python(work: Path, uv_cache: Path) -> str:
    """The python of a venv with mlflow: the given one, else built here with uv."""
    given = os.environ.get("RUN_PROJECT_TEST_MLFLOW_PYTHON")
    if given:
        return given
    venv = work / "mlflow-venv"
    env = dict(os.environ, UV_CACHE_DIR=str(uv_cache))
    made = subprocess.run([sys.executable, "-m", "uv", "venv", "-q", str(venv)], env=env,
                          capture_output=True, text=True)  # fmt: skip
    python = venv / "bin" / "python"
    if made.returncode == 0:
        made = subprocess.run(
            [sys.executable, "-m", "uv", "pip", "install", "-q", "--python", str(python), MLFLOW],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
    if made.returncode != 0:
        require("mlflow", f"cannot install {MLFLOW} with uv: {made.stderr[-1500:]}")
    return str(python)


@contextlib.contextmanager
def mlflow_server(python: str, root: Path) -> Iterator[MlflowServer]:
    """`mlflow server` with a SQLite store and proxied artifacts under `root`."""
    (port,) = free_ports(1)
    auth = root / "auth.ini"
    auth.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\n"
        f"admin_username = {USER}\nadmin_password = {PASSWORD}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # A password hash per request costs seconds on a loaded 2-core machine: cache it.
        "auth_cache_ttl_seconds = 3600\n"
    )
    argv = [python, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--app-name", "basic-auth",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts")]  # fmt: skip
    env = dict(os.environ, MLFLOW_AUTH_CONFIG_PATH=str(auth),
               MLFLOW_FLASK_SERVER_SECRET_KEY="run-project-push-tests")  # fmt: skip
    env.pop("PYTHONPATH", None)  # MLflow's venv, not this checkout
    log = root / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, log)
        yield MlflowServer(url, python)
    finally:
        _stop(proc)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url + "/health", timeout=5) as up:
            if up.status == 200:
                return
        time.sleep(1)
    pytest.fail(f"mlflow server did not come up:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (uvicorn and its worker), SIGKILL after 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


READ_BACK = r"""
import json, sys
from mlflow.tracking import MlflowClient

client = MlflowClient(sys.argv[1])
experiment = client.get_experiment_by_name(sys.argv[2])
out = {"runs": []}
if experiment is not None:
    for run in client.search_runs([experiment.experiment_id], max_results=1000):
        def files(path=None):
            found = []
            for item in client.list_artifacts(run.info.run_id, path):
                found += files(item.path) if item.is_dir else [item.path]
            return found
        history = {
            key: [[m.step, m.value, m.timestamp]
                  for m in client.get_metric_history(run.info.run_id, key)]
            for key in run.data.metrics
        }
        datasets = [[d.dataset.name, d.dataset.digest, {t.key: t.value for t in d.tags}]
                    for d in run.inputs.dataset_inputs]
        out["runs"].append({"run_id": run.info.run_id, "status": run.info.status,
                            "datasets": datasets,
                            "params": run.data.params, "tags": run.data.tags,
                            "history": history, "files": sorted(files())})
print(json.dumps(out))
"""


def read_back(server: MlflowServer, experiment: str) -> dict[str, Any]:
    """What MLflow's own client (in MLflow's venv) sees in the experiment: runs with their
    params, tags, every metric point [step, value, ms] and artifact paths."""
    env = dict(os.environ, **server.env)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([server.python, "-c", READ_BACK, server.url, experiment], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    found: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return found
