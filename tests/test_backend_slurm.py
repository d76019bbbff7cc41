"""`--backend slurm` against a real one-node Slurm (munged, slurmctld, slurmd in a network namespace).

.ci/run starts the cluster and exports SLURM_CONF; outside CI the session starts its own when
it runs as root with the Debian packages installed (tests/services/slurm.sh).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from support.cli import REPO, cli, last_record
from support.clusters import slurm_cluster
from support.projects import make_project
from support.services import require

SCHEMA = json.loads((REPO / "schemas" / "run-record.schema.json").read_text())
PROJECT = {
    "MLproject": """\
        name: batch
        entry_points:
          main:
            parameters:
              code: {type: int, default: 0}
            command: "python train.py {code}"
          slow:
            command: "python slow_slurm_job.py"
          netns:
            command: "python netns_job.py"
    """,
    "train.py": """\
        import json, os, sys
        print("out line")
        print("err line", file=sys.stderr)
        with open(os.environ["RUN_PROJECT_EVENTS"], "a") as events:
            events.write(json.dumps({"type": "metric", "key": "acc", "value": 0.9}) + "\\n")
        with open(os.path.join(os.environ["RUN_PROJECT_OUTPUT_DIR"], "model.bin"), "w") as f:
            f.write("m")
        print("job", os.environ.get("SLURM_JOB_ID"), "cpus", os.environ.get("SLURM_CPUS_PER_TASK"))
        sys.exit(int(sys.argv[1]))
    """,
    "slow_slurm_job.py": """\
        import time
        print("started", flush=True)
        time.sleep(300)
    """,
    "netns_job.py": """\
        import os
        print("netns", os.readlink("/proc/self/ns/net"))
    """,
}


@pytest.fixture(scope="module")
def slurm_conf() -> Iterator[str]:
    with slurm_cluster() as conf:
        yield conf


@pytest.fixture(autouse=True)
def _slurm_env(slurm_conf: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_CONF", slurm_conf)


@pytest.mark.slow
def test_slurm_run_records_logs_events_outputs_and_options(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", PROJECT)
    options = {"partition": "debug", "time": "5", "cpus": 1, "mem": "100M"}
    result = cli(str(project), "-b", "slurm", "--backend-config", json.dumps(options))
    assert result.code == 0, result.text
    assert "out line" in result.out and "err line" in result.err  # tailed to the terminal
    record = last_record()
    assert (record["status"], record["exit_code"], record["backend"]) == ("FINISHED", 0, "slurm")
    jsonschema.Draft202012Validator(SCHEMA).validate(record)
    assert record["backend_config"] == options
    job_id = record["backend_job"]["id"]
    assert "--partition=debug" in record["backend_job"]["sbatch_options"]
    run_dir = tmp_path / "store" / "artifacts" / record["id"]
    assert f"job {job_id} cpus 1" in (run_dir / "logs" / "stdout.log").read_text()
    assert "err line" in (run_dir / "logs" / "stderr.log").read_text()
    assert json.loads((run_dir / "events.jsonl").read_text())["key"] == "acc"
    assert (run_dir / "outputs" / "model.bin").read_text() == "m"


def test_slurm_failure_keeps_the_command_exit_code(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", PROJECT)
    result = cli(str(project), "-b", "slurm", "-P", "code=4")
    assert result.code == 4, result.text
    record = last_record()
    assert (record["status"], record["exit_code"]) == ("FAILED", 4)
    assert "exited with code 4" in record["reason"]


def test_sigterm_to_the_runner_cancels_the_slurm_job(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", PROJECT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", str(project), "-e", "slow", "-b", "slurm"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "started" in proc.stdout.readline(), proc.stderr.read() if proc.stderr else ""
        assert last_record()["status"] == "RUNNING"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    record = last_record()
    assert (record["status"], record["exit_code"]) == ("KILLED", 143)
    assert "SIGTERM" in record["reason"]
    state = subprocess.run(["scontrol", "show", "job", "-o", record["backend_job"]["id"]],
                           capture_output=True, text=True)  # fmt: skip
    assert "JobState=CANCELLED" in state.stdout


def test_bad_slurm_option_is_refused_before_anything_runs(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", PROJECT)
    result = cli(str(project), "-b", "slurm", "--backend-config", '{"partition": "a b"}')
    assert result.code == 2
    assert "partition" in result.err and "hint:" in result.err
    typo = cli(str(project), "-b", "slurm", "--backend-config", '{"partiton": "debug"}')
    assert typo.code == 2 and "did you mean 'partition'" in typo.err


def test_sbatch_refusal_closes_the_record_as_failed(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", PROJECT)
    result = cli(str(project), "-b", "slurm", "--backend-config", '{"partition": "nope"}')
    assert result.code == 125 and "sbatch failed" in result.err, result.text
    record = last_record()
    assert record["status"] == "FAILED" and "nope" in record["reason"]


@pytest.mark.slow
def test_slurm_jobs_run_in_the_clusters_own_network_namespace(tmp_path: Path) -> None:
    """The runner talks to slurmctld over a veth, as a login node would, not over loopback."""
    conf = Path(os.environ["SLURM_CONF"])
    if not (conf.parent / "netns").exists():
        require("slurm", "this Slurm runs on 127.0.0.1 (no network namespace: see slurm.sh)")
    host = re.search(r"^SlurmctldHost=\w+\(([\d.]+)\)", conf.read_text(), re.MULTILINE)
    assert host and not host.group(1).startswith("127."), conf.read_text()
    project = make_project(tmp_path / "proj", PROJECT)
    result = cli(str(project), "-e", "netns", "-b", "slurm")
    assert result.code == 0, result.text
    job_netns = re.search(r"netns (\S+)", result.out)
    assert job_netns and job_netns.group(1) != os.readlink("/proc/self/ns/net"), result.out


MLFLOW_TRAIN = """\
import mlflow
mlflow.log_param("where", "slurm")
for step in range(3):
    mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
mlflow.set_tag("stage", "batch")
with open("report.txt", "w") as out:
    out.write("from the node")
mlflow.log_artifact("report.txt", "reports")
print("logged through", mlflow.get_tracking_uri())
"""


@pytest.mark.slow
@pytest.mark.usefixtures("shared_uv_cache")
def test_a_slurm_run_that_logs_through_mlflow_keeps_what_it_logged(tmp_path: Path) -> None:
    """The endpoint's wrapper runs on the node, in the job's own network namespace, from the
    shared filesystem; what mlflow-skinny logs there lands in the record."""
    project = make_project(tmp_path / "proj", {
        "MLproject": "name: logs\npython_env: python_env.yaml\n"
                     "entry_points:\n  main:\n    command: python train.py\n",
        "python_env.yaml": 'python: "3.11"\ndependencies:\n  - mlflow-skinny==3.18.*\n',
        "train.py": MLFLOW_TRAIN,
    })  # fmt: skip
    result = cli(str(project), "-b", "slurm", timeout=900)
    assert result.code == 0, result.text
    assert "logged through http://127.0.0.1:" in result.out
    record = last_record()
    assert record["logged_params"] == {"where": "slurm"}
    assert record["metrics"]["loss"]["count"] == 3 and record["metrics"]["loss"]["last"] == 1 / 3
    assert record["tags"]["stage"] == "batch"
    assert record["mlflow"]["tracking_uri"] == "served"
    run_dir = tmp_path / "store" / "artifacts" / record["id"]
    assert (run_dir / "logged" / "reports" / "report.txt").read_text() == "from the node"
    assert "logged/reports/report.txt" in {o["name"] for o in record["outputs"]}
