"""`--backend ray` against a real Ray head started by the session (listeners on 127.0.0.1).

Each Ray job costs a few seconds of Ray's own start-up, so each test checks several things
about one run.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from support.cli import EXAMPLES, REPO, cli, last_record, ok
from support.clusters import http_json, ray_head
from support.projects import make_project

SCHEMA = json.loads((REPO / "schemas" / "run-record.schema.json").read_text())
PROJECT = {
    "MLproject": """\
        name: remote
        entry_points:
          main:
            parameters:
              code: {type: int, default: 0}
              data: {type: path, default: data/input.txt}
            command: "python train.py {code} {data}"
          slow:
            command: "python slow_ray_job.py"
    """,
    "train.py": """\
        import json, os, sys
        print("read", open(sys.argv[2]).read().strip())
        print("to stderr", file=sys.stderr)
        with open(os.environ["RUN_PROJECT_EVENTS"], "a") as events:
            events.write(json.dumps({"type": "metric", "key": "loss", "value": 0.25}) + "\\n")
        with open(os.path.join(os.environ["RUN_PROJECT_OUTPUT_DIR"], "model.bin"), "w") as f:
            f.write("weights for " + open(sys.argv[2]).read())
        with open("made_in_workdir.txt", "w") as f:
            f.write("w")
        print("run", os.environ["RUN_PROJECT_RUN_ID"])
        sys.exit(int(sys.argv[1]))
    """,
    "slow_ray_job.py": """\
        import time
        print("started", flush=True)
        time.sleep(300)
    """,
    "data/input.txt": "hello from the data\n",
}


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    with ray_head() as address:
        yield address


def config(address: str, **extra: Any) -> str:
    return json.dumps({"address": address, "poll_seconds": 0.2, **extra})


def test_ray_run_returns_logs_events_and_outputs_to_the_local_store(
    tmp_path: Path, ray_address: str
) -> None:
    project = make_project(tmp_path / "proj", PROJECT)
    result = cli(str(project), "-b", "ray", "--backend-config", config(ray_address))
    assert result.code == 0, result.text
    assert "read hello from the data" in result.out  # path parameter reached the cluster copy
    assert "@@run-project" not in result.text  # the results block is not shown
    record = last_record()
    assert record["status"] == "FINISHED" and record["exit_code"] == 0
    jsonschema.Draft202012Validator(SCHEMA).validate(record)
    assert record["backend"] == "ray"
    assert record["backend_config"]["address"] == ray_address
    assert record["backend_job"]["id"] == f"run-project-{record['id']}"
    assert record["backend_job"]["working_dir"].startswith("gcs://_run_project_pkg_")
    run_dir = tmp_path / "store" / "artifacts" / record["id"]
    log = (run_dir / "logs" / "stdout.log").read_text()
    assert "to stderr" in log and f"run {record['id']}" in log and "@@run-project" not in log
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert {"type": "metric", "key": "loss", "value": 0.25} in events
    # The tracking client went along: the cluster copy's audit hook saw the data file read.
    assert any(e.get("type") == "open" and "input.txt" in str(e.get("path")) for e in events)
    assert (run_dir / "outputs" / "model.bin").read_text() == "weights for hello from the data\n"
    assert (run_dir / "workdir" / "made_in_workdir.txt").read_text() == "w"
    # Returned files are the run's outputs, hashed and kept like a local run's.
    outputs = {o["name"]: o for o in record["outputs"]}
    assert {"outputs/model.bin", "workdir/made_in_workdir.txt"} <= set(outputs)
    assert len(outputs["outputs/model.bin"]["sha256"]) == 64
    # The cluster's copy was written, never the user's project.
    assert not (project / "made_in_workdir.txt").exists()
    assert http_json(f"{ray_address}/api/jobs/run-project-{record['id']}")["status"] == "SUCCEEDED"


def test_ray_failure_keeps_the_exit_code_and_results_come_through_a_shared_dir(
    tmp_path: Path, ray_address: str
) -> None:
    project = make_project(tmp_path / "proj", PROJECT)
    shared = tmp_path / "shared"  # a directory both sides see: results skip the log
    shared.mkdir()
    backend_config = config(ray_address, results_dir=str(shared))
    result = cli(str(project), "-b", "ray", "--backend-config", backend_config, "-P", "code=3")
    assert result.code == 3, result.text
    record = last_record()
    assert (record["status"], record["exit_code"]) == ("FAILED", 3)
    assert "exited with code 3" in record["reason"]
    # Results of a failed run come back too: they are often what explains the failure.
    run_dir = tmp_path / "store" / "artifacts" / record["id"]
    assert (run_dir / "outputs" / "model.bin").exists()
    assert list(shared.iterdir()) == []  # taken into the store, not left behind


def test_ctrl_c_streams_live_then_stops_the_ray_job_and_records_killed(
    tmp_path: Path, ray_address: str
) -> None:
    project = make_project(tmp_path / "proj", PROJECT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", str(project), "-e", "slow", "-b", "ray",
         "--backend-config", config(ray_address)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        while line and "started" not in line:  # Ray's own set-up lines come first
            line = proc.stdout.readline()
        assert "started" in line, proc.stderr.read() if proc.stderr else ""
        running = last_record()  # the line arrived while the job still runs: live logs
        assert running["status"] == "RUNNING"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    record = last_record()
    assert (record["status"], record["exit_code"]) == ("KILLED", 130)
    assert "SIGINT" in record["reason"]
    job = http_json(f"{ray_address}/api/jobs/run-project-{record['id']}")
    assert job["status"] == "STOPPED"
    assert not _processes_running("slow_ray_job.py")


def test_record_made_on_ray_reruns_locally_and_back(tmp_path: Path, ray_address: str) -> None:
    project = make_project(tmp_path / "proj", PROJECT)
    on_ray = cli(str(project), "-b", "ray", "--backend-config", config(ray_address), "-P",
                 f"data={project / 'data' / 'input.txt'}")  # fmt: skip
    assert on_ray.code == 0, on_ray.text
    ray_record = last_record()
    # Ray → local: the recorded commit, params and lock, here.
    local = cli("rerun", ray_record["id"])
    assert local.code == 0, local.text
    local_record = last_record()
    assert (local_record["backend"], local_record["rerun_of"]) == ("local", ray_record["id"])
    assert _values(local_record) == _values(ray_record)
    assert local_record["rerun_verdict"]["identical"], local_record["rerun_verdict"]
    # Local → Ray: the backend and its config are given on the command line...
    back = cli("rerun", local_record["id"], "-b", "ray", "--backend-config", config(ray_address))
    assert back.code == 0, back.text
    assert last_record()["backend"] == "ray"
    # ... and a Ray run reruns on Ray with the config it recorded.
    again = cli("rerun", ray_record["id"], "-b", "ray")
    assert again.code == 0, again.text
    again_record = last_record()
    assert again_record["backend_config"] == ray_record["backend_config"]
    assert again_record["rerun_verdict"]["identical"], again_record["rerun_verdict"]
    assert _output_hash(tmp_path, ray_record) == _output_hash(tmp_path, again_record)
    assert _output_hash(tmp_path, ray_record) == _output_hash(tmp_path, local_record)


def _values(record: dict[str, Any]) -> dict[str, Any]:
    return {name: param["value"] for name, param in record["params"].items()}


def _output_hash(tmp_path: Path, record: dict[str, Any]) -> str:
    path = tmp_path / "store" / "artifacts" / record["id"] / "outputs" / "model.bin"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _processes_running(name: str) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = False
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                found = found or (name in cmdline and "runner" not in cmdline)
        if not found:
            return False
        time.sleep(0.5)
    return True


def test_the_runs_lock_is_installed_on_the_cluster_before_the_command(
    tmp_path: Path, ray_address: str
) -> None:
    # The virtualenv kind resolves here and records pylock.toml; the cluster installs exactly
    # those pins (runtime_env pip) into the job's own virtualenv, then runs the command there.
    result = cli(str(EXAMPLES / "python_env"), "-b", "ray", "--backend-config",
                 config(ray_address), "-P", "word=remote")  # fmt: skip
    assert result.code == 0, result.text
    seen = json.loads(result.out.strip().splitlines()[-1])
    assert (seen["six"], seen["idna"], seen["word"]) == ("1.17.0", "3.10", "remote")
    assert "runtime_resources" in seen["prefix"]  # Ray's env on the cluster, not ours
    record = last_record()
    assert record["env"]["kind"] == "virtualenv"
    assert {"six==1.17.0", "idna==3.10"} <= set(record["backend_job"]["packages"])


def test_ctrl_c_while_the_job_waits_for_resources_does_not_hang(
    tmp_path: Path, ray_address: str
) -> None:
    project = make_project(tmp_path / "proj", PROJECT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", str(project), "-b", "ray",
         "--backend-config", config(ray_address, num_gpus=1)],  # the head has no GPU
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (records := _records_with_job()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert records, "the job was never submitted"
        job_url = f"{ray_address}/api/jobs/{records[0]['backend_job']['id']}"
        assert http_json(job_url)["status"] == "PENDING"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    record = last_record()
    assert (record["status"], record["exit_code"]) == ("KILLED", 130)
    # Ray queues the stop until the job gets its resources; run-project does not hang on it.
    assert http_json(job_url)["status"] in ("PENDING", "STOPPED")
    assert "was cancelled" in record["reason"]


def _records_with_job() -> list[dict[str, Any]]:
    found = cli("runs", "list", "--json")
    if found.code != 0:
        return []
    return [r for r in json.loads(found.out) if r.get("backend_job")]


# A job that prints many MB over several seconds: the runner must not download the log again
# at every poll (it did: the whole log each 0.2 s), and must show exactly what was printed.
LOUD = {
    "MLproject": """\
        name: loud
        entry_points:
          main:
            parameters:
              blocks: {type: int, default: 40}
            command: "python loud.py {blocks}"
    """,
    "loud.py": """\
        import sys, time
        print("BEGIN", flush=True)
        for block in range(int(sys.argv[1])):
            sys.stdout.write("".join(f"{block:03d} {i:05d} é{'x' * 90}\\n" for i in range(2000)))
            sys.stdout.flush()
            time.sleep(0.1)
        print("END", flush=True)
    """,
}


def _loud_text(blocks: int) -> str:
    lines = (f"{b:03d} {i:05d} é{'x' * 90}\n" for b in range(blocks) for i in range(2000))
    return "BEGIN\n" + "".join(lines) + "END\n"


def _run_loud(tmp_path: Path, address: str, blocks: int, env: dict[str, str]) -> dict[str, Any]:
    project = make_project(tmp_path / "loud", LOUD)
    stats = tmp_path / "http-stats.jsonl"
    result = cli(str(project), "-b", "ray", "--backend-config", config(address),
                 "-P", f"blocks={blocks}", env={**env, "RUN_PROJECT_TEST_RAY_HTTP_STATS": str(stats)})  # fmt: skip
    assert result.code == 0, result.text[-3000:]
    record = last_record()
    log = (tmp_path / "store" / "artifacts" / record["id"] / "logs" / "stdout.log").read_text()
    # Ray's own lines come first; from BEGIN on it is exactly what the job printed.
    printed = log[log.index("BEGIN\n") :]
    assert printed == _loud_text(blocks)
    assert result.out[result.out.index("BEGIN\n") :] == printed  # the terminal saw the same
    assert "@@run-project" not in log
    (line,) = stats.read_text().splitlines()
    return {**json.loads(line), "log_bytes": len(log.encode()), "err": result.err}


def test_a_loud_job_streams_its_log_once(tmp_path: Path, ray_address: str) -> None:
    stats = _run_loud(tmp_path, ray_address, blocks=40, env={})  # ~8 MB over 4+ seconds
    assert stats["mode"] == "stream", stats["err"]
    # Each byte of the log once, plus small status answers and the results block (and at
    # worst the whole log once more, if the stream had not brought its end when the job ended).
    assert stats["received"] < 2.5 * stats["log_bytes"], stats
    assert "polling the whole log" not in stats["err"]


def test_without_the_stream_the_whole_log_is_polled_and_still_complete(
    tmp_path: Path, ray_address: str
) -> None:
    # An older Ray, or a proxy that refuses the stream: a 404 on the stream endpoint.
    env = {"RUN_PROJECT_TEST_RAY_LOG_STREAM": "/api/run-project-test-missing/stream"}
    stats = _run_loud(tmp_path, ray_address, blocks=10, env=env)
    assert stats["mode"] == "poll"
    assert "Ray's log stream is not available (HTTP 404); polling the whole log" in stats["err"]


MLFLOW_TRAIN = """\
import os, tempfile
import mlflow
from mlflow import MlflowClient

