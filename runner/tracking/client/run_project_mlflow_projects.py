"""`mlflow.projects.run` (and `mlflow.run`, the same function) inside a run-project run start
run-project: each call is a run-project run of the project, recorded as a child of this run
(docs/tracking.md#workflows).

Loaded by the finder in sitecustomize.py when the run's Python code imports `mlflow.projects`;
a run that never imports MLflow never loads it. The call keeps MLflow's signature and its
answer: a `SubmittedRun` whose `run_id` is the child's run-project id; with
`synchronous=True` it waits and raises MLflow's `ExecutionException` if the child failed. An
option with no run-project equivalent is refused with an `ExecutionException` naming it.
Stdlib only, besides the MLflow that imported it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess

from mlflow.exceptions import ExecutionException  # type: ignore[import-not-found, unused-ignore]
from mlflow.projects.submitted_run import (  # type: ignore[import-not-found, unused-ignore]
    SubmittedRun,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

RUNNER = "RUN_PROJECT_RUNNER"  # run-project's argv, as JSON (runner/run.py, _child_env)
ID_FD = "RUN_PROJECT_ID_FD"  # the pipe run-project writes the new run's id to
BACKENDS = ("local", "ray", "slurm")  # run-project's own; MLflow's "local" is the same

_logger = logging.getLogger("mlflow.projects")
_started: list[RunProjectRun] = []


def patch(projects: Any) -> None:
    """Replace `run` in the freshly executed `mlflow.projects` (before `mlflow` binds
    `mlflow.run` to it)."""
    run.__doc__ = (projects.run.__doc__ or "") + "\n\n" + (__doc__ or "")
    projects.run = run


def run(  # MLflow's signature, argument for argument
    uri: str,
    entry_point: str = "main",
    version: str | None = None,
    parameters: dict[str, Any] | None = None,
    docker_args: dict[str, Any] | None = None,
    experiment_name: str | None = None,
    experiment_id: str | None = None,
    backend: str = "local",
    backend_config: dict[str, Any] | str | None = None,
    storage_dir: str | None = None,
    synchronous: bool = True,
    run_id: str | None = None,
    run_name: str | None = None,
    env_manager: str | None = None,
    build_image: bool = False,
    docker_auth: dict[str, Any] | None = None,
) -> RunProjectRun:
    _refuse(backend, storage_dir=storage_dir, run_id=run_id, build_image=build_image,
            docker_auth=docker_auth)  # fmt: skip
    argv = [*_runner(), str(uri), "-e", str(entry_point)]
    if version is not None:
        argv += ["--version", str(version)]
    for name, value in (parameters or {}).items():
        argv += ["-P", f"{name}={value}"]
    if env_manager is not None:
        argv += ["--env-manager", str(env_manager)]
    argv += ["--backend", backend]
    if backend_config:
        config = backend_config if isinstance(backend_config, str) else json.dumps(backend_config)
        argv += ["--backend-config", config]
    argv += _docker_options(docker_args or {})
    argv += ["--experiment", _experiment(experiment_name, experiment_id)]
    if run_name is not None:
        argv += ["--run-name", str(run_name)]
    submitted = RunProjectRun(argv)
    if synchronous:
        _wait_for(submitted)
    return submitted


def _refuse(backend: str, **options: Any) -> None:
    """Options run-project has no equivalent for, named in MLflow's exception."""
    if backend not in BACKENDS:
        raise ExecutionException(
            f"mlflow.projects.run(backend={backend!r}) is not supported inside a run-project "
            f"run: each call is a run-project run, on one of its backends ({', '.join(BACKENDS)})"
            "; use backend='local', or 'ray'/'slurm' with backend_config as run-project's "
            "--backend-config"
        )
    defaults = {"storage_dir": None, "run_id": None, "build_image": False, "docker_auth": None}
    for name, value in options.items():
        if value != defaults[name]:
            raise ExecutionException(
                f"mlflow.projects.run({name}={value!r}) is not supported inside a run-project "
                f"run: run-project has no equivalent ({_WHY[name]}); leave it out"
            )


_WHY = {
    "storage_dir": "a path parameter is given as a local path, never downloaded",
    "run_id": "run-project creates the child run, recorded with this run as its parent",
    "build_image": "a docker image is rebuilt only when what it is built from changes",
    "docker_auth": "docker uses the registry logins of `docker login`",
}


def _docker_options(docker_args: dict[str, Any]) -> list[str]:
    """MLflow's docker_args as run-project's -A: {name: True} → -A name, {name: v} → -A name=v."""
    options: list[str] = []
    for name, value in docker_args.items():
        if value is True:
            options += ["-A", str(name)]
        elif value is not False and value is not None:
            options += ["-A", f"{name}={value}"]
    return options


