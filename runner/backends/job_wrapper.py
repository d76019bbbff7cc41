"""Runs one run-project command on a cluster node and hands its results back.

This file is shipped inside the job's working directory (as `.run-project/job.py`) and run by
whatever Python the cluster has, so it uses the standard library only and no runner import.
It reads its instructions from $RUN_PROJECT_JOB_SPEC (JSON), then:

1. gives the command the same variables as a local run: RUN_PROJECT_RUN_ID, RUN_PROJECT_EVENTS
   and RUN_PROJECT_OUTPUT_DIR (a job-specific directory outside the working dir);
2. serves the run's MLflow tracking endpoint from a thread of this process (the package
   shipped as `.run-project/run_project_mlflow`), and gives the command MLflow's variables,
   unless the job's own MLFLOW_TRACKING_URI is set; what is logged through it becomes events
   in the job's events file and files under the job's `logged/`;
3. runs the command in the job's process group (a backend's stop signal reaches it and every
   process it starts), with stdout/stderr going to the job's log;
4. packs the results (events file, output dir, files the endpoint stored under `logged/`,
   files created or changed in the working dir) with a manifest (exit code, and the
   interpreter and argv that ran) as one tar.gz and returns them without a shared disk:
   base64 lines between two marker lines in the log, which the submitting side strips and
   unpacks. With `results_dir` set (a directory both sides see), the archive is written there
   instead;
5. exits with the command's exit code (128+N when a signal N ended it).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Any

SKIP_DIRS = {".git", ".run-project", "__pycache__"}
LINE = 16384  # base64 characters per log line


def main() -> int:
    """Run the command described by $RUN_PROJECT_JOB_SPEC; return its exit code."""
    spec: dict[str, Any] = json.loads(os.environ["RUN_PROJECT_JOB_SPEC"])
    workdir = os.getcwd()
    job_dir = tempfile.mkdtemp(prefix="run-project-job-")
    events = os.path.join(job_dir, "events.jsonl")
    outputs = os.path.join(job_dir, "outputs")
    os.makedirs(outputs)
    _set_run_variables(spec, events, outputs)
    serving, env = _mlflow_endpoint(workdir)
    env = _child_env(env, workdir)
    before = _snapshot(workdir)
    argv = _resolved(spec["argv"], env)
    code, signum = _run(argv, env)
    if serving is not None:
        serving.stop()  # every call it answered is in the events file and under logged/
    manifest: dict[str, Any] = {"exit_code": code, "signal": signum, "skipped": [],
                                "workdir": workdir, "outputs": outputs, "argv": argv,
                                "python": sys.executable, "host": socket.gethostname()}  # fmt: skip
    areas = {"events": events, "outputs": outputs, "logged": os.path.join(job_dir, "logged")}
    data = _pack(workdir, before, areas, manifest, int(spec["max_result_bytes"]))
    _hand_back(data, spec)
    return code


def _set_run_variables(spec: dict[str, Any], events: str, outputs: str) -> None:
    """This process's environment as a local run's command gets it (the endpoint reads it)."""
    os.environ.pop("RUN_PROJECT_JOB_SPEC", None)
    os.environ.update(
        RUN_PROJECT_RUN_ID=spec["run_id"],
        RUN_PROJECT_EVENTS=events,
        RUN_PROJECT_OUTPUT_DIR=outputs,
        RUN_PROJECT_EXPERIMENT=str(spec.get("experiment") or "Default"),
        RUN_PROJECT_RUN_NAME=str(spec.get("run_name") or ""),
        PYTHONUNBUFFERED="1",
    )


def _mlflow_endpoint(workdir: str) -> tuple[Any, dict[str, str]]:
    """The run's MLflow endpoint served from this process, and the command's environment
    with MLflow's variables; (None, the plain environment) when the job's own
    MLFLOW_TRACKING_URI wins or the runner shipped no endpoint."""
    shipped = os.path.join(workdir, ".run-project")
    if os.environ.get("MLFLOW_TRACKING_URI") or not os.path.isdir(
        os.path.join(shipped, "run_project_mlflow")
    ):
        return None, dict(os.environ)
    sys.path.insert(0, shipped)
    from run_project_mlflow.wrap import Serving, child_env  # type: ignore[import-not-found]

    serving = Serving(os.environ["RUN_PROJECT_EVENTS"])
    return serving, child_env(serving.uri, serving.token, serving.experiment)


def _child_env(env: dict[str, str], workdir: str) -> dict[str, str]:
    client = os.path.join(workdir, ".run-project", "client")
    if os.path.isdir(client):  # the tiny tracking client, when the runner ships one
        env["PYTHONPATH"] = os.pathsep.join(p for p in (client, env.get("PYTHONPATH")) if p)
    return env


def _resolved(argv: list[str], env: dict[str, str]) -> list[str]:
    """argv with its program found on the command's PATH, as the record shows what ran."""
    found = shutil.which(argv[0], path=env.get("PATH", os.defpath)) if argv else None
    return [found, *argv[1:]] if found else list(argv)


