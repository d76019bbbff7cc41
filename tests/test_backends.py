"""Backend choice and configuration, the lock → cluster environment hook, and the results
channel, without any cluster (the Ray and Slurm files test against real ones)."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from runner.backends import results
from runner.backends.base import Job
from runner.backends.ray import package as ray_package
from runner.envs.base import Launch
from runner.errors import BackendError
from support.cli import cli, last_record
from support.projects import make_project

PROJECT = {"MLproject": "name: p\nentry_points:\n  main:\n    command: python -c pass\n"}

PYLOCK = """\
lock-version = "1.0"
created-by = "uv"
requires-python = ">=3.11"

[[packages]]
name = "numpy"
version = "2.1.3"
marker = "python_version >= '3.11'"

[[packages]]
name = "six"
version = "1.16.0"

[[packages]]
name = "myproject"
directory = { path = "." }
"""


def test_unknown_backend_lists_the_choices(tmp_path: Path) -> None:
    result = cli(str(make_project(tmp_path / "p", PROJECT)), "--backend", "k8s")
    assert result.code == 2
    assert "unknown --backend 'k8s'" in result.err and "local, ray, slurm" in result.err


def test_backend_config_must_be_a_json_object_or_a_file(tmp_path: Path) -> None:
    project = str(make_project(tmp_path / "p", PROJECT))
    bad = cli(project, "-b", "ray", "--backend-config", "{address: x}")
    assert bad.code == 2 and "--backend-config is not valid JSON" in bad.err
    missing = cli(project, "-b", "ray", "--backend-config", "no-such-file.json")
    assert missing.code == 2 and "neither a JSON object nor a readable file" in missing.err
    assert "Traceback" not in bad.err + missing.err


def test_ray_needs_an_http_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    result = cli(str(make_project(tmp_path / "p", PROJECT)), "-b", "ray")
    assert result.code == 2
    assert "dashboard's http address" in result.err and "hint:" in result.err


def test_unreachable_cluster_closes_the_record_as_failed(tmp_path: Path) -> None:
    config = tmp_path / "ray.json"
    config.write_text(json.dumps({"address": "http://127.0.0.1:9"}))  # discard port: refused
    result = cli(str(make_project(tmp_path / "p", PROJECT)), "-b", "ray",
                 "--backend-config", str(config))  # fmt: skip
    assert result.code == 125
    assert "cannot reach the Ray dashboard at http://127.0.0.1:9" in result.err
    record = last_record()
    assert record["status"] == "FAILED" and "127.0.0.1:9" in record["reason"]
    assert record["backend_config"] == {"address": "http://127.0.0.1:9"}


def test_credentials_in_the_backend_config_stay_out_of_the_record(tmp_path: Path) -> None:
    config = {"address": "http://me:secret@127.0.0.1:9", "headers": {"Authorization": "t0ken"}}
    result = cli(str(make_project(tmp_path / "p", PROJECT)), "-b", "ray",
                 "--backend-config", json.dumps(config))  # fmt: skip
    assert result.code == 125
    stored = json.dumps(last_record())
    assert "secret" not in stored and "t0ken" not in stored
    assert last_record()["backend_config"]["headers"] == {"Authorization": "<redacted>"}


def _job(tmp_path: Path, lock_name: str | None, lock_text: str | None, **config: object) -> Job:
    return Job("0" * 32, ("python", "x.py"), Launch(("python", "x.py"), {}), tmp_path,
               tmp_path / "run", "virtualenv", lock_name, lock_text, 1.0, config)  # fmt: skip


def test_a_pylock_becomes_exact_pins_in_the_jobs_runtime_env(tmp_path: Path) -> None:
    pins = ["numpy==2.1.3; python_version >= '3.11'", "six==1.16.0"]
    assert ray_package.requirements_from_lock("pylock.toml", PYLOCK) == pins
    env = ray_package.runtime_env(_job(tmp_path, "pylock.toml", PYLOCK), "gcs://p.zip", {})
    assert env["pip"] == {"packages": pins} and env["working_dir"] == "gcs://p.zip"
    uv = ray_package.runtime_env(
        _job(tmp_path, "requirements.txt", "six==1.16.0  # pinned\n", installer="uv"), "u", {}
    )
    assert uv["uv"] == {"packages": ["six==1.16.0"]}
    local = ray_package.runtime_env(_job(tmp_path, None, None), "gcs://p.zip", {})
    assert "pip" not in local and "uv" not in local


def test_runtime_env_extras_cannot_replace_what_run_project_sets(tmp_path: Path) -> None:
    job = _job(tmp_path, None, None, runtime_env={"working_dir": "s3://elsewhere"})
    with pytest.raises(BackendError, match=r"runtime_env\.working_dir is set by run-project"):
        ray_package.runtime_env(job, "gcs://p.zip", {})


def test_environments_ray_cannot_rebuild_yet_are_refused(tmp_path: Path) -> None:
    job = Job("0" * 32, ("x",), Launch(("docker", "run"), {}), tmp_path, tmp_path, "docker")
    with pytest.raises(BackendError, match="docker environment cannot be reproduced on Ray"):
        ray_package.runtime_env(job, "gcs://p.zip", {})


def test_package_is_the_same_for_the_same_project_and_leaves_out_git(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"a.py": "x = 1\n", ".git/HEAD": "ref\n"})
    first = ray_package.build_package(_job(project, None, None), [])
    second = ray_package.build_package(_job(project, None, None), [])
    assert first == second  # unchanged project: same name, uploaded once
    names = zipfile.ZipFile(io.BytesIO(first[1])).namelist()
    assert "a.py" in names and ".run-project/job.py" in names
    assert not any(n.startswith(".git/") for n in names)


def test_log_splitter_hides_the_results_block_even_across_polls() -> None:
    splitter = results.LogSplitter("t0k")
    shown = splitter.feed("epoch 1\n")
    shown += splitter.feed("no newline")
    shown += splitter.feed("\n@@run-pro")  # maybe our marker: held back
    shown += splitter.feed("ject:t0k:begin@@\nQUJD\n")
    shown += splitter.feed("@@run-project:t0k:end@@\n", final=True)
    assert shown == "epoch 1\nno newline"
    assert splitter.block is not None and results.decode_block(splitter.block) == b"ABC"


def test_user_output_that_looks_like_a_marker_prefix_is_still_shown() -> None:
    splitter = results.LogSplitter("t0k")
    assert splitter.feed("@@ not ours\nnext") == "@@ not ours\nnext"
    assert splitter.feed("\n@@", final=True) == "\n@@"


def _archive(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buffer.getvalue()


def test_results_that_escape_the_run_directory_are_refused_and_named(tmp_path: Path) -> None:
    data = _archive({"../../escaped.txt": b"x", "outputs/kept.txt": b"k"})
    (tmp_path / "run").mkdir()
    block = base64.b64encode(data).decode()
    returned = results.unpack(results.decode_block(block), tmp_path / "run", tmp_path)
    assert not (tmp_path / "escaped.txt").exists()
    assert returned.refused == ["../../escaped.txt"]
    assert (tmp_path / "run" / "outputs" / "kept.txt").read_text() == "k"


def test_a_logged_name_that_climbs_out_is_refused_and_the_rest_lands_in_logged(
    tmp_path: Path,
) -> None:
    """A hostile job's archive: `logged/../x` would land in the run directory beside logged/
    (tarfile's data filter allows it: it stays inside the directory unpacked into)."""
    stored = json.dumps({"type": "stored", "name": "logged/docs/ok.txt", "size": 2})
    data = _archive({"logged/../x": b"canary", "logged/../workdir/sneaked": b"canary",
                     "logged/docs/ok.txt": b"ok", "events.jsonl": stored.encode() + b"\n",
                     "manifest.json": json.dumps({"exit_code": 0, "skipped": []}).encode()})  # fmt: skip
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    returned = results.unpack(data, run_dir, tmp_path)
    assert sorted(returned.refused) == ["logged/../workdir/sneaked", "logged/../x"]
    assert not (run_dir / "x").exists() and not (run_dir / "workdir").exists()
    assert not list(tmp_path.rglob("x")) and not list(tmp_path.rglob("sneaked"))
    assert (run_dir / "logged" / "docs" / "ok.txt").read_text() == "ok"
    assert returned.files == ["events.jsonl", "logged/docs/ok.txt"]
    assert "unsafe names refused: logged/../x" in returned.note()


MLFLOW_CALLS = """\
import json, os, urllib.request
uri, token = os.environ["MLFLOW_TRACKING_URI"], os.environ["MLFLOW_TRACKING_TOKEN"]
run = os.environ["MLFLOW_RUN_ID"]
def call(method, path, body, kind="application/json"):
    request = urllib.request.Request(uri + path, data=body, method=method, headers={
        "Authorization": "Bearer " + token, "Content-Type": kind})
    return urllib.request.urlopen(request).read()
call("POST", "/api/2.0/mlflow/runs/log-metric", json.dumps(
    {"run_id": run, "key": "loss", "value": 0.5, "timestamp": 1, "step": 2}).encode())
call("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/" + run + "/artifacts/docs/notes.txt",
     b"notes" * int(os.environ.get("REPEAT", "1")), "application/octet-stream")
print("experiment", os.environ["MLFLOW_EXPERIMENT_NAME"])
"""


def _run_wrapper(
    tmp_path: Path, limit: int, env: dict[str, str], script: str = MLFLOW_CALLS
) -> tuple[str, results.Returned]:
    """The job wrapper as a cluster runs it: in the unzipped working-dir package, with the
    MLflow endpoint it ships; its log is split and unpacked as the Ray backend does."""
    import subprocess
    import sys

    project = make_project(tmp_path / "p", {"log.py": script})
    _, package = ray_package.build_package(_job(project, None, None), [])
    workdir = tmp_path / "cluster"
    zipfile.ZipFile(io.BytesIO(package)).extractall(workdir)
    spec = {"run_id": "r" * 32, "argv": ["python", "log.py"], "token": "t0k",
            "max_result_bytes": limit, "experiment": "churn", "run_name": "brave-owl"}  # fmt: skip
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RUN_PRO"))}
    proc = subprocess.run([sys.executable, ".run-project/job.py"], cwd=workdir, text=True,
                          capture_output=True, timeout=60,
                          env={**child_env, **env, "RUN_PROJECT_JOB_SPEC": json.dumps(spec)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    splitter = results.LogSplitter("t0k")
    shown = splitter.feed(proc.stdout, final=True)
    assert splitter.block is not None, proc.stdout
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return shown, results.unpack(results.decode_block(splitter.block), run_dir, project)


def test_the_job_wrapper_serves_mlflow_and_brings_back_what_was_logged(tmp_path: Path) -> None:
    shown, returned = _run_wrapper(tmp_path, 1 << 20, {})
    assert "experiment churn" in shown
    run_dir = tmp_path / "run"
    assert (run_dir / "logged" / "docs" / "notes.txt").read_text() == "notes"
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert {"type": "stored", "name": "logged/docs/notes.txt", "size": 5} in events
    assert any(e.get("type") == "metric" and e.get("key") == "loss" for e in events)
    # What ran on the cluster: the program as found on the job's PATH, and the interpreter.
    assert returned.ran["argv"][0] == shutil.which("python") and returned.ran["argv"][1:] == [
        "log.py"
    ]
    assert returned.ran["python"] and returned.ran["host"]


def test_logged_files_over_the_result_limit_are_skipped_and_named(tmp_path: Path) -> None:
    _, returned = _run_wrapper(tmp_path, 200_000, {"REPEAT": "100000"})  # 500 kB of notes
    assert returned.skipped == ["logged/docs/notes.txt"]
    assert not (tmp_path / "run" / "logged").exists()
    assert "logged/docs/notes.txt" in returned.note()


def test_the_jobs_own_tracking_uri_wins_over_the_endpoint(tmp_path: Path) -> None:
    own = f"file://{tmp_path / 'own'}"
    script = "import os; env = os.environ\nprint('uri', env['MLFLOW_TRACKING_URI'], 'MLFLOW_RUN_ID' in env)\n"
    shown, _ = _run_wrapper(tmp_path, 1 << 20, {"MLFLOW_TRACKING_URI": own}, script)
    assert f"uri {own} False" in shown
    assert not (tmp_path / "run" / "logged").exists()
