"""The local backend: the command runs here, as a child process (see execute.py)."""

from __future__ import annotations

from typing import Any

from runner import execute, pids
from runner.backends.base import Job, check_keys
from runner.execute import Outcome


class LocalBackend:
    """Runs the job on this machine; signals are forwarded by execute.run_child itself."""

    name = "local"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        check_keys(self.name, config or {}, ())
        self._jobs: dict[str, Job] = {}

    def submit(self, job: Job) -> str:
        # The child starts in wait(): execute.run_child starts, tees and waits in one call.
        self._jobs[job.run_id] = job
        return job.run_id

    def describe(self, job_id: str) -> dict[str, Any]:
        return {"id": job_id}

    def wait(self, job_id: str, timeout: float | None = None) -> Outcome | None:
        # No timeout needed: run_child stops the child itself (TERM, grace, KILL).
        job = self._jobs[job_id]
        return execute.run_child(
            job.launch.argv,
            job.cwd,
            job.launch.env,
            job.run_dir / "logs",
            grace_seconds=job.grace_seconds,
            started=lambda pid: pids.write_session(
                job.run_dir / pids.SESSION_FILE, job.run_id, command_pid=pid
            ),
        )

    def cancel(self, job_id: str) -> None:
        # run_child forwards SIGINT/SIGTERM to the child's process group itself.
        return None
