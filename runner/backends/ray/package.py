"""What a Ray job is made of: the working-dir package and the runtime_env.

The checkout is zipped (deterministically, so an unchanged project is uploaded once) with
run-project's job wrapper as `.run-project/job.py`, the tracking client as
`.run-project/client/` and the MLflow endpoint as `.run-project/run_project_mlflow/` (the job
wrapper serves it beside the command), and uploaded as a `gcs://` package the
way Ray's own job client does. The environment is reproduced on the cluster from the run's
lock: a `pylock.toml` (PEP 751) or requirements lock becomes runtime_env `pip` (or `uv`) with
exact pins, so the cluster installs what the local build resolved.

Hook for the environment kinds: a kind's `EnvLock(lock_name, lock_text)` reaches `Job`
unchanged. `requirements_from_lock()` is the one place that turns a lock into pins; a new lock
format (conda's, a Docker image) adds a branch there or in `runtime_env()` (`conda`,
`image_uri`).
"""

from __future__ import annotations

import hashlib
import io
import os
import tomllib
import zipfile
from collections.abc import Iterator
from fnmatch import fnmatch
from importlib import resources
from pathlib import Path
from typing import Any

from runner.backends.base import Job
from runner.errors import BackendError
from runner.tracking.mlflow_api.launch import MOUNTED, package_dir

ALWAYS_EXCLUDED = (".git", ".run-project", "__pycache__")
# Ray's GCS rejects packages at its gRPC message limit (512 MiB); stay well under.
MAX_PACKAGE_BYTES = 500 * 1024 * 1024
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def build_package(job: Job, excludes: list[str]) -> tuple[str, bytes]:
    """The package name (`_run_project_pkg_<hash>.zip`) and its bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, rel in _project_files(job.cwd, excludes):
            _add(archive, rel, path.read_bytes(), path.stat().st_mode)
        wrapper = resources.files("runner.backends").joinpath("job_wrapper.py").read_bytes()
        _add(archive, ".run-project/job.py", wrapper, 0o644)
        for rel, blob in _client_files():
            _add(archive, f".run-project/client/{rel}", blob, 0o644)
        for rel, blob in _mlflow_endpoint_files():
            _add(archive, f".run-project/{MOUNTED}/{rel}", blob, 0o644)
    data = buffer.getvalue()
    if len(data) > MAX_PACKAGE_BYTES:
        raise BackendError(
            f"the project {job.cwd} zips to {len(data) >> 20} MiB, over Ray's package limit",
            'leave data out with --backend-config \'{"excludes": ["data/*"]}\'',
        )
    return f"_run_project_pkg_{hashlib.sha256(data).hexdigest()[:32]}.zip", data


def _project_files(root: Path, excludes: list[str]) -> Iterator[tuple[Path, str]]:
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in ALWAYS_EXCLUDED and not _excluded(base / d, root, excludes)
        )
        for name in sorted(filenames):
            path = base / name
            if path.is_symlink() or not path.is_file() or _excluded(path, root, excludes):
                continue  # links are not followed out of the project
            yield path, path.relative_to(root).as_posix()


def _excluded(path: Path, root: Path, excludes: list[str]) -> bool:
    rel = path.relative_to(root).as_posix()
    return any(fnmatch(rel, pattern) or fnmatch(path.name, pattern) for pattern in excludes)


def _add(archive: zipfile.ZipFile, name: str, data: bytes, mode: int) -> None:
    info = zipfile.ZipInfo(name, ZIP_EPOCH)  # fixed dates: same content, same hash
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (mode & 0o777 | 0o100000) << 16
    archive.writestr(info, data)


def _client_files() -> Iterator[tuple[str, bytes]]:
    """The stdlib-only tracking client (runner/tracking/client/), if this runner has one."""
    client = Path(__file__).resolve().parents[2] / "tracking" / "client"
    if not client.is_dir():
        return
    for path in sorted(client.rglob("*.py")):
        yield path.relative_to(client).as_posix(), path.read_bytes()


def _mlflow_endpoint_files() -> Iterator[tuple[str, bytes]]:
    """The stdlib-only MLflow endpoint (runner/tracking/mlflow_api/), imported by the job
    wrapper under the name a container mounts it as."""
    root = Path(package_dir())
    for path in sorted(root.glob("*.py")):
        yield path.name, path.read_bytes()


def requirements_from_lock(lock_name: str | None, lock_text: str | None) -> list[str]:
    """Exact pins from the run's lock: `name==version` lines for pip/uv on the cluster."""
    if not lock_name or lock_text is None:
        return []
    if lock_name.endswith(".toml"):
        return _pins_from_pylock(lock_name, lock_text)
    lines = (line.split("#", 1)[0].strip() for line in lock_text.splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def _pins_from_pylock(lock_name: str, text: str) -> list[str]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BackendError(
            f"the run's lock {lock_name} is not valid TOML: {exc}", "rebuild the environment"
        ) from exc
    pins = []
    for package in data.get("packages", []):
        name, version = package.get("name"), package.get("version")
        if not name or not version:
            continue  # a local/VCS package has no version to pin; the working dir carries it
        marker = package.get("marker")
        pins.append(f"{name}=={version}" + (f"; {marker}" if marker else ""))
    return pins


def runtime_env(job: Job, package_uri: str, env_vars: dict[str, str]) -> dict[str, Any]:
    """The job's runtime_env: working dir, variables, and the environment from the lock."""
    if job.env_kind not in ("local", "virtualenv"):
        raise BackendError(
            f"a {job.env_kind} environment cannot be reproduced on Ray yet",
            "use --env-manager virtualenv (its lock is installed on the cluster), or "
            "--env-manager local with runtime_env conda/image_uri in --backend-config",
        )
    config = job.config
    env: dict[str, Any] = {"working_dir": package_uri, "env_vars": env_vars}
    pins = requirements_from_lock(job.lock_name, job.lock_text)
    if pins:
        installer = str(config.get("installer", "pip"))
        if installer not in ("pip", "uv"):
            raise BackendError(
                f"backend config installer {installer!r} is not pip or uv", "use pip or uv"
            )
        env[installer] = {"packages": pins}
    extra = config.get("runtime_env") or {}
    if not isinstance(extra, dict):
        raise BackendError("backend config runtime_env must be an object", "e.g. {}")
    for key, value in extra.items():
        if key in env:
            raise BackendError(
                f"backend config runtime_env.{key} is set by run-project itself",
                f"remove runtime_env.{key}; use env_vars or the project's lock instead",
            )
        env[key] = value  # e.g. conda, image_uri, or a pip list when there is no lock
    return env
