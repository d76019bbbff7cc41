"""The Ray backend: one run is one Ray job, through the Jobs REST API on the dashboard port.

No Ray import on this side: the API is plain HTTP (`/api/jobs/`, `/api/packages/`), so a
laptop without Ray submits to any cluster. The checkout goes up as a `gcs://` working-dir
package, the environment is rebuilt on the cluster from the run's lock (ray_package.py), and
the command runs under job_wrapper.py, which hands results back through the log
(results.py). The log is followed through Ray's log stream, each byte once (ray_logs.py),
while the job's status is polled (`GET /api/jobs/ID`); Ctrl-C stops the job
(`POST /api/jobs/ID/stop`) and the run ends KILLED.

--backend-config keys: see `OPTIONS` below (the one list; unknown keys are refused).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.backends import results
from runner.backends.base import Job, check_keys
from runner.backends.ray import package as ray_package
from runner.backends.ray.http import Dashboard
from runner.backends.ray.logs import LogFollower
from runner.errors import BackendError
from runner.execute import Outcome

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
# --backend-config keys → what they do: the one list of them (check_keys refuses any other
# key, and its hint names these). Defaults are where each is read.
OPTIONS = {
    "address": "dashboard URL http://HOST:8265 (else $RAY_API_SERVER_ADDRESS / $RAY_ADDRESS)",
    "headers": "HTTP headers sent to the dashboard (never recorded)",
    "num_cpus": "CPUs the entry point needs",
    "num_gpus": "GPUs the entry point needs",
    "memory": "bytes of memory the entry point needs",
    "resources": "custom Ray resources the entry point needs",
    "env_vars": "variables set for the job",
    "excludes": "paths left out of the uploaded working directory",
    "installer": "pip (default) or uv: rebuilds the environment on the cluster",
    "runtime_env": "extra runtime_env fields (conda, image_uri, ...)",
    "python": "the interpreter that starts the job wrapper on the cluster",
    "results_dir": "a directory both sides see: results skip the log",
    "max_result_mb": "most MB of results brought back through the log (64)",
    "poll_seconds": "how often the job's status is asked for (0.5)",
    "submit_timeout": "seconds to wait for the submission to be accepted (120)",
    "retry_seconds": "how long a busy dashboard is retried (30)",
    "log_stream": "false: poll the whole log instead of streaming it (a buffering proxy)",
}
NUMERIC_KEYS = {"num_cpus": "entrypoint_num_cpus", "num_gpus": "entrypoint_num_gpus",
                "memory": "entrypoint_memory"}  # fmt: skip


@dataclass
class _Submitted:
    job: Job
    splitter: results.LogSplitter
    package: str
    info: dict[str, Any]
    follower: LogFollower
    ran: dict[str, Any] = field(default_factory=dict)  # the job's report of what ran


class RayBackend:
    """Submits runs as Ray jobs over HTTP; see the module docstring for the config keys."""

    name = "ray"

    def __init__(self, config: dict[str, Any]) -> None:
        check_keys(self.name, config, tuple(OPTIONS))
        self.config = config
        self.http = Dashboard(config)
        self.address = self.http.address
        self.poll = float(config.get("poll_seconds", 0.5))
        self.stream = _log_stream(config)
        self._jobs: dict[str, _Submitted] = {}

    def _request(self, method: str, path: str, body: bytes | None = None,
                 content_type: str = "application/json") -> tuple[int, bytes]:  # fmt: skip
        return self.http.request(method, path, body, content_type)

    def _json(self, method: str, path: str, payload: Any = None) -> Any:
        return self.http.json(method, path, payload)

    # -- Backend ----------------------------------------------------------------------------
    def submit(self, job: Job) -> str:
        """Upload the working dir (unless the cluster has it), then submit the job."""
        self._json("GET", "/api/version")
        package_name, data = ray_package.build_package(job, _strings(self.config, "excludes"))
        status, _ = self._request("GET", f"/api/packages/gcs/{package_name}")
        if status != 200:
            self._upload(package_name, data)
        token = secrets.token_hex(16)
        submission_id = f"run-project-{job.run_id}"
        env_vars = {**_env_vars(self.config), "PYTHONUNBUFFERED": "1",
                    "RUN_PROJECT_JOB_SPEC": json.dumps(self._spec(job, token))}  # fmt: skip
        request: dict[str, Any] = {
            "entrypoint": f"{shlex.quote(str(self.config.get('python', 'python')))}"
            " .run-project/job.py",
            "submission_id": submission_id,
            "runtime_env": ray_package.runtime_env(job, f"gcs://{package_name}", env_vars),
            "metadata": {"run_project_run_id": job.run_id},
            **_resources(self.config),
        }
        self._post_job(request)
        (job.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        (job.run_dir / "logs" / "stderr.log").touch()  # Ray merges stderr into one log
        # The stream looks for new bytes every interval: live, however slowly status is polled.
        follower = LogFollower(self.http, submission_id, min(self.poll, 0.5), self.stream)
        self._jobs[submission_id] = _Submitted(job, results.LogSplitter(token),
            f"gcs://{package_name}", request["runtime_env"], follower)  # fmt: skip
        return submission_id

    def _post_job(self, request: dict[str, Any]) -> None:
        # A head that has just started answers "No available agent ... try again later"
        # until its node agent registers: retry that for a while, fail on anything else.
        deadline = time.monotonic() + float(self.config.get("submit_timeout", 120))
        while True:
            status, body = self._request("POST", "/api/jobs/", json.dumps(request).encode())
            if status == 200:
                return
            text = body.decode(errors="replace").strip()[-2000:]
            if "try again" not in text or time.monotonic() > deadline:
                raise BackendError(
                    f"Ray refused the job (HTTP {status}): {text}",
                    "check the job and the cluster's dashboard",
                )
            time.sleep(1)

    def _upload(self, package_name: str, data: bytes) -> None:
        status, body = self._request(
            "PUT", f"/api/packages/gcs/{package_name}", data, "application/octet-stream"
        )
        if status != 200:
            raise BackendError(
                f"uploading the project to Ray failed (HTTP {status}): "
                f"{body.decode(errors='replace')[-500:]}",
                "check the cluster's dashboard log; exclude large files with 'excludes'",
            )

    def _spec(self, job: Job, token: str) -> dict[str, Any]:
        return {
            "run_id": job.run_id,
            "argv": _portable_argv(job.argv, job.cwd),
            "token": token,
            "max_result_bytes": int(float(self.config.get("max_result_mb", 64)) * 1024 * 1024),
            "results_dir": self.config.get("results_dir"),
            # The MLflow endpoint beside the job names its experiment and run as a local one.
            "experiment": job.launch.env.get("RUN_PROJECT_EXPERIMENT", "Default"),
            "run_name": job.launch.env.get("RUN_PROJECT_RUN_NAME", ""),
        }

    def describe(self, job_id: str) -> dict[str, Any]:
        """The job id, dashboard address and working-dir package, for the record; once the
        job has ended, also the argv that ran on the cluster (`launch_argv`, its program as
        found there) and the wrapper's interpreter and host."""
        submitted = self._jobs[job_id]
        pins = submitted.info.get("pip") or submitted.info.get("uv") or {}
        facts = {"id": job_id, "address": self.address, "working_dir": submitted.package,
                 "packages": pins.get("packages", [])}  # fmt: skip
        ran = dict(submitted.ran)
        if "argv" in ran:
            facts["launch_argv"] = ran.pop("argv")
        if ran:
            facts["ran"] = ran
        return facts

    def wait(self, job_id: str, timeout: float | None = None) -> Outcome | None:
        """Stream the log until the job ends; bring results back; map the Ray status."""
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        submitted = self._jobs[job_id]
        follower = submitted.follower
        told_at = time.monotonic() + 15  # say so once if the cluster makes us wait
        while True:
            info = self._json("GET", f"/api/jobs/{job_id}")
            if info.get("status") == "PENDING" and time.monotonic() > told_at:
                told_at = float("inf")
                print(f"run-project: Ray job {job_id} is pending: {info.get('message')}",
                      file=sys.stderr, flush=True)  # fmt: skip
            if info.get("status") in TERMINAL:
                self._finish(submitted)
                return _outcome(info, self._collect(submitted))
            if info.get("status") != "PENDING":
                follower.start(info)
                self._show(follower.take(), submitted)
            if time.monotonic() > deadline:
                return None
            # Between two status polls, show the stream's text as soon as it arrives.
            until = time.monotonic() + self.poll
            while (left := until - time.monotonic()) > 0:
                self._show(follower.wait_for(left), submitted)

    def _finish(self, submitted: _Submitted) -> None:
        """The rest of the log of an ended job, exactly once; then close the stream."""
        follower, splitter = submitted.follower, submitted.splitter
        # The job's last lines (the results) are usually on their way already: a moment
        # for the stream to bring them saves fetching the whole log once more.
        settle = time.monotonic() + max(1.0, 4 * follower.interval)
        self._show(follower.take(), submitted)
        while not splitter.complete and follower.streaming:
            if (left := settle - time.monotonic()) <= 0:
                break
            self._show(follower.wait_for(left), submitted)
        if not splitter.complete:
            self._show(follower.rest(), submitted)
        self._show("", submitted, final=True)
        follower.close()

    def _show(self, text: str, submitted: _Submitted, final: bool = False) -> None:
        if not text and not final:
            return
        new = submitted.splitter.feed(text, final=final)
        if new:
            log_path = submitted.job.run_dir / "logs" / "stdout.log"
            with open(log_path, "a", encoding="utf-8", errors="replace") as handle:
                handle.write(new)
            sys.stdout.write(new)
            sys.stdout.flush()

    def _collect(self, submitted: _Submitted) -> results.Returned | None:
        returned = self._unpack(submitted)
        if returned is not None:
            submitted.ran = returned.ran
        return returned

    def _unpack(self, submitted: _Submitted) -> results.Returned | None:
        splitter, run_dir = submitted.splitter, submitted.job.run_dir
        if splitter.block is not None:
            return results.unpack(results.decode_block(splitter.block), run_dir, submitted.job.cwd)
        if splitter.results_file:
            path = Path(str(self.config["results_dir"])) / f"{submitted.job.run_id}.tar.gz"
            returned = results.unpack(path.read_bytes(), run_dir, submitted.job.cwd)
            path.unlink()
            return returned
        return None

    def cancel(self, job_id: str) -> None:
        """Stop the job: Ray sends SIGTERM to its process group, SIGKILL a few seconds later."""
        status, body = self._request("POST", f"/api/jobs/{job_id}/stop")
        if status not in (200, 404):
            print(
                f"run-project: stopping Ray job {job_id} failed: {body[-300:]!r}", file=sys.stderr
            )


