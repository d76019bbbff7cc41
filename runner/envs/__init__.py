"""The registry of environment kinds, and the choice of kind for a run.

Adding a kind: one module with a class satisfying `EnvKind`, one entry in `KIND_CLASSES`
and one in the type-checked list above it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from runner import cache, settings
from runner.envs.base import PYTHON_FILES, EnvKind, EnvLock
from runner.errors import EnvError, UsageError
from runner.progress import Progress
from runner.project.manifest import EnvSpec
from runner.registry import Registry
from runner.sources.checkout import Checkout

if TYPE_CHECKING:
    from runner.envs.conda.kind import CondaEnv
    from runner.envs.docker.kind import DockerEnv
    from runner.envs.local import LocalEnv
    from runner.envs.python.virtualenv import VirtualenvEnv

    # mypy checks every kind against the Protocol, as an eagerly built dict would.
    _CHECKED: dict[str, EnvKind] = {
        "local": LocalEnv(),
        "virtualenv": VirtualenvEnv(),
        "docker": DockerEnv(),
        "conda": CondaEnv(),
    }

# name → "module:Class" (the same style as backends). A kind's module is imported when a run
# first asks for it, so a local run does not load the docker and virtualenv code (~11 ms of
# every warm start).
KIND_CLASSES: Registry[Callable[[], EnvKind]] = Registry({
    "local": "runner.envs.local:LocalEnv",
    "virtualenv": "runner.envs.python.virtualenv:VirtualenvEnv",
    "docker": "runner.envs.docker.kind:DockerEnv",
    "conda": "runner.envs.conda.kind:CondaEnv",
})  # fmt: skip


def new_kind(name: str) -> EnvKind:
    """A fresh, unconfigured instance of the kind called `name`."""
    return KIND_CLASSES[name]()


# --env-manager spellings (MLflow's) → kind names.
MANAGERS = {
    "local": "local",
    "virtualenv": "virtualenv",
    "uv": "virtualenv",
    "conda": "conda",
    "docker": "docker",
}


def select(env_manager: str | None, declared: EnvSpec, project_dir: Path | None = None) -> EnvKind:
    """The kind for this run: --env-manager if given, else what the manifest declares, else
    what the project's files imply (`default_kind`)."""
    if env_manager is not None and env_manager not in MANAGERS:
        raise UsageError(
            f"unknown --env-manager {env_manager!r}", "choose one of: " + ", ".join(MANAGERS)
        )
    wanted = MANAGERS[env_manager] if env_manager else (declared.kind or "local")
    if not env_manager and not declared.kind and project_dir is not None:
        wanted = default_kind(project_dir)
    if wanted not in KIND_CLASSES:
        raise EnvError(
            f"environment kind '{wanted}' is not available in this version of run-project",
            "run with --env-manager local to use this machine's Python",
        )
    return new_kind(wanted)


def default_kind(project_dir: Path) -> str:
    """A project that declares no environment: `conda.yaml` → conda (as MLflow does); else
    requirements.txt, pyproject dependencies, pylock.toml or uv.lock → virtualenv (MLflow
    would make an empty virtualenv and ignore them; installing them is what the user means);
    else local (an empty virtualenv would only cost time)."""
    if (project_dir / "conda.yaml").is_file():
        return "conda"
    if not any((project_dir / name).exists() for name in PYTHON_FILES):
        return "local"  # the usual case, decided without loading the Python-inputs parser
    from runner.envs.python.inputs import has_python_files

    return "virtualenv" if has_python_files(project_dir) else "local"


class Prepared(NamedTuple):
    """A ready environment: where it is (None for `local`), its cache key and lock."""

    kind: str
    env_dir: Path | None
    key: str | None
    built: bool
    lock: EnvLock

    def to_record(self) -> dict[str, Any]:
        """The `env` section of the run record."""
        return {"kind": self.kind, "key": self.key, "built": self.built,
                "lock_name": self.lock.lock_name, **self.lock.facts}  # fmt: skip


@contextlib.contextmanager
def prepared(
    kind: EnvKind, spec: EnvSpec, checkout: Checkout, progress: Progress
) -> Iterator[Prepared]:
    """Build or reuse the environment through the cache; it stays in use until exit."""
    if not kind.builds:
        yield Prepared(kind.name, None, None, False, EnvLock())
        return
    area = settings.cache_dir() / "envs" / kind.name
    key = kind.key(spec, checkout)
    if _holds_the_lock(area, spec, kind.healthy):
        assert spec.lock_key is not None
        key = spec.lock_key  # a rerun: the env that made the recorded lock is still here

    def build(into: Path) -> dict[str, Any]:
        lock = kind.build(spec, checkout, into, progress)
        return {"kind": kind.name, "lock_name": lock.lock_name, "lock_text": lock.lock_text,
                "facts": dict(lock.facts)}  # fmt: skip

    with cache.use(
        area, key, build, kind.healthy, progress, kind.relocatable, user=checkout.uri
    ) as entry:
        lock = EnvLock(entry.marker.get("lock_name"), entry.marker.get("lock_text"),
                       entry.marker.get("facts") or {})  # fmt: skip
        yield Prepared(kind.name, entry.path, key, entry.built, lock)


def _holds_the_lock(area: Path, spec: EnvSpec, healthy: Callable[[Path], bool]) -> bool:
    """Whether the cache entry that produced a rerun's recorded lock is complete, healthy
    and holds that very lock (so installing it again would build an identical copy)."""
    if (
        spec.lock_file is None
        or not spec.lock_key
        or not re.fullmatch(r"[0-9a-f]{8,64}", spec.lock_key)
    ):
        return False  # an edited record must not name another directory
    marker = cache.read_marker(area / spec.lock_key)
    if marker is None or marker.get("lock_name") != spec.lock_file.name:
        return False
    try:
        recorded = spec.lock_file.read_text()
    except OSError:
        return False
    return marker.get("lock_text") == recorded and healthy(area / spec.lock_key)
