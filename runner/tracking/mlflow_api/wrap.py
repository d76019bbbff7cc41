"""Start the endpoint, run the command with MLflow's variables, exit as the command exited.

    python -I -S -c BOOT [--forward-signals] -- COMMAND...      (see `launch.py`)

The command runs in this process's group. On this machine run-project signals the whole
group, so the command already gets Ctrl-C/SIGTERM and this wrapper only waits for it; inside a
container, `docker run --init` signals this process alone, so `--forward-signals` passes them
on. The wrapper exits with the command's code, or dies of the same signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def child_env(uri: str, token: str, experiment: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MLFLOW_TRACKING_URI=uri,
        RUN_PROJECT_MLFLOW_URI=uri,  # the client's exit report compares with it
        MLFLOW_TRACKING_TOKEN=token,
        MLFLOW_RUN_ID=env["RUN_PROJECT_RUN_ID"],
        MLFLOW_EXPERIMENT_ID="0",
        MLFLOW_EXPERIMENT_NAME=experiment,
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
    )
    env.pop("MLFLOW_TRACKING_USERNAME", None)  # basic auth would replace the bearer token
    env.pop("MLFLOW_TRACKING_PASSWORD", None)
    return env


def serve() -> tuple[object, dict[str, str]]:
    """The running endpoint and the command's environment, or (None, env) when the user's own
    MLFLOW_TRACKING_URI wins (docs/tracking.md, "MLflow projects")."""
    events_path = os.environ["RUN_PROJECT_EVENTS"]
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None, dict(os.environ)
    from .server import Endpoint
    from .state import Events, State

    experiment = os.environ.get("RUN_PROJECT_EXPERIMENT") or "Default"
    run_id = os.environ["RUN_PROJECT_RUN_ID"]
    run_name = os.environ.get("RUN_PROJECT_RUN_NAME", "")
    state = State(Events(events_path), run_id, experiment, run_name)
    token = os.urandom(24).hex()
    endpoint = Endpoint(state, token, os.path.join(os.path.dirname(events_path), "logged"))
    endpoint.start()
    return endpoint, child_env(endpoint.uri, token, experiment)


def main(args: list[str]) -> int:
    forward = "--forward-signals" in args[: args.index("--")] if "--" in args else False
    command = args[args.index("--") + 1 :] if "--" in args else args
    endpoint, env = serve()
    try:
        proc = subprocess.Popen(command, env=env)
    except OSError as exc:
        sys.stderr.write(f"run-project: cannot start {command[0]}: {exc.strerror or exc}\n")
        return 127 if isinstance(exc, FileNotFoundError) else 126

    def on_signal(signum: int, _frame: object) -> None:
        if forward:
            proc.send_signal(signum)

    for signum in FORWARDED:
        signal.signal(signum, on_signal)  # a Python handler, reset for the command on exec
    code = proc.wait()
    if endpoint is not None:
        endpoint.stop()  # type: ignore[attr-defined]
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code
