"""Real MLflow clients in real environments log through the run's endpoint into the record,
and leave nothing in the project (docs/tracking.md, "MLflow projects"). Tested range:
mlflow-skinny 2.22 and 3.18 (with scikit-learn), from PyPI into virtualenvs built by uv, and
the full mlflow 3.18 package (the venv the push tests use)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support.cli import cli, ok, records
from support.git_servers import commit

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("shared_uv_cache")]

TRAIN = """\
import os, sys
import mlflow

mode = sys.argv[1]
if mode == "bare":  # no start_run: the active run is the run-project run
    mlflow.log_param("alpha", 0.5)
    mlflow.log_metric("rmse", 0.75)
    mlflow.log_metric("rmse", 0.5, step=1)
    mlflow.set_tag("stage", "bare")
    os.makedirs("/tmp/unused", exist_ok=True)
    with open("notes.txt", "w") as out:
        out.write("notes")
    mlflow.log_artifact("notes.txt", "docs")
    os.remove("notes.txt")
elif mode == "deltag":  # deleted once the runner has stored it
    import sqlite3, time
    mlflow.set_tag("keep", "yes")
    mlflow.set_tag("drop", "soon")
    db = sqlite3.connect(os.path.join(os.environ["RUN_PROJECT_STORE"], "runs.db"), timeout=30)
    query = "SELECT count(*) FROM tags WHERE key = 'drop'"
    for _ in range(600):
        if db.execute(query).fetchone()[0]:
            break
        time.sleep(0.05)
    else:
        raise SystemExit("the tag never reached the store")
    mlflow.delete_tag("drop")
elif mode == "experiment":
    mlflow.set_experiment("churn")
    print("experiment", mlflow.get_experiment_by_name("churn").experiment_id)
elif mode == "sklearn":
    import numpy as np
    from sklearn.linear_model import ElasticNet

    mlflow.sklearn.autolog(log_models=False)
    X = np.arange(40, dtype=float).reshape(20, 2)
    y = X[:, 0] * 2 + 1
    with mlflow.start_run():
        model = ElasticNet(alpha=0.1).fit(X, y)
        mlflow.log_metric("rmse", 0.25, step=0)
        mlflow.log_metric("rmse", 0.125, step=1)
        os.makedirs(os.path.join(os.environ["RUN_PROJECT_OUTPUT_DIR"], "extra"), exist_ok=True)
        with mlflow.start_run(nested=True):
            mlflow.log_metric("inner", 3.0)
        mlflow.log_input(mlflow.data.from_numpy(X, name="xs"), context="training")
        mlflow.sklearn.log_model(model, name="enet", serialization_format="cloudpickle")
print("done", mlflow.get_tracking_uri())
"""

MLPROJECT = """\
name: logs
python_env: python_env.yaml
entry_points:
  main:
    parameters: {mode: {type: string, default: bare}}
    command: "python train.py {mode}"
