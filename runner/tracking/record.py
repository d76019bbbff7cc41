"""The run record: one JSON document per run, valid against schemas/run-record.schema.json.

This module makes a new one; run_record.RunRecord owns it from then on and writes its steps."""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime  # loaded by sqlite3 on every run anyway
from typing import Any

from runner import __version__

SCHEMA_VERSION = 1
# What platform.system()/release()/machine() and socket.gethostname() return on POSIX,
# without importing either module on every run.
_UNAME = os.uname()
ACTIVE = ("STARTING", "RUNNING")
FINAL = ("FINISHED", "FAILED", "KILLED", "LOST")


def project_relative(path: str, project: str) -> str | None:
    """`path` relative to the project directory when it lies inside it (posix), else None.
    Each run of a git URL has its own working copy: only this form compares across runs."""
    if not project or not os.path.isabs(path):
        return None
    top = project.rstrip("/")
    if path == top:
        return "."
    if not path.startswith(top + "/"):
        return None
    return path[len(top) + 1 :]


def new_run_id() -> str:
    """A random 32-hex-digit id (as MLflow's); users may type any unique prefix."""
    # uuid4's layout from os.urandom directly: importing uuid costs a warm start ~10 ms.
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


def iso(ts: float | None) -> str | None:
    """UTC ISO 8601 with milliseconds, or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_record(
    *,
    experiment: str,
    run_name: str | None,
    source: dict[str, Any],
    entry_point: str,
    command: dict[str, Any],
    params: dict[str, Any],
    env: dict[str, Any],
    backend: str,
    heartbeat_seconds: float,
) -> dict[str, Any]:
    """A record for a run about to start (status STARTING)."""
    now = time.time()
    run_id = new_run_id()
    return {
        "schema_version": SCHEMA_VERSION,
        "id": run_id,
        "experiment": experiment,
        "run_name": run_name or f"{entry_point}-{run_id[:8]}",
        "status": "STARTING",
        "reason": None,
        "exit_code": None,
        "source": source,
        "entry_point": entry_point,
        "command": command,
        "params": params,
        "env": env,
        "backend": backend,
        "runner": {
            "version": __version__,
            "pid": os.getpid(),
            "host": _UNAME.nodename,
            "heartbeat_seconds": heartbeat_seconds,
        },
        "platform": {
            "system": _UNAME.sysname,
            "release": _UNAME.release,
            "machine": _UNAME.machine,
            "python": sys.version.split()[0],
            "python_executable": sys.executable,
        },
        "start_time": iso(now),
        "end_time": None,
        "heartbeat_at": iso(now),
        "logs": {},
    }
