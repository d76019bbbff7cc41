"""A rerun's verdict levels (docs/reruns.md#verdicts): logged params and metrics compared,
exactly or within --rtol/--atol, and files that differ only in MLflow's per-run identifiers
(m-<uuid> model directories, run_id, model_id, times in MLmodel) set aside."""

from __future__ import annotations

from pathlib import Path

from support.cli import cli, last_record, ok
from support.git_servers import commit

MLPROJECT = """\
name: verdicts
entry_points:
  main:
    command: "python train.py"
"""

# What MLflow 3's log_model leaves: a fresh m-<uuid> directory, an MLmodel naming this run
# and the time, the same model bytes; and mlflow.db/mlruns, new on every run.
MODEL_LIKE = """\
import os, time, uuid
import run_project_client as rp
run_id, model_id = uuid.uuid4().hex, "m-" + uuid.uuid4().hex
model = os.path.join("build", model_id)
os.makedirs(model)
with open(os.path.join(model, "MLmodel"), "w") as out:
    out.write(f"artifact_path: {model_id}/artifacts\\nflavors:\\n  python_function:\\n"
              f"    loader_module: mlflow.sklearn\\nmodel_id: {model_id}\\nrun_id: {run_id}\\n"
              f"utc_time_created: '{time.strftime('%Y-%m-%d %H:%M:%S')}.{time.time_ns() % 10**6}'\\n")
with open(os.path.join(model, "model.pkl"), "wb") as out:
    out.write(b"weights 0.125 0.25")
for name in ("MLmodel", "model.pkl"):  # as the tracking endpoint keeps a logged model
    rp.log_artifact(os.path.join(model, name), name=f"models/{model_id}/{name}")
with open("mlflow.db", "wb") as out:
    out.write(os.urandom(64))
rp.log_param("alpha", 0.5)
rp.log_metric("rmse", 0.125)
"""

DRIFTING = """\
import sys, random
import run_project_client as rp
rp.log_param("alpha", 0.5)
rp.log_metric("rmse", 0.5 + random.random() * float(sys.argv[1]))
"""


def test_a_model_with_fresh_ids_and_the_same_metrics_is_equivalent(tmp_path: Path) -> None:
    repo = tmp_path / "proj"
    commit(repo, {"MLproject": MLPROJECT, "train.py": MODEL_LIKE})
    ok(cli(str(repo)))
    first = last_record()
    result = ok(cli("rerun", first["id"]))
    verdict = last_record()["rerun_verdict"]
    assert verdict["level"] == "equivalent", result.out
    # MLmodel and model.pkl, each in build/m-<uuid>/ and logged under models/m-<uuid>/
    assert "metrics identical; 4 files differ only in per-run identifiers" in result.out
    assert verdict["identical"] is False
    assert len(verdict["identifier_only"]) == 4
    assert any(n.startswith("logged/models/m-") for n in verdict["identifier_only"])
    assert verdict["set_aside"] == ["workdir/mlflow.db"]
    assert "not compared: 1 MLflow store files" in result.out
    assert "runs diff" not in result.out


def test_a_changed_metric_is_named_with_its_difference(tmp_path: Path) -> None:
    repo = tmp_path / "proj"
    commit(repo, {"MLproject": MLPROJECT.replace("train.py", "train.py 1"), "train.py": DRIFTING})
    ok(cli(str(repo)))
    first = last_record()
    result = ok(cli("rerun", first["id"]))
    verdict = last_record()["rerun_verdict"]
    assert verdict["level"] == "different"
    assert verdict["summary"].startswith("metric rmse differs: ")
    assert "(difference " in verdict["summary"]
    assert "metric rmse differs" in result.out and "runs diff" in result.out


def test_a_tolerance_lets_a_tiny_metric_difference_pass(tmp_path: Path) -> None:
    repo = tmp_path / "proj"
    commit(
        repo, {"MLproject": MLPROJECT.replace("train.py", "train.py 1e-9"), "train.py": DRIFTING}
    )
    ok(cli(str(repo)))
    first = last_record()
    exact = ok(cli("rerun", first["id"]))
    assert "metric rmse differs" in exact.out
    within = ok(cli("rerun", first["id"], "--rtol", "1e-6", "--atol", "0"))
    verdict = last_record()["rerun_verdict"]
    assert verdict["level"] == "equivalent", within.out
    assert "metrics identical within rtol=1e-06, atol=0" in within.out
    assert verdict["tolerance"] == {"rtol": 1e-6, "atol": 0.0}


def test_a_negative_tolerance_is_refused(tmp_path: Path) -> None:
    result = cli("rerun", "abcdef12", "--rtol", "-1")
    assert result.code == 2 and "is not a number >= 0" in result.err