def _experiment(name: str | None, exp_id: str | None) -> str:
    """The child's experiment, by name: the one given, else the active experiment (as MLflow
    chooses), else this run's."""
    if name is not None:
        return str(name)
    import mlflow  # type: ignore[import-not-found, unused-ignore]

    if exp_id is not None:  # an id MLflow does not know raises MLflow's own error
        return str(mlflow.tracking.MlflowClient().get_experiment(str(exp_id)).name)
    try:
        from mlflow.tracking.fluent import (  # type: ignore[import-not-found, unused-ignore]
            _get_experiment_id,
        )

        active = _get_experiment_id()
        if active is not None:
            return str(mlflow.tracking.MlflowClient().get_experiment(str(active)).name)
    except Exception:  # MLflow's private helper moved or the lookup failed: this run's
        pass
    return os.environ.get("RUN_PROJECT_EXPERIMENT") or "Default"


def _runner() -> list[str]:
    if RUNNER not in os.environ:
        raise ExecutionException(
            "mlflow.projects.run cannot start a run-project run here: run-project is not at "
            "hand inside a docker container or a cluster job; start each step with its own "
            "`run-project` command from a pipeline on the submitting machine, or run this "
            "project with --env-manager local, virtualenv or conda"
        )
    try:
        argv = json.loads(os.environ[RUNNER])
    except ValueError as exc:
        raise ExecutionException(
            f"mlflow.projects.run: ${RUNNER} is missing or damaged ({exc}), so run-project "
            "cannot be started from this run; run the step with run-project directly"
        ) from None
    return [str(part) for part in argv]


class RunProjectRun(SubmittedRun):  # type: ignore[misc, unused-ignore]
    """A run-project child run, as MLflow's `SubmittedRun`: `run_id`, `wait()`,
    `get_status()`, `cancel()`."""

    def __init__(self, argv: list[str]) -> None:
        read, write = os.pipe()
        env = dict(os.environ)
        env[ID_FD] = str(write)
        _logger.info("=== Running run-project: %s ===", " ".join(argv[3:]))
        try:
            self._proc = subprocess.Popen(argv, env=env, pass_fds=(write,))
        except OSError as exc:
            os.close(read)
            raise ExecutionException(
                f"mlflow.projects.run: cannot start run-project ({argv[0]}): {exc}; is this "
                "run inside a container or on a cluster worker, where run-project is not "
                "installed? Run the step with run-project directly"
            ) from None
        finally:
            os.close(write)
        self._id_pipe: int | None = read
        self._run_id: str | None = None
        if not _started:
            atexit.register(_wait_all)
        _started.append(self)

    @property
    def run_id(self) -> str | None:
        """The child's run id, once run-project has recorded it (None if it failed before)."""
        if self._id_pipe is not None:
            with os.fdopen(self._id_pipe, "rb") as pipe:  # EOF if it exits before recording
                self._run_id = pipe.readline().decode().strip() or None
            self._id_pipe = None
        return self._run_id

    def wait(self) -> bool:
        """Wait for the child run; True if it finished successfully."""
        return self._proc.wait() == 0

    def get_status(self) -> str:
        """RUNNING, FINISHED, FAILED or KILLED, as MLflow spells them."""
        code = self._proc.poll()
        if code is None:
            return "RUNNING"
        if code == 0:
            return "FINISHED"
        return "KILLED" if code < 0 or code in (130, 143) else "FAILED"

    def cancel(self) -> None:
        """Stop the child run (run-project records it KILLED)."""
        if self._proc.poll() is None:
            self._proc.terminate()
        self._proc.wait()

    @property
    def exit_code(self) -> int | None:
        return self._proc.poll()


def _wait_for(submitted: RunProjectRun) -> None:
    """As MLflow: wait, cancel on Ctrl-C, raise ExecutionException if the run failed."""
    try:
        succeeded = submitted.wait()
    except KeyboardInterrupt:
        submitted.cancel()
        raise
    run_id = submitted.run_id
    if succeeded:
        _logger.info("=== Run (ID '%s') succeeded ===", run_id)
        return
    where = (
        "its record says why (`run-project runs show`)"
        if run_id
        else "run-project stopped before recording it; its message is above"
    )
    raise ExecutionException(
        f"Run (ID '{run_id}') failed: run-project exited with code {submitted.exit_code}; " + where
    )


def _wait_all() -> None:
    """As MLflow's local runs: a process does not end before the runs it started."""
    for submitted in _started:
        submitted.wait()
