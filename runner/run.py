"""One run, top to bottom: source → manifest → params → record → environment → child → record.

Each step is a call into one module. The record is opened before the slow steps, so every
failure after that point ends in a closed record that says why.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from runner import backends, envs, execute, pids, settings, sources
from runner.backends.base import Backend, Job
from runner.envs.base import EnvKind, KindOptions, Launch
from runner.errors import RunnerError
from runner.progress import Progress
from runner.project import manifest, params
from runner.sources.checkout import Checkout
from runner.tracking.run_record import RunRecord
from runner.tracking.store import open_store
from runner.tracking.tracker import Tracker


class RunRequest(NamedTuple):
    """What the user asked for, as parsed from the command line."""

    uri: str
    entry_point: str = "main"
    version: str | None = None
    params: Mapping[str, str] = MappingProxyType({})
    env_manager: str | None = None
    backend: str = "local"
    experiment: str = "Default"
    run_name: str | None = None
    store: str | None = None
    cwd: Path | None = None  # None: the current directory
    backend_config: Mapping[str, Any] = MappingProxyType({})
    # Per-run options of the environment kind (-A, --allow-*, --channel-alias); each kind
    # reads the ones it knows (EnvKind.configured). Read only.
    kind_options: KindOptions = KindOptions()
    recurse_submodules: bool = False
    keep_checkout: bool = False


class Repeat(NamedTuple):
    """A rerun (runner/rerun/): the run repeated, the parameter names whose values came from
    its record, and the recorded lock the environment is built from (not re-resolved)."""

    of: str
    carried_params: tuple[str, ...] = ()
    lock_file: Path | None = None
    env_key: str | None = None  # the cache key of the env that made `lock_file`


class RunResult(NamedTuple):
    """The run made and the exit code run-project exits with."""

    run_id: str
    exit_code: int


def run_project(request: RunRequest, progress: Progress) -> int:
    """Run the request; returns the exit code run-project should exit with."""
    checkout = sources.resolve(
        request.uri,
        request.version,
        recurse_submodules=request.recurse_submodules,
        keep=request.keep_checkout,
        precheck=lambda manifest_dir: _precheck(manifest_dir, request),
        progress=progress,
    )
    try:
        return _run_checkout(request, checkout, progress, None).exit_code
    finally:
        checkout.cleanup()  # the per-run working copy of a git URL or archive


def run_checkout(
    request: RunRequest, checkout: Checkout, progress: Progress, repeat: Repeat | None = None
) -> RunResult:
    """Run an already materialised checkout (a rerun's recorded commit + diff); cleans it up."""
    try:
        return _run_checkout(request, checkout, progress, repeat)
    finally:
        checkout.cleanup()


def _precheck(manifest_dir: Path, request: RunRequest) -> None:
    """Type-check parameters against the MLproject read from the git mirror, before any
    working copy is made; the full check runs again on the checkout
    (tests/test_sources_git.py::test_parameters_are_type_checked_before_any_working_copy)."""
    project = manifest.load_project(manifest_dir)
    entry = project.entry_points.get(request.entry_point)
    if entry is not None:
        params.bind(entry.command, entry.params, request.params, manifest_dir, _cwd(request))


def _run_checkout(
    request: RunRequest, checkout: Checkout, progress: Progress, repeat: Repeat | None
) -> RunResult:
    project = manifest.load_project(checkout.path)
    entry = project.entry_point(request.entry_point)
    bound = params.bind(entry.command, entry.params, request.params, checkout.path, _cwd(request))
    for problem in project.problems_beside(entry.name):
        progress.warn(problem)
    if (checkout.path / ".run-project-bundle").is_dir():  # a packed project: check its manifest
        from runner.bundles.platforms import check_project

        check_project(checkout.path, extracted=checkout.kind == "archive")
    spec = project.env
    if repeat is not None and repeat.lock_file is not None:  # built from the recorded lock
        spec = spec._replace(lock_file=repeat.lock_file, lock_key=repeat.env_key)
    kind = envs.select(request.env_manager, project.env, checkout.path)
    kind = kind.configured(request.kind_options)
    backend = backends.select(request.backend, dict(request.backend_config))
    store = open_store(
        settings.get("store", request.store, _config_dir(checkout)),
        settings.get("artifacts", None, _config_dir(checkout)),
    )
    record = RunRecord.new(
        store,
        experiment=request.experiment,
        run_name=request.run_name,
        source=checkout.to_record(),
        entry_point=entry.name,
        template=entry.command,
        argv=bound.argv,
        shell=bound.shell,
        params=bound.params,
        env_kind=kind.name,
        backend=request.backend,
        # A rerun needs it; credentials (auth headers, user:pass@) are never stored.
        backend_config=backends.redacted(dict(request.backend_config)),
        heartbeat_seconds=settings.get_float("heartbeat_seconds", _config_dir(checkout)),
        rerun_of=repeat.of if repeat else None,
        carried=repeat.carried_params if repeat else (),
    )
    record.create()
    with _closed_if_it_fails(record):  # a launcher may cancel as soon as it has the id
        _tell_launcher(record.id)
        _own_processes(record)
        _save_uncommitted(checkout, record.run_dir, progress)
        tracker = _tracker(record, entry, bound, checkout)
    code = _execute(record, kind, spec, checkout, bound, progress, tracker, backend)
    return RunResult(record.id, code)


@contextlib.contextmanager
def _closed_if_it_fails(record: RunRecord) -> Iterator[None]:
    """Any way out but success closes the record, so no run is left to be found LOST: KILLED
    for a signal, FAILED for run-project's error or a bug. The exception goes on (the
    caller's exit code comes from it)."""
    try:
        yield
    except RunnerError as exc:
        record.close("FAILED", None, exc.message)
        raise
    except execute.Interrupted as exc:
        record.close("KILLED", 128 + exc.signum, f"interrupted by {exc}")
        raise
    except BaseException as exc:
        record.close("FAILED", None, f"internal error: {type(exc).__name__}: {exc}")
        raise


def _tell_launcher(run_id: str) -> None:
    """A launcher that started this runner with a pipe in RUN_PROJECT_ID_FD learns the new
    run's id as soon as it is recorded (mlflow.projects.run inside a run: docs/tracking.md,
    "Workflows"). The variable is not passed on to the run's own command."""
    import stat

    value = os.environ.pop("RUN_PROJECT_ID_FD", "")
    if not value.isdigit():
        return
    try:
        if stat.S_ISFIFO(os.fstat(int(value)).st_mode):  # never a terminal or a file by mistake
            os.write(int(value), (run_id + "\n").encode())
            os.close(int(value))
    except OSError:  # a launcher that stopped listening does not stop the run
        pass


def _own_processes(record: RunRecord) -> None:
    """Every process this run starts (builders and the command) carries its id, orphans come
    back to the runner, and the runner's ids are on file: nothing of the run outlives it,
    even if the runner is killed (docs/security.md, processes outlive their run)."""
    os.environ[pids.RUN_TAG] = record.id
    pids.become_subreaper()
    record.run_dir.mkdir(parents=True, exist_ok=True)
    pids.write_session(record.run_dir / pids.SESSION_FILE, record.id)


def _tracker(
    record: RunRecord,
    entry: manifest.EntryPoint,
    bound: params.BoundCommand,
    checkout: Checkout,
) -> Tracker:
    """Automatic capture of this run's inputs, outputs and events (tracking/)."""
    from runner.tracking.capture import CapturePlan, limit_setting

    store, run_dir = record.store, record.run_dir
    plan = CapturePlan(
        workdir=checkout.path,
        output_dir=run_dir / "outputs",
        run_dir=run_dir,
        artifacts_root=store.artifacts_root,
        declared_inputs=entry.inputs,
        declared_outputs=entry.outputs,
        path_params={k: str(v["value"]) for k, v in bound.params.items() if v["type"] == "path"},
        excluded=store.excluded_paths(),
        limit=limit_setting(checkout.path),
    )
    return Tracker(record, plan)


def _config_dir(checkout: Checkout) -> Path | None:
    """Where a project's run-project.toml may be read: only from the user's own directory.
    A fetched repository or archive must not choose the store, the cache or the timeouts."""
    return checkout.path if checkout.kind == "local" else None


def _execute(
    record: RunRecord,
    kind: EnvKind,
    spec: manifest.EnvSpec,
    checkout: Checkout,
    bound: params.BoundCommand,
    progress: Progress,
    tracker: Tracker,
    backend: Backend,
) -> int:
    run_id, run_dir = record.id, record.run_dir
    try:
        with _closed_if_it_fails(record):
            with record.heartbeat(), envs.prepared(kind, spec, checkout, progress) as env:
                _save_lock(env, run_dir)
                inputs = tracker.before(env.env_dir)
                child_env = tracker.child_env(_child_env(record))
                launch = kind.command(env.env_dir, bound.argv, child_env)
                launch = _behind_mlflow_endpoint(launch, remote=backend.name != "local")
                tracker.foreign_view(launch.view, remote=backend.name != "local")
                record.running(
                    inputs,
                    env.to_record(),
                    launch.argv,
                    logs={
                        "stdout": str(run_dir / "logs" / "stdout.log"),
                        "stderr": str(run_dir / "logs" / "stderr.log"),
                    },
                )
                progress.step(f"run {run_id[:8]} started: {shlex.join(bound.argv)[:200]}")
                job = Job(run_id, bound.argv, launch, checkout.path, run_dir, env.kind,
                          env.lock.lock_name, env.lock.lock_text,
                          settings.get_float("grace_seconds", _config_dir(checkout)),
                          record.backend_config)  # fmt: skip
                try:
                    with tracker.live():
                        outcome = backends.drive(backend, job, record.backend_job)
                finally:
                    if launch.cleanup is not None:
                        launch.cleanup()
            tracker.after()
    except execute.Interrupted as exc:  # recorded KILLED
        return 128 + exc.signum
    finally:  # e.g. a build interrupted: whatever its tools left, re-parented to us, ends too
        grace = settings.get_float("grace_seconds", _config_dir(checkout))
        pids.stop_all(pids.run_descendants, grace)
    record.close(outcome.status, outcome.exit_code, outcome.reason)
    progress.step(f"run {run_id[:8]} {outcome.status} (exit code {outcome.exit_code})")
    return outcome.exit_code


def _save_uncommitted(checkout: Checkout, run_dir: Path, progress: Progress) -> None:
    """A dirty local repository's diff and untracked files go with the run (source/)."""
    from runner.sources.local import save_uncommitted

    skipped = save_uncommitted(checkout, run_dir / "source")
    if skipped:
        shown = ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        progress.warn(f"untracked files not saved with the run (links or too large): {shown}")


def _save_lock(env: envs.Prepared, run_dir: Path) -> None:
    """Keep the environment's lock file with the run: a rerun rebuilds from it."""
    if env.lock.lock_name and env.lock.lock_text is not None:
        (run_dir / "env").mkdir(parents=True, exist_ok=True)
        (run_dir / "env" / env.lock.lock_name).write_text(env.lock.lock_text)


def _behind_mlflow_endpoint(launch: Launch, remote: bool) -> Launch:
    """The command with the run's MLflow endpoint (docs/tracking.md, "MLflow projects"): served
    from this process for a command run here, stopped by the launch's cleanup once the
    command has ended; a kind that runs it elsewhere (docker) serves it there itself."""
    if launch.wrapped or not launch.argv:
        return launch
    if remote:
        return _wrapped_for_remote(launch)
    from runner.tracking.mlflow_api.wrap import serve

    serving, env = serve(launch.env)
    if serving is None:  # the user's own MLFLOW_TRACKING_URI wins
        return launch
    return launch._replace(env=env, cleanup=_then(serving.stop, launch.cleanup))


def _then(first: Callable[[], None], second: Callable[[], None] | None) -> Callable[[], None]:
    def both() -> None:
        try:
            first()
        finally:
            if second is not None:
                second()

    return both


def _wrapped_for_remote(launch: Launch) -> Launch:
    """The command started by the endpoint's wrapper. A command that is not found is left as
    it is, so its error stays the usual one."""
    import shutil
    import sys

    from runner.tracking.mlflow_api.launch import wrapped_here

    if shutil.which(launch.argv[0], path=launch.env.get("PATH", os.defpath)) is None:
        return launch
    return launch._replace(argv=wrapped_here(sys.executable, launch.argv))


def _child_env(record: RunRecord) -> dict[str, str]:
    run_dir, document = record.run_dir, record.document()
    output_dir = run_dir / "outputs"
    output_dir.mkdir(parents=True, exist_ok=True)
    from runner.tracking.mlflow_api.wrap import without_parent_endpoint  # loaded for any run

    env = without_parent_endpoint(dict(os.environ))
    env.update(
        RUN_PROJECT_RUNNER=_runner_command(),
        RUN_PROJECT_RUN_ID=record.id,
        RUN_PROJECT_EVENTS=str(run_dir / "events.jsonl"),
        RUN_PROJECT_OUTPUT_DIR=str(output_dir),
        RUN_PROJECT_EXPERIMENT=str(document["experiment"]),
        RUN_PROJECT_RUN_NAME=str(document["run_name"]),
    )
    env.setdefault("PYTHONUNBUFFERED", "1")  # logs stream live instead of at exit
    return env


def _runner_command() -> str:
    """run-project as a run's code starts it again (mlflow.projects.run inside a run,
    tracking/client/run_project_mlflow_projects.py), as JSON: this interpreter, isolated from
    the run's PYTHONPATH and sitecustomize, importing this runner's own code."""
    import json
    import sys

    root = str(Path(__file__).resolve().parent.parent)
    boot = (
        f"import sys; sys.path.insert(0, {root!r}); "
        "from runner.cli.main import main; sys.exit(main())"
    )
    return json.dumps([sys.executable, "-I", "-c", boot])


def _cwd(request: RunRequest) -> Path:
    return request.cwd or Path.cwd()
