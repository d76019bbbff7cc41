"""Workflows: a run whose command starts run-project records the new run as its child
(docs/tracking.md#workflows): `parent_run` on the child, `runs show` of the parent lists it."""

from __future__ import annotations

from pathlib import Path

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
