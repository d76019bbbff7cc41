"""Real clusters for the backend tests: a Ray head on 127.0.0.1 and a one-node Slurm whose
daemons run in a network namespace of their own (tests/services/slurm.sh).

Both are started once per test session and stopped by PID at the end. A missing service goes
through `require` (fails the tests that need it under CI, skips them elsewhere).
tests/services/clusters.py is the command line .ci/run uses to start the shared Ray head.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.services import require

SERVICES = Path(__file__).resolve().parent.parent / "services"


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now (held together so they differ)."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [s.getsockname()[1] for s in sockets]
    for sock in sockets:
        sock.close()
    return ports


def ray_binary() -> str | None:
    """`ray` from $RUN_PROJECT_TEST_RAY_BIN, beside this Python, or on PATH."""
    explicit = os.environ.get("RUN_PROJECT_TEST_RAY_BIN")
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else shutil.which("ray")


def http_json(url: str, timeout: float = 5) -> Any:
    """GET url and decode its JSON body."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def ray_head() -> Iterator[str]:
    """A Ray head with every listener on 127.0.0.1; yields the dashboard's http address.

    .ci/run starts one head for the whole suite (both xdist workers share it) and exports
    RUN_PROJECT_TEST_RAY_ADDRESS; otherwise this session starts its own and stops it.
    """
    shared = os.environ.get("RUN_PROJECT_TEST_RAY_ADDRESS")
    if shared:
        yield shared
        return
    ray = ray_binary()
    if ray is None:
        require("ray", "ray is not installed: pip install -e '.[test-ray]' (see .ci/run)")
    # Ray puts unix sockets under --temp-dir: keep the path short (108-byte limit).
    temp = Path(tempfile.mkdtemp(prefix="rp-ray-", dir="/tmp"))
    pid, address = start_ray(ray, temp)
    try:
        yield address
    finally:
        stop_ray(pid, temp)
        if not os.environ.get("RUN_PROJECT_TEST_KEEP_RAY_LOGS"):  # for looking into a failure
            shutil.rmtree(temp, ignore_errors=True)


def start_ray(ray: str, temp: Path) -> tuple[int, str]:
    """Start `ray start --head --block` in its own session; returns its PID and address."""
    dashboard, gcs, client, agent = free_ports(4)
    argv = [ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--port={gcs}",
            f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
            f"--temp-dir={temp}", "--num-cpus=2", "--include-dashboard=true",
            "--disable-usage-stats"]  # fmt: skip
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    # Jobs run `python` from the head's PATH: the interpreter that has Ray.
    env["PATH"] = f"{Path(ray).parent}{os.pathsep}{env.get('PATH', '')}"
    for key in ("RUN_PROJECT_STORE", "RUN_PROJECT_CACHE", "RAY_ADDRESS", "PYTHONPATH"):
        env.pop(key, None)
    with open(temp / "head.log", "wb") as log:
        proc = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=temp,
        )  # fmt: skip
    address = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_for_dashboard(address, proc, temp / "head.log")
    except BaseException:
        stop_ray(proc.pid, temp)
        raise
    (temp / "head.pid").write_text(str(proc.pid))
    return proc.pid, address


def _wait_for_dashboard(address: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError, ValueError):
            http_json(address + "/api/version", timeout=2)
            return
        time.sleep(0.5)
    pytest.fail(f"the Ray dashboard did not come up:\n{log.read_text()[-3000:]}")


def stop_ray(pid: int, temp: Path) -> None:
    """SIGTERM `ray start --block` (it stops its processes), then any straggler of ours."""
    ours = _processes_of(pid, str(temp))
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        alive = [p for p in {pid, *ours, *_processes_of(pid, str(temp))} if _alive(p)]
        if not alive:
            break
        if time.monotonic() > deadline - 30:  # ten seconds of grace, then SIGKILL
            for p in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
        time.sleep(0.5)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it when it is our child


def _processes_of(session: int, marker: str) -> list[int]:
    """PIDs in the head's session, or whose command line names its temp dir."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            sid = os.getsid(pid)
        except (OSError, ProcessLookupError):
            continue
        if pid != os.getpid() and (sid == session or marker in cmdline):
            found.append(pid)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, ProcessLookupError):
        return False


def slurm_ready(env: dict[str, str]) -> bool:
    """True when `sinfo` reaches a controller with an idle or mixed node."""
    try:
        result = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                                text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and any(
        s in result.stdout for s in ("idle", "mixed", "allocated")
    )


@contextlib.contextmanager
def slurm_cluster() -> Iterator[str]:
    """SLURM_CONF of a running one-node Slurm: the one .ci/run started, else our own."""
    existing = os.environ.get("SLURM_CONF")
    if existing and slurm_ready(dict(os.environ)):
        yield existing
        return
    if shutil.which("slurmctld") is None or shutil.which("munged") is None:
        require("slurm", "Slurm is not installed: apt-get install slurm-wlm munge iproute2")
    if os.geteuid() != 0:
        require("slurm", "starting a local Slurm needs root (slurmd runs jobs as their user)")
    state = Path(tempfile.mkdtemp(prefix="rp-slurm-", dir="/tmp"))
    script = str(SERVICES / "slurm.sh")
    started = subprocess.run(["bash", script, "start", str(state)], capture_output=True,
                             text=True, timeout=120)  # fmt: skip
    try:
        if started.returncode != 0:
            pytest.fail(f"could not start Slurm:\n{started.stdout}\n{started.stderr}")
        yield str(state / "slurm.conf")
    finally:
        subprocess.run(["bash", script, "stop", str(state)], capture_output=True, timeout=60)
        shutil.rmtree(state, ignore_errors=True)