def _strings(config: dict[str, Any], key: str) -> list[str]:
    value = config.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BackendError(f"backend config {key} must be a list of strings", f'"{key}": ["..."]')
    return value


def _log_stream(config: dict[str, Any]) -> bool:
    value = config.get("log_stream", True)
    if not isinstance(value, bool):
        raise BackendError("backend config log_stream must be true or false", '"log_stream": false')
    return value


def _env_vars(config: dict[str, Any]) -> dict[str, str]:
    value = config.get("env_vars") or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BackendError("backend config env_vars must map names to strings", '"A": "1"')
    return {str(k): v for k, v in value.items()}


def _resources(config: dict[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = {}
    for key, name in NUMERIC_KEYS.items():
        if key in config:
            if not isinstance(config[key], int | float) or isinstance(config[key], bool):
                raise BackendError(f"backend config {key} must be a number", f'"{key}": 1')
            request[name] = config[key]
    if config.get("resources"):
        request["entrypoint_resources"] = dict(config["resources"])
    return request


def _portable_argv(argv: tuple[str, ...], cwd: Path) -> list[str]:
    # Path parameters inside the project were made absolute on this machine; on the
    # cluster the project is the job's working directory, so make them relative to it.
    prefix = str(cwd)
    return [a.replace(prefix + os.sep, "./") if a != prefix else "." for a in argv]


def _outcome(info: dict[str, Any], returned: results.Returned | None) -> Outcome:
    status = info.get("status")
    note = returned.note() if returned else ""
    skipped = f" ({note})" if note else ""
    code = returned.exit_code if returned else info.get("driver_exit_code")
    if status == "SUCCEEDED":
        return Outcome("FINISHED", 0, note or None)
    if returned and returned.signal:
        name = signal.Signals(returned.signal).name
        return Outcome(
            "KILLED", 128 + returned.signal, f"the command was killed by {name}{skipped}"
        )
    if status == "STOPPED":
        return Outcome("KILLED", int(code or 143), f"the Ray job was stopped{skipped}")
    if code:
        return Outcome("FAILED", int(code), f"the command exited with code {code}{skipped}")
    message = str(info.get("message") or "")[:800]
    return Outcome("FAILED", 1, f"the Ray job failed ({info.get('error_type')}): {message}")