def _run(argv: list[str], env: dict[str, str]) -> tuple[int, int | None]:
    received: list[int] = []

    def note(signum: int, frame: object) -> None:
        # The stop signal went to the whole process group, the command included; we only
        # stay alive long enough to hand back what it wrote.
        received.append(signum)

    signal.signal(signal.SIGTERM, note)
    signal.signal(signal.SIGINT, note)
    try:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
    except OSError as exc:
        print(f"run-project: cannot start {argv[0]!r}: {exc}", file=sys.stderr, flush=True)
        return (127 if isinstance(exc, FileNotFoundError) else 126), None
    while True:
        try:
            returncode = proc.wait()
            break
        except InterruptedError:
            continue
    if returncode < 0:
        return 128 - returncode, -returncode
    if received:
        return 128 + received[0], received[0]
    return returncode, None


def _snapshot(root: str) -> dict[str, tuple[int, int]]:
    found: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not os.path.islink(path):  # outputs are never followed through symlinks
                found[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
    return found


def _pack(
    workdir: str,
    before: dict[str, tuple[int, int]],
    areas: dict[str, str],
    manifest: dict[str, Any],
    limit: int,
) -> bytes:
    """The archive: events.jsonl, outputs/, logged/ (what the MLflow endpoint stored),
    workdir/ (created or changed there) and manifest.json; files past `limit` bytes in all
    are left out and named in the manifest's `skipped`."""
    entries: list[tuple[str, str]] = []
    if os.path.isfile(areas["events"]):
        entries.append((areas["events"], "events.jsonl"))
    for area in ("outputs", "logged"):
        root = areas[area]
        for rel in sorted(_snapshot(root)) if os.path.isdir(root) else ():
            entries.append((os.path.join(root, rel), f"{area}/{rel.replace(os.sep, '/')}"))
    after = _snapshot(workdir)
    for rel in sorted(p for p, stat in after.items() if before.get(p) != stat):
        entries.append((os.path.join(workdir, rel), "workdir/" + rel))
    buffer = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path, name in entries:
            size = os.path.getsize(path)
            if total + size > limit:
                manifest["skipped"].append(name)
                continue
            total += size
            tar.add(path, arcname=name, recursive=False)
        info = tarfile.TarInfo("manifest.json")
        blob = json.dumps(manifest).encode()
        info.size, info.mtime = len(blob), int(time.time())
        tar.addfile(info, io.BytesIO(blob))
    return buffer.getvalue()


def _hand_back(data: bytes, spec: dict[str, Any]) -> None:
    token = spec["token"]
    out = sys.stdout
    out.flush()
    results_dir = spec.get("results_dir")
    if results_dir:
        final = os.path.join(results_dir, spec["run_id"] + ".tar.gz")
        with open(final + ".part", "wb") as handle:
            handle.write(data)
        os.replace(final + ".part", final)
        out.write(f"\n@@run-project:{token}:file@@\n")
    else:
        encoded = base64.b64encode(data).decode()
        out.write(f"\n@@run-project:{token}:begin@@\n")
        for start in range(0, len(encoded), LINE):
            out.write(encoded[start : start + LINE] + "\n")
        out.write(f"@@run-project:{token}:end@@\n")
    out.flush()


if __name__ == "__main__":
    sys.exit(main())
