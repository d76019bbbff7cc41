"""Workflows: a run whose command starts run-project records the new run as its child
(docs/tracking.md#workflows): `parent_run` on the child, `runs show` of the parent lists it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.project.schemas import schema_errors
from support.cli import cli, ok, records
from support.projects import make_project

STEP = """\
name: step
entry_points:
  main:
    parameters:
      n: {type: int, default: 1}
    command: "python step.py {n}"
"""

STEP_PY = "import sys\nprint('step', sys.argv[1])\n"

PIPELINE = """\
import subprocess, sys
for n in (1, 2):
    step = sys.argv[sys.argv.index("--step") + 1]
    subprocess.run([sys.executable, "-m", "runner", step, "-P", f"n={n}", "-q"], check=True)
"""


def test_runs_started_inside_a_run_are_its_children(tmp_path: Path) -> None:
    step = make_project(tmp_path / "step", {"MLproject": STEP, "step.py": STEP_PY})
    pipeline = make_project(tmp_path / "pipeline", {"pipeline.py": PIPELINE})
    ok(
        cli(
            str(pipeline), "-e", "pipeline.py", "-P", f"step={step}", "--store", str(tmp_path / "s")
        )
    )
    runs = records(tmp_path / "s")  # the steps went to the parent's store, not ./runs
    assert len(runs) == 3
    parent = next(r for r in runs if r["entry_point"] == "pipeline.py")
    children = [r for r in runs if r is not parent]
    assert all(c["parent_run"] == parent["id"] for c in children)
    assert "parent_run" not in parent
    assert all(schema_errors("run-record", r) == [] for r in runs)
    shown = ok(cli("runs", "show", parent["id"][:8], "--store", str(tmp_path / "s")))
    for child in children:
        assert f"child run: {child['id']} {child['run_name']} FINISHED" in shown.out


def test_a_malformed_parent_id_is_not_recorded(tmp_path: Path) -> None:
    step = make_project(tmp_path / "step", {"MLproject": STEP, "step.py": STEP_PY})
    ok(cli(str(step), env={"RUN_PROJECT_PARENT_RUN_ID": "../../etc"}))
    assert "parent_run" not in records()[0]


LAUNCHER = """\
import json, os, subprocess, sys
step = sys.argv[sys.argv.index("--step") + 1]
read, write = os.pipe()
runner = json.loads(os.environ["RUN_PROJECT_RUNNER"])
proc = subprocess.Popen([*runner, step, "-P", "n=5", "-q"], pass_fds=(write,),
                        env={**os.environ, "RUN_PROJECT_ID_FD": str(write)})
os.close(write)
print("told", os.read(read, 100).decode().strip(), flush=True)
sys.exit(proc.wait())
"""

STEP_ENV_PY = """\
import os
print("step sees", os.environ.get("RUN_PROJECT_ID_FD"), os.environ["MLFLOW_RUN_ID"])
"""


def _launch(tmp_path: Path, launcher_py: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run `launcher_py` as a run starting one step through $RUN_PROJECT_RUNNER; the two
    records (launcher, step)."""
    step = make_project(tmp_path / "step", {"MLproject": STEP, "step.py": STEP_ENV_PY})
    launcher = make_project(tmp_path / "launcher", {"launch.py": launcher_py})
    ok(cli(str(launcher), "-e", "launch.py", "-P", f"step={step}", "-q"))
    runs = records()
    parent = next(r for r in runs if r["entry_point"] == "launch.py")
    (child,) = [r for r in runs if r is not parent]
    return parent, child


def test_the_runner_a_run_starts_tells_its_id_and_gives_the_step_its_own_endpoint(
    tmp_path: Path,
) -> None:
    """What mlflow.projects.run inside a run relies on (tests/test_mlflow_workflows.py):
    $RUN_PROJECT_RUNNER starts run-project, which writes the new run's id to the pipe in
    RUN_PROJECT_ID_FD; the step gets neither that pipe nor its parent's MLflow endpoint."""
    parent, child = _launch(tmp_path, LAUNCHER)
    assert child["parent_run"] == parent["id"]
    assert f"told {child['id']}" in Path(parent["logs"]["stdout"]).read_text()
    assert Path(child["logs"]["stdout"]).read_text() == f"step sees None {child['id']}\n"


CANCELLER = LAUNCHER.replace(
    "sys.exit(proc.wait())",
    'proc.terminate()  # as soon as the id is known\nprint("code", proc.wait())',
)


def test_a_run_stopped_as_soon_as_it_told_its_id_is_recorded_killed(tmp_path: Path) -> None:
    """A launcher that cancels right after learning the id (mlflow's SubmittedRun.cancel())
    catches the runner between recording the run and starting its command: the record still
    ends KILLED, not left to be found LOST."""
    parent, child = _launch(tmp_path, CANCELLER)
    assert (child["status"], child["exit_code"]) == ("KILLED", 143), child.get("reason")
    assert "code 143" in Path(parent["logs"]["stdout"]).read_text()