"""


def project(root: Path, *requirements: str) -> Path:
    env = 'python: "3.11"\nbuild_dependencies: [pip]\ndependencies:\n'
    env += "".join(f"  - {r}\n" for r in requirements)
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    commit(root, {"MLproject": MLPROJECT, "train.py": TRAIN, "python_env.yaml": env})
    return root


def run(path: Path, mode: str) -> dict[str, Any]:
    ok(cli(str(path), "-P", f"mode={mode}", "-q", timeout=900))
    found = records()
    return found[0]


def untracked(path: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=path,
                          capture_output=True, text=True, check=True).stdout  # fmt: skip


@pytest.mark.parametrize("skinny", ["mlflow-skinny==2.22.*", "mlflow-skinny==3.18.*"])
def test_logging_without_start_run_lands_in_the_record_and_leaves_the_tree_clean(
    tmp_path: Path, skinny: str
) -> None:
    """mlflow-skinny alone: its default store would need SQLAlchemy, so only a routed client
    can log at all; and nothing (mlflow.db, mlruns/) is left to make the next run dirty."""
    path = project(tmp_path / "p", skinny)
    first = run(path, "bare")
    assert first["logged_params"] == {"alpha": "0.5"}
    assert first["metrics"]["rmse"]["last"] == 0.5 and first["metrics"]["rmse"]["count"] == 2
    assert first["tags"]["stage"] == "bare"
    assert first["mlflow"]["tracking_uri"] == "served"
    logged = [o for o in first["outputs"] if o["name"].startswith("logged/")]
    assert [o["name"] for o in logged] == ["logged/docs/notes.txt"]
    store = tmp_path / "store" / "artifacts" / first["id"]
    assert (store / "logged" / "docs" / "notes.txt").read_text() == "notes"
    assert untracked(path) == ""
    second = run(path, "bare")
    assert second["source"]["dirty"] is False and "untracked" not in second["source"]
    sorted_ids = ok(cli("runs", "list", "--sort=-metric.rmse", "--json")).out
    assert first["id"] in sorted_ids
    filtered = ok(cli("runs", "list", "--param", "alpha=0.5", "--json")).out
    assert second["id"] in filtered


def test_a_deleted_tag_leaves_the_record_and_the_stores_tags_table(tmp_path: Path) -> None:
    from runner.tracking.store import open_store

    path = project(tmp_path / "p", "mlflow-skinny==3.18.*")
    record = run(path, "deltag")
    assert record["tags"]["keep"] == "yes" and "drop" not in record["tags"]
    stored = open_store(str(tmp_path / "store")).pairs("tags", record["id"])
    assert stored["keep"] == "yes" and "drop" not in stored


def test_set_experiment_creates_it_on_the_endpoint(tmp_path: Path) -> None:
    path = project(tmp_path / "p", "mlflow-skinny==3.18.*")
    record = run(path, "experiment")
    assert record["mlflow"]["experiments"] == {"1": "churn"}


def test_sklearn_autolog_nested_runs_datasets_and_log_model(tmp_path: Path) -> None:
    path = project(tmp_path / "p", "mlflow-skinny==3.18.*", "scikit-learn", "pandas")
    record = run(path, "sklearn")
    assert record["logged_params"]["alpha"] == "0.1"  # autolog's estimator params
    assert "training_score" in record["metrics"]
    assert record["metrics"]["rmse"] == {"last": 0.125, "step": 1, "min": 0.125, "max": 0.25,
                                         "count": 2}  # fmt: skip
    section = record["mlflow"]
    (nested,) = section["runs"]
    assert nested["parent"] == record["id"] and nested["metrics"]["inner"]["last"] == 3.0
    assert any(d["name"] == "xs" and d["context"] == "training" for d in section["datasets"])
    (model,) = [m for m in section["models"] if m["name"] == "enet"]
    assert model["path"] == "logged/models/enet" and model["status"] == "LOGGED_MODEL_READY"
    names = {o["name"] for o in record["outputs"]}
    assert {"logged/models/enet/MLmodel", "logged/models/enet/model.pkl"} <= names
    assert untracked(path) == ""


def test_a_project_that_sets_its_own_tracking_uri_wins_and_the_record_says_where(
    tmp_path: Path,
) -> None:
    path = project(tmp_path / "p", "mlflow-skinny==3.18.*")
    train = path / "train.py"
    own = tmp_path / "own-store"
    text = train.read_text().replace(
        "mode = sys.argv[1]\n",
        "mode = sys.argv[1]\nos.environ['MLFLOW_ALLOW_FILE_STORE'] = 'true'\n"
        "os.environ.pop('MLFLOW_RUN_ID')  # as under mlflow run: that run is not in its store\n"
        f'mlflow.set_tracking_uri("file://{own}")\n',
    )
    commit(path, {"train.py": text})
    record = run(path, "bare")
    assert record["mlflow"]["tracking_uri"] == f"file://{own}"
    assert record["logged_params"] == {}  # it went where the project said
    assert own.is_dir()


FULL_TRAIN = """\
import mlflow
import mlflow.pyfunc


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return model_input


mlflow.log_param("client", "mlflow")
mlflow.log_metrics({"acc": 0.9, "loss": 0.1}, step=0)
mlflow.log_metrics({"acc": 0.95, "loss": 0.05}, step=1)
with mlflow.start_run(nested=True):
    mlflow.log_metric("inner", 1.0)
