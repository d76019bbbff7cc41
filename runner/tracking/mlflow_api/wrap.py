"""The run's MLflow endpoint: `Serving` (in the runner for the kinds that run on this machine,
in the job wrapper beside a cluster job), and the wrapper that serves it where run-project
itself does not run, starts the command and exits as the command exited (docker):

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
    from collections.abc import Mapping
    from typing import Any

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def child_env(uri: str, token: str, experiment: str) -> dict[str, str]:
    """This process's environment with the endpoint's variables (the wrapper's command)."""
    return with_endpoint(os.environ, uri, token, experiment)


def with_endpoint(base: Mapping[str, str], uri: str, token: str, experiment: str) -> dict[str, str]:
    env = dict(base)
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


# What `with_endpoint` sets for the command, as a run started from inside a
# run inherits it.
ENDPOINT_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_RUN_ID",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
    "RUN_PROJECT_MLFLOW_URI",
)


def without_parent_endpoint(env: dict[str, str]) -> dict[str, str]:
    """`env` without the endpoint of the run this runner was started from (a workflow's step,
    docs/tracking.md#workflows): the step logs into its own run, not its parent's. A tracking
    URI the project chose itself is kept (it wins, as for any run)."""
    served = env.get("RUN_PROJECT_MLFLOW_URI")
    if served and env.get("MLFLOW_TRACKING_URI") == served:
        for name in ENDPOINT_VARIABLES:
            env.pop(name, None)
    return env


class Serving:
    """The endpoint of one run, in this process. Made cheaply before the command starts: a
    bound 127.0.0.1 listener, a token, and a thread waiting for the first connection. Only
    then does the thread import the HTTP server and serve, so a run that never talks to
    MLflow pays a socket and a thread (a client that connects early waits in the listen
    queue meanwhile). `env` gives the run's id, experiment and name (default: os.environ).
    """

    def __init__(self, events_path: str, env: Mapping[str, str] | None = None) -> None:
        import _socket  # the C module: `socket` itself costs a warm run ~2 ms of enum setup
        import threading

        env = os.environ if env is None else env
        self.events_path = events_path
        self.run_id = env["RUN_PROJECT_RUN_ID"]
        self.experiment = env.get("RUN_PROJECT_EXPERIMENT") or "Default"
        self.run_name = env.get("RUN_PROJECT_RUN_NAME", "")
        self._raw: Any = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        self._raw.bind(("127.0.0.1", 0))
        self._raw.listen(64)
        self.uri = f"http://127.0.0.1:{self._raw.getsockname()[1]}"
        self.token = os.urandom(24).hex()
        self.endpoint: Any = None
        self._lock = threading.Lock()
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        self.thread = threading.Thread(target=self._serve, name="mlflow-endpoint", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import select

        select.select([self._raw, self._wake_r], [], [])
        with self._lock:
            if self._stopping:
                return
            try:
                self.endpoint = self._endpoint()
            except BaseException:
                self._raw.close()  # clients are refused instead of waiting for ever
                raise
        # Polled 20 times a second, so stop() waits 50 ms at most, not serve_forever's 0.5 s.
        self.endpoint.server.serve_forever(poll_interval=0.05)

    def _endpoint(self) -> Any:
        import socket

        from .server import Endpoint
        from .state import Events, State

        listener = socket.socket(fileno=self._raw.detach())
        state = State(Events(self.events_path), self.run_id, self.experiment, self.run_name)
        logged = os.path.join(os.path.dirname(self.events_path), "logged")
        return Endpoint(state, self.token, logged, listener)

    def stop(self) -> None:
        """Stop serving (once the command has ended): every request under way is answered,
        every event it made is written, before this returns."""
        with self._lock:
            self._stopping = True
            endpoint = self.endpoint
        os.write(self._wake_w, b"x")
        if endpoint is not None:
            endpoint.stop()
            endpoint.state.events.close()
        self.thread.join(30)
        self._raw.close()  # a no-op once the server took the socket over
        os.close(self._wake_r)
        os.close(self._wake_w)


def serve(env: Mapping[str, str] | None = None) -> tuple[Serving | None, dict[str, str]]:
    """The endpoint and the command's environment (`env`, default os.environ, with MLflow's
    variables), or (None, env) when the user's own MLFLOW_TRACKING_URI wins
    (docs/tracking.md, "MLflow projects")."""
    env = os.environ if env is None else env
    if env.get("MLFLOW_TRACKING_URI"):
        return None, dict(env)
    serving = Serving(env["RUN_PROJECT_EVENTS"], env)
    return serving, with_endpoint(env, serving.uri, serving.token, serving.experiment)


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
