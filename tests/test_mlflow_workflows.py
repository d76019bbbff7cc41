"""`mlflow.projects.run` / `mlflow.run` inside a run start run-project runs, children of the
run (docs/tracking.md#workflows). Real MLflow clients (mlflow-skinny 2.22 and 3.18 from PyPI)
in a virtualenv built by uv; the steps log through MLflow into their own records."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from support.cli import cli, ok, records
from support.git_servers import commit
from support.projects import make_project

STEP = """\
name: step
entry_points:
  main:
    parameters:
      n: {type: int, default: 1}
    command: "python step.py {n}"
"""

STEP_PY = """\
import sys
import mlflow

n = int(sys.argv[1])
mlflow.log_param("n_seen", n)
mlflow.log_metric("score", n * 10.0)
if n == 7:  # a long step, for cancel()
    import time
    print("step started", flush=True)
    time.sleep(120)
sys.exit(3 if n == 99 else 0)
"""

FLOW = """\
name: flow
python_env: python_env.yaml
entry_points:
  main:
    parameters: {step: string, mode: {type: string, default: two}}
    command: "python flow.py {step} {mode}"
"""

FLOW_PY = """\
import sys
import mlflow
from mlflow.exceptions import ExecutionException

step, mode = sys.argv[1], sys.argv[2]
if mode == "two":
    first = mlflow.projects.run(step, parameters={"n": 1}, env_manager="local")
    second = mlflow.run(step, parameters={"n": 2}, env_manager="local", synchronous=False,
                        run_name="second")
    assert isinstance(second, mlflow.projects.SubmittedRun)
    print("waited", second.wait(), second.get_status(), flush=True)
    print("children", first.run_id, second.run_id, first.get_status(), flush=True)
    try:  # the step is a run of the store, not of this run's endpoint
        mlflow.get_run(first.run_id)
    except mlflow.exceptions.MlflowException as exc:
        print("get_run:", exc, flush=True)
elif mode == "cancel":
    long = mlflow.run(step, parameters={"n": 7}, env_manager="local", synchronous=False)
    print("started", long.run_id, long.get_status(), flush=True)  # run_id: once recorded
    long.cancel()
    print("cancelled", long.get_status(), flush=True)
else:
    try:
        mlflow.run(step, parameters={"n": 99}, env_manager="local")
    except ExecutionException as exc:
        print("failed:", exc, flush=True)
    for option in ({"backend": "databricks"}, {"storage_dir": "/tmp/x"}):
        try:
            mlflow.projects.run(step, **option)
        except ExecutionException as exc:
            print("refused:", exc, flush=True)
    mlflow.run(step, parameters={"n": 4}, env_manager="local", synchronous=False)  # not waited
"""


def flow_project(root: Path, mlflow: str) -> Path:
    env = f'python: "3.11"\nbuild_dependencies: [pip]\ndependencies:\n  - {mlflow}\n'
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    commit(root, {"MLproject": FLOW, "flow.py": FLOW_PY, "python_env.yaml": env})
    return root


def run_flow(tmp_path: Path, mlflow: str, mode: str) -> tuple[dict[str, Any], list[Any], str]:
    """The parent's record, its children's records (oldest first) and the parent's stdout."""
    step = make_project(tmp_path / "step", {"MLproject": STEP, "step.py": STEP_PY})
    flow = flow_project(tmp_path / "flow", mlflow)
    ok(cli(str(flow), "-P", f"step={step}", "-P", f"mode={mode}", "--experiment", "flows", "-q",
           timeout=900))  # fmt: skip
    runs = records()
    parent = next(r for r in runs if r["entry_point"] == "main" and "parent_run" not in r)
    children = sorted((r for r in runs if r is not parent), key=lambda r: r["start_time"])
    assert len(runs) == len(children) + 1
    return parent, children, Path(parent["logs"]["stdout"]).read_text()


@pytest.mark.slow
@pytest.mark.usefixtures("shared_uv_cache")
@pytest.mark.parametrize("mlflow", ["mlflow-skinny==2.22.*", "mlflow-skinny==3.18.*"])
def test_mlflow_run_inside_a_run_starts_child_runs_that_log_into_their_own_records(
    tmp_path: Path, mlflow: str
) -> None:
    parent, children, out = run_flow(tmp_path, mlflow, "two")
    assert parent["status"] == "FINISHED"
    assert [c["parent_run"] for c in children] == [parent["id"]] * 2
    assert [c["logged_params"] for c in children] == [{"n_seen": "1"}, {"n_seen": "2"}]
    assert [c["metrics"]["score"]["last"] for c in children] == [10.0, 20.0]
    assert [c["params"]["n"]["value"] for c in children] == [1, 2]
    assert {c["env"]["kind"] for c in children} == {"local"}
    assert children[1]["run_name"] == "second"
    assert {c["experiment"] for c in children} == {"flows"}  # MLflow's active experiment
    assert parent["logged_params"] == {} and parent["metrics"] == {}  # nothing leaked upwards
    assert "waited True FINISHED" in out
    assert f"children {children[0]['id']} {children[1]['id']} FINISHED" in out
    assert f"RESOURCE_DOES_NOT_EXIST: Run with id={children[0]['id']} not found" in out
    assert f"`run-project runs show {children[0]['id']}`" in out
    shown = ok(cli("runs", "show", parent["id"])).out
    for child in children:
        assert f"child run: {child['id']} {child['run_name']} FINISHED" in shown


@pytest.mark.slow
@pytest.mark.usefixtures("shared_uv_cache")
def test_a_failed_child_raises_execution_exception_and_unmappable_options_are_refused(
    tmp_path: Path,
) -> None:
    parent, children, out = run_flow(tmp_path, "mlflow-skinny==3.18.*", "fail")
    failed, unwaited = children  # the refused calls started nothing
    assert unwaited["status"] == "FINISHED"  # the process waited for it before exiting
    assert unwaited["logged_params"] == {"n_seen": "4"}
    assert failed["status"] == "FAILED" and failed["exit_code"] == 3
    assert failed["parent_run"] == parent["id"]
    assert f"failed: Run (ID '{failed['id']}') failed: run-project exited with code 3" in out
    assert "refused: mlflow.projects.run(backend='databricks') is not supported" in out
    assert "refused: mlflow.projects.run(storage_dir='/tmp/x') is not supported" in out


def test_a_run_that_never_imports_mlflow_loads_nothing_of_the_hook(tmp_path: Path) -> None:
    """The finder in the client's sitecustomize is all a run without MLflow pays for."""
    project = make_project(
        tmp_path / "p",
        {
            "MLproject": "name: p\nentry_points:\n  main:\n    command: python probe.py\n",
            "probe.py": "import sys\nprint(sorted(m for m in sys.modules if 'mlflow' in m))\n",
        },
    )
    ok(cli(str(project), "-q"))
    out = Path(records()[0]["logs"]["stdout"]).read_text()
    assert out.strip() == "[]"  # neither MLflow nor run_project_mlflow_projects


@pytest.mark.slow
@pytest.mark.usefixtures("shared_uv_cache")
def test_cancel_of_a_child_started_by_mlflow_run_ends_it_killed(tmp_path: Path) -> None:
    parent, children, out = run_flow(tmp_path, "mlflow-skinny==3.18.*", "cancel")
    (child,) = children
    assert parent["status"] == "FINISHED"
    assert child["status"] == "KILLED" and child["parent_run"] == parent["id"], child
    assert f"started {child['id']} RUNNING" in out and "cancelled KILLED" in out, out