mlflow.pyfunc.log_model(name="echo", python_model=Echo(), pip_requirements=["mlflow"])
print("logged", mlflow.get_tracking_uri())
"""


def test_the_full_mlflow_package_logs_params_metrics_and_a_model_into_the_record(
    tmp_path: Path, uv_cache: Path
) -> None:
    """The full `mlflow` client (not -skinny): its store plugins and logged-model calls."""
    from support.mlflow_server import mlflow_python

    python = mlflow_python(tmp_path, uv_cache)
    root = tmp_path / "p"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    mlproject = ("name: full\nentry_points:\n  main:\n    parameters: {python: string}\n"
                 "    command: \"{python} train.py\"\n")  # fmt: skip
    commit(root, {"MLproject": mlproject, "train.py": FULL_TRAIN})
    ok(cli(str(root), "--env-manager", "local", "-P", f"python={python}", "-q", timeout=900))
    record = records()[0]
    assert record["logged_params"] == {"client": "mlflow"}
    assert record["metrics"]["acc"]["last"] == 0.95 and record["metrics"]["loss"]["count"] == 2
    (nested,) = record["mlflow"]["runs"]
    assert nested["metrics"]["inner"]["last"] == 1.0
    (model,) = [m for m in record["mlflow"]["models"] if m["name"] == "echo"]
    assert model["status"] == "LOGGED_MODEL_READY", model
    names = {o["name"] for o in record["outputs"]}
    assert {"logged/models/echo/MLmodel", "logged/models/echo/python_model.pkl"} <= names, names
    assert untracked(root) == ""


DOCKER_TRAIN = """\
import sys
sys.path.insert(0, "/mlflow-site")
import mlflow
mlflow.log_param("where", "container")
for step in range(3):
    mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
with open("/tmp/report.txt", "w") as out:
    out.write("from the container")
mlflow.log_artifact("/tmp/report.txt", "reports")
from mlflow.exceptions import ExecutionException
try:  # run-project is not at hand in the container: refused, nothing started
    mlflow.projects.run(".", env_manager="local")
except ExecutionException as exc:
    print("refused:", exc)
print("done", mlflow.get_tracking_uri())
"""


def test_a_docker_run_logs_through_mlflow_inside_the_container(
    tmp_path: Path, uv_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The endpoint runs in the container on its own 127.0.0.1 (nothing listens beyond this
    machine's loopback), with MLflow from PyPI mounted in (the test image is made offline)."""
    import fcntl
    import sys

    from runner.envs.python.uvtool import uv_bin
    from support.docker_image import docker_ready, ensure_base_image
    from support.services import require

    why = docker_ready()
    if why is not None:
        require("docker", why)
    with open(tmp_path_factory.getbasetemp().parent / "docker-base-image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        image = ensure_base_image()
    site = tmp_path / "site"
    subprocess.run([str(uv_bin()), "pip", "install", "-q", "--python", sys.executable,
                    "--target", str(site), "mlflow-skinny==3.18.*"], check=True,
                   env={**__import__("os").environ, "UV_CACHE_DIR": str(uv_cache)})  # fmt: skip
    # The offline test image carries only what its Python needs; the extension modules of
    # MLflow's dependencies (pydantic-core) need a few more system libraries, mounted beside.
    (site / "_libs").mkdir()
    for lib in _libraries_of(site):
        shutil.copy(lib, site / "_libs" / Path(lib).name)
    root = tmp_path / "p"
    root.mkdir()
    (root / "MLproject").write_text(
        f"name: d\ndocker_env:\n  image: {image}\n  volumes: ['{site}:/mlflow-site:ro']\n"
        "  environment: [['LD_LIBRARY_PATH', '/mlflow-site/_libs']]\n"
        "entry_points:\n  main:\n    command: python train.py\n"
    )
    (root / "train.py").write_text(DOCKER_TRAIN)
    ok(cli(str(root), "--allow-docker-volumes", "-q", timeout=900))
    record = records()[0]
    assert record["env"]["kind"] == "docker"
    assert record["logged_params"] == {"where": "container"}
    assert record["metrics"]["loss"]["count"] == 3 and record["metrics"]["loss"]["last"] == 1 / 3
    assert record["mlflow"]["tracking_uri"] == "served"
    run_dir = tmp_path / "store" / "artifacts" / record["id"]
    assert (run_dir / "logged" / "reports" / "report.txt").read_text() == "from the container"
    assert "logged/reports/report.txt" in {o["name"] for o in record["outputs"]}
    assert sorted(p.name for p in root.iterdir()) == ["MLproject", "train.py"]
    out = Path(record["logs"]["stdout"]).read_text()
    assert "refused: mlflow.projects.run cannot start a run-project run here" in out, out
    assert record["mlflow"].get("runs", []) == []  # MLflow's own project run did not start


def _libraries_of(site: Path) -> set[str]:
    found: set[str] = set()
    for module in site.rglob("*.so"):
        out = subprocess.run(["ldd", str(module)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if "=> /" in line and "libc.so" not in line and "ld-linux" not in line:
                found.add(line.split("=> ")[1].split(" (")[0])
    return found
