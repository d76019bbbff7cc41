"""The Slurm backend: one run is one batch job (sbatch), watched with scontrol, stopped with
scancel.

Slurm clusters share a filesystem between the login node and the compute nodes, and this
backend relies on it: the job runs the command inside the environment built here (same
launch argv as a local run), in the checkout, with this process's environment (sbatch
--export=ALL, so RUN_PROJECT_EVENTS and RUN_PROJECT_OUTPUT_DIR point into the run's
directory), and writes its stdout/stderr straight into the run's log files, which are
tailed to the terminal. The batch script is `exec "$@"`: no shell between a value and the
process.

--backend-config keys: partition, time, cpus (per task), gpus, mem, account, qos,
sbatch_args (a list of extra sbatch arguments), poll_seconds.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from runner.backends.base import Job, check_keys
from runner.errors import BackendError
from runner.execute import Outcome

OPTIONS = {"partition": "--partition", "time": "--time", "cpus": "--cpus-per-task",
           "gpus": "--gpus", "mem": "--mem", "account": "--account", "qos": "--qos"}  # fmt: skip
VALUE_RE = re.compile(r"^[A-Za-z0-9_.:,=+/@-]+$")
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "RESIZING",
          "REQUEUED", "STAGE_OUT", "SIGNALING", "STOPPED", "REQUEUE_HOLD"}  # fmt: skip
SCRIPT = '#!/bin/sh\n# run-project: run the entry point argv exactly as given.\nexec "$@"\n'


@dataclass
class _Submitted:
    job: Job
    offsets: dict[str, int]


class SlurmBackend:
    """Submits runs with sbatch; see the module docstring for the config keys."""

    name = "slurm"

    def __init__(self, config: dict[str, Any]) -> None:
        check_keys(self.name, config, (*OPTIONS, "sbatch_args", "poll_seconds"))
        self.options = _options(config)
        self.poll = float(config.get("poll_seconds", 1.0))
        self._jobs: dict[str, _Submitted] = {}

    def submit(self, job: Job) -> str:
        """sbatch the launch argv; logs go straight into the run's directory."""
        logs = job.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        script = job.run_dir / "slurm" / "job.sh"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(SCRIPT)
        argv = ["sbatch", "--parsable", f"--job-name=run-project-{job.run_id[:8]}",
                f"--chdir={job.cwd}", f"--output={logs / 'stdout.log'}",
                f"--error={logs / 'stderr.log'}", "--export=ALL", *self.options,
                str(script), *job.launch.argv]  # fmt: skip
        result = _slurm(argv, env=dict(job.launch.env))
        job_id = result.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise BackendError(f"sbatch printed no job id: {result.stdout!r}", "check sbatch")
        self._jobs[job_id] = _Submitted(job, {"stdout.log": 0, "stderr.log": 0})
        return job_id

    def describe(self, job_id: str) -> dict[str, Any]:
        """The Slurm job id and the sbatch options used."""
        return {"id": job_id, "sbatch_options": list(self.options)}

    def wait(self, job_id: str, timeout: float | None = None) -> Outcome | None:
        """Tail the log files until scontrol says the job ended; map its state."""
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        submitted = self._jobs[job_id]
        told_at = time.monotonic() + 15  # say so once if the queue makes us wait
        while True:
            fields = _job_fields(job_id)
            self._tail(submitted)
            if fields.get("JobState") == "PENDING" and time.monotonic() > told_at:
                told_at = float("inf")
                print(f"run-project: Slurm job {job_id} is pending ({fields.get('Reason')})",
                      file=sys.stderr, flush=True)  # fmt: skip
            if fields.get("JobState") not in ACTIVE:
                time.sleep(0.2)  # the last lines may land just after the state changes
                self._tail(submitted)
                return _outcome(job_id, fields)
            if time.monotonic() > deadline:
                return None
            time.sleep(self.poll)

    def _tail(self, submitted: _Submitted) -> None:
        for name, terminal in (("stdout.log", sys.stdout), ("stderr.log", sys.stderr)):
            path = submitted.job.run_dir / "logs" / name
            try:
                with open(path, "rb") as handle:
                    handle.seek(submitted.offsets[name])
                    chunk = handle.read()
            except FileNotFoundError:
                continue
            submitted.offsets[name] += len(chunk)
            _write(terminal, chunk)

    def cancel(self, job_id: str) -> None:
        """scancel: Slurm sends SIGTERM to the job's processes, SIGKILL after KillWait."""
        _slurm(["scancel", job_id], check=False)


def _options(config: dict[str, Any]) -> list[str]:
    options = []
    for key, flag in OPTIONS.items():
        if key not in config:
            continue
        value = str(config[key])
        if isinstance(config[key], bool) or not VALUE_RE.match(value):
            raise BackendError(
                f"backend config {key} = {config[key]!r} is not a valid Slurm value",
                f'e.g. "{key}": "{"debug" if key == "partition" else "1"}"',
            )
        options.append(f"{flag}={value}")
    extra = config.get("sbatch_args") or []
    if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
        raise BackendError("backend config sbatch_args must be a list of strings", '["--qos=x"]')
    return options + list(extra)


def _slurm(
    argv: Sequence[str], env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            list(argv), env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError as exc:
        raise BackendError(
            f"{argv[0]} is not installed here",
            "run on a Slurm login node (or install slurm-client and set SLURM_CONF)",
        ) from exc
    if check and result.returncode != 0:
        raise BackendError(
            f"{argv[0]} failed: {result.stderr.strip() or result.stdout.strip()}",
            "check --backend-config (partition, time, ...) and `sinfo`",
        )
    return result


def _job_fields(job_id: str) -> dict[str, str]:
    result = _slurm(["scontrol", "show", "job", "-o", job_id], check=False)
    if result.returncode != 0:
        # Slurm forgets finished jobs after MinJobAge; treat that as "ended, unknown".
        return {"JobState": "UNKNOWN", "Reason": result.stderr.strip()}
    fields = {}
    for word in result.stdout.split():
        key, sep, value = word.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def _outcome(job_id: str, fields: dict[str, str]) -> Outcome:
    state = fields.get("JobState", "UNKNOWN")
    code_text, _, sig_text = fields.get("ExitCode", "0:0").partition(":")
    code, signum = int(code_text or 0), int(sig_text or 0)
    if state == "COMPLETED":
        return Outcome("FINISHED", 0)
    if state in ("CANCELLED", "PREEMPTED"):
        return Outcome("KILLED", 128 + (signum or 15), f"Slurm job {job_id} was {state.lower()}")
    if signum:
        return Outcome("KILLED", 128 + signum, f"the command was killed by signal {signum}")
    if state == "FAILED" and code:
        return Outcome("FAILED", code, f"the command exited with code {code}")
    reason = fields.get("Reason", "")
    return Outcome("FAILED", code or 1, f"Slurm job {job_id} ended {state} ({reason})")


def _write(terminal: IO[str], chunk: bytes) -> None:
    if not chunk:
        return
    out = getattr(terminal, "buffer", None)
    try:
        if out is not None:
            out.write(chunk)
            out.flush()
        else:
            terminal.write(chunk.decode(errors="replace"))
        terminal.flush()
    except (OSError, ValueError):
        pass  # the terminal went away; the log files keep everything