mlflow.log_param("where", "ray")
for step in range(3):
    mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
mlflow.set_tag("stage", "cluster")
with open("report.txt", "w") as out:
    out.write("from the cluster")
mlflow.log_artifact("report.txt", "reports")
os.remove("report.txt")
model = mlflow.initialize_logged_model(name="tiny")
with tempfile.TemporaryDirectory() as folder:
    with open(os.path.join(folder, "MLmodel"), "w") as out:
        out.write("flavors: {}\\n")
    MlflowClient().log_model_artifacts(model.model_id, folder)
mlflow.finalize_logged_model(model.model_id, "READY")
print("logged through", mlflow.get_tracking_uri())
"""


@pytest.mark.slow
@pytest.mark.usefixtures("shared_uv_cache")
def test_a_ray_run_that_logs_through_mlflow_keeps_what_it_logged(
    tmp_path: Path, ray_address: str
) -> None:
    """mlflow-skinny from the run's lock, installed on the cluster by Ray's uv: the job
    wrapper serves the endpoint beside the command, and what was logged comes back with the
    results (the worker needs no way back to this machine)."""
    project = make_project(tmp_path / "proj", {
        "MLproject": "name: logs\npython_env: python_env.yaml\n"
                     "entry_points:\n  main:\n    command: python train.py\n",
        "python_env.yaml": 'python: "3.11"\ndependencies:\n  - mlflow-skinny==3.18.*\n',
        "train.py": MLFLOW_TRAIN,
    })  # fmt: skip
    result = cli(str(project), "-b", "ray", "--backend-config",
                 config(ray_address, installer="uv"), timeout=900)  # fmt: skip
    assert result.code == 0, result.text
    assert "logged through http://127.0.0.1:" in result.out  # the endpoint on the worker
    record = last_record()
    assert record["logged_params"] == {"where": "ray"}
    assert record["metrics"]["loss"] == {"last": 1 / 3, "step": 2, "min": 1 / 3, "max": 1.0,
                                         "count": 3}  # fmt: skip
    assert record["tags"]["stage"] == "cluster"
    assert record["mlflow"]["tracking_uri"] == "served"
    (model,) = record["mlflow"]["models"]
    assert (model["name"], model["status"]) == ("tiny", "LOGGED_MODEL_READY")
    run_dir = tmp_path / "store" / "artifacts" / record["id"]
    assert (run_dir / "logged" / "reports" / "report.txt").read_text() == "from the cluster"
    names = {o["name"] for o in record["outputs"]}
    assert {"logged/reports/report.txt", f"{model['path']}/MLmodel"} <= names
    exported = json.loads(ok(cli("runs", "export", record["id"])).out)
    assert exported["metric_points"]["loss"] == [[0, 1.0], [1, 0.5], [2, 1 / 3]]
    # What ran: the interpreter of the job's environment on the cluster, not this machine's.
    assert record["launch_argv"][1:] == ["train.py"]
    assert "runtime_resources" in record["launch_argv"][0]
    assert "runtime_resources" in record["backend_job"]["ran"]["python"]
    assert sorted(p.name for p in project.iterdir()) == ["MLproject", "python_env.yaml",
                                                          "train.py"]  # fmt: skip
