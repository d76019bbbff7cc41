"""One run, top to bottom: source → manifest → params → record → environment → child → record.

Each step is a call into one module. The record is opened before the slow steps, so every
failure after that point ends in a closed record that says why.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import envs, execute, manifest, params, settings, sources
from runner.envs.base import EnvKind
from runner.envs.docker_run import DockerOptions
from runner.errors import RunnerError
from runner.progress import Progress
from runner.sources.checkout import Checkout
from runner.tracking.record import iso, new_record
from runner.tracking.store import SQLiteStore, open_store


@dataclass(frozen=True)
class RunRequest:
    """What the user asked for, as parsed from the command line."""

    uri: str
    entry_point: str = "main"
    version: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    env_manager: str | None = None
    backend: str = "local"
    experiment: str = "Default"
    run_name: str | None = None
    store: str | None = None
    cwd: Path = field(default_factory=Path.cwd)
    docker_args: tuple[str, ...] = ()
    allow_docker_volumes: bool = False
    allow_host_env: bool = False


def run_project(request: RunRequest, progress: Progress) -> int:
    """Run the request; returns the exit code run-project should exit with."""
    checkout = sources.resolve(request.uri, request.version)
    project = manifest.load_project(checkout.path)
    entry = project.entry_point(request.entry_point)
    bound = params.bind(entry.command, entry.params, request.params, checkout.path, request.cwd)
    kind = envs.select(request.env_manager, project.env, checkout.path)
    kind = envs.configure(kind, _docker_options(request))
    if request.backend != "local":
        raise RunnerError(
            f"backend {request.backend!r} is not available in this version", "use --backend local"
        )
    store = open_store(settings.get("store", request.store, checkout.path))
    heartbeat = settings.get_float("heartbeat_seconds", checkout.path)
    record = new_record(
        experiment=request.experiment,
        run_name=request.run_name,
        source=checkout.to_record(),
        entry_point=entry.name,
        command={"template": entry.command, "argv": list(bound.argv), "shell": bound.shell},
        params=bound.params,
        env={"kind": kind.name},
        backend=request.backend,
        heartbeat_seconds=heartbeat,
    )
    store.create_run(record)
    return _execute(store, record, kind, project.env, checkout, bound, progress)


def _execute(
    store: SQLiteStore,
    record: dict[str, Any],
    kind: EnvKind,
    spec: manifest.EnvSpec,
    checkout: Checkout,
    bound: params.BoundCommand,
    progress: Progress,
) -> int:
    run_id = record["id"]
    run_dir = store.artifact_dir(run_id)
    try:
        with (
            _heartbeat(store.root, run_id, float(record["runner"]["heartbeat_seconds"])),
            envs.prepared(kind, spec, checkout, progress) as env,
        ):
            _save_lock(env, run_dir)
            launch = kind.command(env.env_dir, bound.argv, _child_env(run_id, run_dir))
            store.update_run(
                run_id,
                {
                    "status": "RUNNING",
                    "env": env.to_record(),
                    "launch_argv": list(launch.argv),
                    "logs": {
                        "stdout": str(run_dir / "logs" / "stdout.log"),
                        "stderr": str(run_dir / "logs" / "stderr.log"),
                    },
                },
            )
            progress.step(f"run {run_id[:8]} started: {shlex.join(bound.argv)[:200]}")
            try:
                outcome = execute.run_child(
                    launch.argv,
                    checkout.path,
                    launch.env,
                    run_dir / "logs",
                    grace_seconds=settings.get_float("grace_seconds", checkout.path),
                )
            finally:
                if launch.cleanup is not None:
                    launch.cleanup()
    except RunnerError as exc:
        _close(store, run_id, "FAILED", None, exc.message)
        raise
    except execute.Interrupted as exc:
        _close(store, run_id, "KILLED", 128 + exc.signum, f"interrupted by {exc}")
        return 128 + exc.signum
    except BaseException as exc:
        _close(store, run_id, "FAILED", None, f"internal error: {type(exc).__name__}: {exc}")
        raise
    _close(store, run_id, outcome.status, outcome.exit_code, outcome.reason)
    progress.step(f"run {run_id[:8]} {outcome.status} (exit code {outcome.exit_code})")
    return outcome.exit_code


def _close(
    store: SQLiteStore, run_id: str, status: str, code: int | None, reason: str | None
) -> None:
    import time

    store.update_run(
        run_id,
        {"status": status, "exit_code": code, "reason": reason, "end_time": iso(time.time())},
    )


def _save_lock(env: envs.Prepared, run_dir: Path) -> None:
    """Keep the environment's lock file with the run: a rerun rebuilds from it."""
    if env.lock.lock_name and env.lock.lock_text is not None:
        (run_dir / "env").mkdir(parents=True, exist_ok=True)
        (run_dir / "env" / env.lock.lock_name).write_text(env.lock.lock_text)


def _child_env(run_id: str, run_dir: Path) -> dict[str, str]:
    output_dir = run_dir / "outputs"
    output_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        RUN_PROJECT_RUN_ID=run_id,
        RUN_PROJECT_EVENTS=str(run_dir / "events.jsonl"),
        RUN_PROJECT_OUTPUT_DIR=str(output_dir),
    )
    env.setdefault("PYTHONUNBUFFERED", "1")  # logs stream live instead of at exit
    return env


@contextmanager
def _heartbeat(store_root: Path, run_id: str, interval: float) -> Iterator[None]:
    """Beat from a thread with its own connection, through builds and the run alike."""
    stop = threading.Event()

    def beat() -> None:
        store = SQLiteStore(store_root)
        while not stop.wait(interval):
            with contextlib.suppress(RunnerError):  # a missed beat is retried; LOST needs 3
                store.heartbeat(run_id)
        store.close()

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _docker_options(request: RunRequest) -> DockerOptions:
    return DockerOptions(
        docker_args=request.docker_args,
        allow_volumes=request.allow_docker_volumes,
        allow_host_env=request.allow_host_env,
    )
