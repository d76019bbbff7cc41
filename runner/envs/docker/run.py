"""The `docker run` command line of a run, and what a manifest may not choose on its own.

A manifest may set variables to values it spells out. Mounts (host paths, and named docker
volumes, which hold other containers' data) and host variable passthrough need the person
running it to say so on the command line (`--allow-docker-volumes`, `--allow-host-env`).
Container privileges (`--privileged`, the host network, capabilities) cannot be declared by a
manifest at all, only given with `-A`. Every option is one argv element (`--volume=...`), so
no value can turn into another flag.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from runner.envs.docker import cli as docker_cli
from runner.errors import EnvError, UsageError
from runner.project.manifest import EnvSpec
from runner.tracking.foreign import OUTPUTS, WORKDIR

CONTAINER_DIR = "/run-project"
CONTAINER_WORKDIR = "/project"  # the container's working directory: the project's code image
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ARG_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
RUN_VARIABLES = ("RUN_PROJECT_RUN_ID", "RUN_PROJECT_EVENTS", "RUN_PROJECT_OUTPUT_DIR")
# Where the container sees the run's directories (the project is copied into the image).
CONTAINER_VIEW = MappingProxyType({CONTAINER_WORKDIR: WORKDIR, f"{CONTAINER_DIR}/outputs": OUTPUTS})


@dataclass(frozen=True)
class DockerOptions:
    """What the person running the project allowed or added on the command line."""

    docker_args: tuple[str, ...] = ()
    allow_volumes: bool = False
    allow_host_env: bool = False


def check_manifest(spec: EnvSpec, options: DockerOptions, project_dir: Path) -> list[str]:
    """The manifest's volumes and variables as `docker run` options; refusals name the entry."""
    args = [_volume(entry, options, project_dir) for entry in spec.volumes]
    for name, value in spec.environment:
        if not ENV_NAME.match(name):
            raise EnvError(
                f"docker_env.environment entry {name!r} is not a valid variable name",
                "use letters, digits and _ (not starting with a digit)",
            )
        if value is not None:
            args.append(f"--env={name}={value}")
        elif not options.allow_host_env:
            raise EnvError(
                f"docker_env.environment entry '{name}' asks to copy the host variable {name} "
                "into the container; a manifest may not read this machine's environment",
                "if you trust this project, rerun with --allow-host-env; or give the entry a "
                f"value: [{name}, value]",
            )
        else:
            args.append(f"--env={name}")  # the value comes from the client's environment
    return args


def _volume(entry: str, options: DockerOptions, project_dir: Path) -> str:
    source, sep, rest = entry.partition(":")
    if not sep or not source or not rest or entry.startswith("-"):
        raise EnvError(
            f"docker_env.volumes entry {entry!r} is not SOURCE:DESTINATION[:OPTIONS]",
            "write e.g. `- /data:/data:ro` (host path) or `- cache:/root/.cache` (named volume)",
        )
    named = bool(VOLUME_NAME.match(source))
    if not options.allow_volumes:
        # Named volumes too: they hold what other containers on this machine stored.
        what = f"the docker volume {source}" if named else f"the host path {source}"
        raise EnvError(
            f"docker_env.volumes entry '{entry}' mounts {what} into the container; a "
            "manifest may not choose host mounts",
            "if you trust this project, rerun with --allow-docker-volumes",
        )
    if named:
        return f"--volume={entry}"
    host = Path(os.path.expanduser(source))
    if not host.is_absolute():
        host = project_dir / host
    return f"--volume={host.resolve()}:{rest}"


def user_args(docker_args: tuple[str, ...]) -> list[str]:
    """MLflow's `-A name=value` → `--name=value`, `-A name` → `--name` (one letter: `-n`)."""
    args = []
    for item in docker_args:
        name, sep, value = item.partition("=")
        if not ARG_NAME.match(name):
            raise UsageError(
                f"-A {item!r} is not NAME or NAME=VALUE",
                "write e.g. -A gpus=all or -A privileged (a docker run option without dashes)",
            )
        flag = f"-{name}" if len(name) == 1 else f"--{name}"
        args.append(f"{flag}={value}" if sep else flag)
    return args


def run_argv(
    image_id: str,
    argv: tuple[str, ...],
    env: Mapping[str, str],
    manifest_args: list[str],
    options: DockerOptions,
) -> tuple[list[str], str]:
    """`docker run ...` for this run, and the container's name."""
    run_id = env.get("RUN_PROJECT_RUN_ID", "")
    name = f"run-project-{run_id or os.getpid()}"
    # No --rm: files the command wrote in /project are copied out (`copy_out_changes`) by the
    # launch's cleanup, which then removes the container.
    args = ["docker", "run", "--init", "--sig-proxy=true", f"--name={name}"]
    args += [f"--label={docker_cli.MANAGED_LABEL}=true", f"--label={docker_cli.RUN_LABEL}={run_id}"]
    args += manifest_args
    args += _run_mounts(env)
    if os.getuid() != 0:  # files in the output dir belong to the user, not to root
        args += [f"--user={os.getuid()}:{os.getgid()}", "--env=HOME=/tmp"]
    args += user_args(options.docker_args)
    args += [f"--workdir={CONTAINER_WORKDIR}", image_id, *_behind_mlflow_endpoint(argv, env)]
    return args, name


