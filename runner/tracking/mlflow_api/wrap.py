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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

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


class Serving:
    """The endpoint, served from a thread that imports it while the command already starts:
    the port is bound first, and a client that connects early waits in the listen queue."""

    def __init__(self, events_path: str) -> None:
        import socket
        import threading

        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.uri = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.token = os.urandom(24).hex()
        self.events_path = events_path
        self.experiment = os.environ.get("RUN_PROJECT_EXPERIMENT") or "Default"
        self.endpoint: Any = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="mlflow-endpoint", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            from .server import Endpoint
            from .state import Events, State

            state = State(Events(self.events_path), os.environ["RUN_PROJECT_RUN_ID"],
                          self.experiment, os.environ.get("RUN_PROJECT_RUN_NAME", ""))  # fmt: skip
            logged = os.path.join(os.path.dirname(self.events_path), "logged")
            self.endpoint = Endpoint(state, self.token, logged, self.listener)
        finally:
            self.ready.set()
        self.endpoint.server.serve_forever()

    def stop(self) -> None:
        self.ready.wait(30)
        if self.endpoint is not None:
            self.endpoint.stop()


def serve() -> tuple[Serving | None, dict[str, str]]:
    """The endpoint and the command's environment, or (None, env) when the user's own
    MLFLOW_TRACKING_URI wins (docs/tracking.md, "MLflow projects")."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None, dict(os.environ)
    serving = Serving(os.environ["RUN_PROJECT_EVENTS"])
    return serving, child_env(serving.uri, serving.token, serving.experiment)


def main(args: list[str]) -> int:
    forward = "--forward-signals" in args[: args.index("--")] if "--" in args else False
    command = args[args.index("--") + 1 :] if "--" in args else args
    endpoint, env = serve()
    try:
        proc = subprocess.Popen(command, env=env)
    except OSError as exc:
        sys.stderr.write(f"run-project: cannot start {command[0]}: {exc.strerror or exc}\n")
        # The endpoint's thread must end first: left serving at the interpreter's exit it can
        # turn 126/127 into an abort, 134, where glibc cannot unwind it (a minimal image).
        if endpoint is not None:
            endpoint.stop()
        return 127 if isinstance(exc, FileNotFoundError) else 126

    def on_signal(signum: int, _frame: object) -> None:
        if forward:
            proc.send_signal(signum)

    for signum in FORWARDED:
        signal.signal(signum, on_signal)  # a Python handler, reset for the command on exec
    code = proc.wait()
    if endpoint is not None:
        endpoint.stop()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code
