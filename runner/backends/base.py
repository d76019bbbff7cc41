"""What every backend provides, and the one loop that drives any of them.

A backend is where the command runs: this machine, a Ray cluster, a Slurm cluster. run.py
builds a `Job` (the same for every backend) and calls `drive()`; the backend submits it,
streams its logs, waits for it, brings its results back and says how it ended (`Outcome`).
Ctrl-C/SIGTERM to run-project cancels the job on the backend and the run ends KILLED.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from runner.envs.base import Launch
from runner.errors import UsageError
from runner.execute import Interrupted, Outcome


class Job(NamedTuple):
    """One run's command, as every backend receives it.

    `argv` is the command as bound from the entry point (what a remote environment runs);
    `launch` is the same command inside the environment built on this machine (argv and the
    full environment, RUN_PROJECT_* variables included), for backends that share this
    machine's disk. `run_dir` holds logs/, events.jsonl and outputs/ of the run.
    """

    run_id: str
    argv: tuple[str, ...]
    launch: Launch
    cwd: Path
    run_dir: Path
    env_kind: str
    lock_name: str | None = None
    lock_text: str | None = None
    grace_seconds: float = 10.0
    config: Mapping[str, Any] = MappingProxyType({})


class Backend(Protocol):
    """Where a run executes. Each method is short; `drive()` owns the order and the signals."""

    name: str

    def submit(self, job: Job) -> str:
        """Start the job; returns the backend's id for it."""
        ...

    def describe(self, job_id: str) -> dict[str, Any]:
        """Facts about the submitted job for the run record (id, address, ...)."""
        ...

    def wait(self, job_id: str, timeout: float | None = None) -> Outcome | None:
        """Stream logs until the job ends, bring its results back, say how it ended.

        With a timeout, None when the job has not ended by then.
        """
        ...

    def cancel(self, job_id: str) -> None:
        """Ask the backend to stop the job (its processes get SIGTERM, later SIGKILL)."""
        ...


def drive(backend: Backend, job: Job, on_submitted: Callable[[dict[str, Any]], object]) -> Outcome:
    """Submit, wait; on Ctrl-C/SIGTERM cancel the job, wait for it to stop: KILLED.

    `on_submitted` gets the backend's facts about the job once submitted, and again once it
    ended if they changed (a remote job reports the argv that ran there: `launch_argv`)."""
    job_id = backend.submit(job)
    submitted = backend.describe(job_id)
    on_submitted(submitted)
    try:
        return _waited(backend, job, job_id)
    finally:
        ended = backend.describe(job_id)
        if ended != submitted:
            on_submitted(ended)


def _waited(backend: Backend, job: Job, job_id: str) -> Outcome:
    try:
        outcome = backend.wait(job_id)
        assert outcome is not None  # no timeout: wait() returns only when the job ended
        return outcome
    except Interrupted as exc:
        backend.cancel(job_id)
        # Logs and whatever results the job left come back too. A cluster may take the
        # stop request without acting on it yet (Ray: a job still waiting for resources):
        # run-project does not hang on it, and the record says so.
        timeout = max(10.0, 3 * job.grace_seconds)
        stopped = backend.wait(job_id, timeout=timeout)
        name = signal.Signals(exc.signum).name
        reason = f"stopped by {name} sent to run-project; {backend.name} job {job_id} was cancelled"
        if stopped is None:
            reason += f", but had not stopped after {timeout:.0f}s: check it on the cluster"
        return Outcome("KILLED", 128 + exc.signum, reason)


def check_keys(backend: str, config: Mapping[str, Any], known: tuple[str, ...]) -> None:
    """Refuse --backend-config keys the backend does not know (a typo must not be ignored)."""
    for key in config:
        if key not in known:
            import difflib  # only on this error path

            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UsageError(
                f"--backend-config key {key!r} is not a {backend} option",
                f"{hint}{backend} options: {', '.join(known) or 'none'}",
            )