def _behind_mlflow_endpoint(argv: tuple[str, ...], env: Mapping[str, str]) -> list[str]:
    """The command behind the run's MLflow endpoint, served inside the container on its own
    127.0.0.1 by the image's Python (docs/tracking.md, "MLflow projects"). An image without
    Python (or without sh to look for it) runs the command as it is, and the record says so."""
    if not env.get("RUN_PROJECT_EVENTS"):
        return list(argv)
    from runner.tracking.mlflow_api.launch import wrapped_mounted

    no_python = json_line({"type": "mlflow_warning",
                           "message": "the image has no python: no MLflow endpoint"})  # fmt: skip
    wrapper = wrapped_mounted('"$p"', f"{CONTAINER_DIR}/lib", ())[1:-1]
    script = (
        'for p in python3 python; do if command -v "$p" >/dev/null 2>&1; then '
        f'exec "$p" {" ".join(_sh_quote(a) for a in wrapper)} -- "$@"; fi; done; '
        f'printf \'%s\\n\' {_sh_quote(no_python)} >> "$RUN_PROJECT_EVENTS"; exec "$@"'
    )
    return ["/bin/sh", "-c", script, "run-project", *argv]


def json_line(event: dict[str, str]) -> str:
    import json

    return json.dumps(event, separators=(",", ":"))


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _run_mounts(env: Mapping[str, str]) -> list[str]:
    """The events file and output directory of the run, at fixed paths in the container."""
    args = ["--env=PYTHONUNBUFFERED=1"]
    events = env.get("RUN_PROJECT_EVENTS")
    if events:
        Path(events).parent.mkdir(parents=True, exist_ok=True)
        Path(events).touch()  # else docker would create a directory in its place
        args += [f"--volume={events}:{CONTAINER_DIR}/events.jsonl",
                 f"--env=RUN_PROJECT_EVENTS={CONTAINER_DIR}/events.jsonl"]  # fmt: skip
    outputs = env.get("RUN_PROJECT_OUTPUT_DIR")
    if outputs:
        Path(outputs).mkdir(parents=True, exist_ok=True)
        args += [f"--volume={outputs}:{CONTAINER_DIR}/outputs",
                 f"--env=RUN_PROJECT_OUTPUT_DIR={CONTAINER_DIR}/outputs"]  # fmt: skip
    if env.get("RUN_PROJECT_RUN_ID"):
        args.append(f"--env=RUN_PROJECT_RUN_ID={env['RUN_PROJECT_RUN_ID']}")
    if events:
        args += _mlflow_mounts(env, Path(events).parent)
    args += _client_module(env)
    return args


def _mlflow_mounts(env: Mapping[str, str], run_dir: Path) -> list[str]:
    """The endpoint's code (read-only) and the run's logged/ directory, where it stores what
    the command logs; the run's experiment and name for MLflow's view of the run."""
    from runner.tracking.mlflow_api.launch import MOUNTED, package_dir

    logged = run_dir / "logged"
    logged.mkdir(parents=True, exist_ok=True)
    args = [f"--volume={package_dir()}:{CONTAINER_DIR}/lib/{MOUNTED}:ro",
            f"--volume={logged}:{CONTAINER_DIR}/logged"]  # fmt: skip
    for name in ("RUN_PROJECT_EXPERIMENT", "RUN_PROJECT_RUN_NAME"):
        if env.get(name):
            args.append(f"--env={name}={env[name]}")
    return args


def _client_module(env: Mapping[str, str]) -> list[str]:
    """Directories of run-project's own package on PYTHONPATH (the injected client module),
    mounted read-only so `import run_project_client` works inside the container too."""
    package = Path(__file__).resolve().parents[2]
    mounted: list[str] = []
    args: list[str] = []
    for i, entry in enumerate(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p):
        path = Path(entry).resolve()
        if path == package or package in path.parents:
            target = f"{CONTAINER_DIR}/pythonpath/{i}"
            args.append(f"--volume={path}:{target}:ro")
            mounted.append(target)
    if mounted:
        args.append("--env=PYTHONPATH=" + os.pathsep.join(mounted))
    return args


def copy_out_changes(name: str, workdir: Path) -> list[str]:
    """Copy the files the container added or changed in its working directory (/project)
    into the run's working directory on this machine, where the capture finds them as it does
    for every other kind; returns warnings. Symlinks are never written through."""
    import shutil
    import tempfile

    proc = docker_cli.docker("diff", name, check=False, timeout=60)
    if proc.returncode != 0:
        return [f"files written in the container's working directory were not copied out "
                f"(docker diff: {proc.stderr.strip()[:200]}); write outputs to "
                "$RUN_PROJECT_OUTPUT_DIR instead"]  # fmt: skip
    changed = _changed_files(proc.stdout)
    if not changed:
        return []
    warnings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="run-project-container-") as tmp:
        copied = docker_cli.docker(
            "cp", f"{name}:{CONTAINER_WORKDIR}/.", tmp, check=False, timeout=600
        )
        if copied.returncode != 0:
            return [f"files written in the container's working directory were not copied out "
                    f"(docker cp: {copied.stderr.strip()[:200]})"]  # fmt: skip
        root = os.path.realpath(workdir)
        for rel in changed:
            source, target = Path(tmp, rel), workdir / rel
            if source.is_symlink() or not source.is_file():
                continue
            parent = os.path.realpath(target.parent)
            if target.is_symlink() or not (parent + os.sep).startswith(root + os.sep):
                warnings.append(f"{rel} written in the container was not copied out: its "
                                "place here is a symlink")  # fmt: skip
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    return warnings


def _changed_files(diff: str) -> list[str]:
    """`docker diff` lines `A /project/x` / `C /project/x` → ["x"] (deletions ignored)."""
    found = []
    for line in diff.splitlines():
        change, _, path = line.partition(" ")
        if change in ("A", "C") and path.startswith(CONTAINER_WORKDIR + "/"):
            rel = path[len(CONTAINER_WORKDIR) + 1 :]
            if rel and ".." not in rel.split("/"):
                found.append(rel)
    return found
