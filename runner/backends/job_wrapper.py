"""Runs one run-project command on a cluster node and hands its results back.

This file is shipped inside the job's working directory (as `.run-project/job.py`) and run by
whatever Python the cluster has, so it uses the standard library only and no runner import.
It reads its instructions from $RUN_PROJECT_JOB_SPEC (JSON), then:

1. gives the command the same variables as a local run: RUN_PROJECT_RUN_ID, RUN_PROJECT_EVENTS
   and RUN_PROJECT_OUTPUT_DIR (a job-specific directory outside the working dir);
2. runs the command in the job's process group (a backend's stop signal reaches it and every
   process it starts), with stdout/stderr going to the job's log;
3. packs the results (events file, output dir, files created or changed in the working dir)
   as one tar.gz and returns them without a shared disk: base64 lines between two marker
   lines in the log, which the submitting side strips and unpacks. With `results_dir` set
   (a directory both sides see), the archive is written there instead;
4. exits with the command's exit code (128+N when a signal N ended it).
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
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
    env = _child_env(spec, workdir, events, outputs)
    before = _snapshot(workdir)
    code, signum = _run(spec["argv"], env)
    manifest: dict[str, Any] = {"exit_code": code, "signal": signum, "skipped": [],
                                "workdir": workdir, "outputs": outputs}  # fmt: skip
    data = _pack(workdir, before, events, outputs, manifest, int(spec["max_result_bytes"]))
    _hand_back(data, spec)
    return code


def _child_env(spec: dict[str, Any], workdir: str, events: str, outputs: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RUN_PROJECT_JOB_SPEC", None)
    env.update(
        RUN_PROJECT_RUN_ID=spec["run_id"],
        RUN_PROJECT_EVENTS=events,
        RUN_PROJECT_OUTPUT_DIR=outputs,
        PYTHONUNBUFFERED="1",
    )
    client = os.path.join(workdir, ".run-project", "client")
    if os.path.isdir(client):  # the tiny tracking client, when the runner ships one
        env["PYTHONPATH"] = os.pathsep.join(p for p in (client, env.get("PYTHONPATH")) if p)
    return env


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
    events: str,
    outputs: str,
    manifest: dict[str, Any],
    limit: int,
) -> bytes:
    entries: list[tuple[str, str]] = []
    if os.path.isfile(events):
        entries.append((events, "events.jsonl"))
    for rel in sorted(_snapshot(outputs)):
        entries.append((os.path.join(outputs, rel), "outputs/" + rel))
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
