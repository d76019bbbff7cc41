"""The registry of environment kinds, and the choice of kind for a run.

Adding a kind: one module with a class satisfying `EnvKind`, one entry in `KINDS`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import cache, settings
from runner.envs.base import EnvKind, EnvLock
from runner.envs.conda import CondaEnv
from runner.envs.docker import DockerEnv, DockerOptions
from runner.envs.local import LocalEnv
from runner.envs.virtualenv import VirtualenvEnv
from runner.errors import EnvError
from runner.manifest import EnvSpec
from runner.progress import Progress
from runner.sources.checkout import Checkout

KINDS: dict[str, EnvKind] = {
    "local": LocalEnv(),
    "virtualenv": VirtualenvEnv(),
    "docker": DockerEnv(),
}
KINDS["conda"] = CondaEnv()
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
        raise EnvError(
            f"unknown --env-manager {env_manager!r}", "choose one of: " + ", ".join(MANAGERS)
        )
    wanted = MANAGERS[env_manager] if env_manager else (declared.kind or "local")
    if not env_manager and not declared.kind and project_dir is not None:
        wanted = default_kind(project_dir)
    if wanted not in KINDS:
        raise EnvError(
            f"environment kind '{wanted}' is not available in this version of run-project",
            "run with --env-manager local to use this machine's Python",
        )
    return KINDS[wanted]


def default_kind(project_dir: Path) -> str:
    """A project that declares no environment: `conda.yaml` → conda (as MLflow does); else
    requirements.txt, pyproject dependencies, pylock.toml or uv.lock → virtualenv (MLflow
    would make an empty virtualenv and ignore them; installing them is what the user means);
    else local (an empty virtualenv would only cost time)."""
    from runner.envs.python_inputs import has_python_files

    if (project_dir / "conda.yaml").is_file():
        return "conda"
    return "virtualenv" if has_python_files(project_dir) else "local"


@dataclass(frozen=True)
class Prepared:
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
    key = kind.key(spec, checkout)

    def build(into: Path) -> dict[str, Any]:
        lock = kind.build(spec, checkout, into, progress)
        return {"kind": kind.name, "lock_name": lock.lock_name, "lock_text": lock.lock_text,
                "facts": lock.facts}  # fmt: skip

    area = settings.cache_dir() / "envs" / kind.name
    with cache.use(
        area, key, build, kind.healthy, progress, kind.relocatable, user=checkout.uri
    ) as entry:
        lock = EnvLock(entry.marker.get("lock_name"), entry.marker.get("lock_text"),
                       entry.marker.get("facts") or {})  # fmt: skip
        yield Prepared(kind.name, entry.path, key, entry.built, lock)


def configure(kind: EnvKind, docker: DockerOptions) -> EnvKind:
    """The kind for one run, with what the command line allowed (docker only; others ignore
    it, as MLflow ignores -A for non-docker projects)."""
    if isinstance(kind, DockerEnv):
        return kind.configured(docker)
    return kind
