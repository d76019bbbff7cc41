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
from runner.envs.local import LocalEnv
from runner.errors import EnvError
from runner.manifest import EnvSpec
from runner.progress import Progress
from runner.sources.checkout import Checkout

KINDS: dict[str, EnvKind] = {"local": LocalEnv()}
KINDS["conda"] = CondaEnv()
# --env-manager spellings (MLflow's) → kind names.
MANAGERS = {
    "local": "local",
    "virtualenv": "virtualenv",
    "uv": "virtualenv",
    "conda": "conda",
    "docker": "docker",
}


def select(env_manager: str | None, declared: EnvSpec) -> EnvKind:
    """The kind for this run: --env-manager if given, else what the manifest declares."""
    if env_manager is not None and env_manager not in MANAGERS:
        raise EnvError(
            f"unknown --env-manager {env_manager!r}", "choose one of: " + ", ".join(MANAGERS)
        )
    wanted = MANAGERS[env_manager] if env_manager else (declared.kind or "local")
    if wanted not in KINDS:
        raise EnvError(
            f"environment kind '{wanted}' is not available in this version of run-project",
            "run with --env-manager local to use this machine's Python",
        )
    return KINDS[wanted]


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
    with cache.use(area, key, build, kind.healthy, progress, kind.relocatable) as entry:
        lock = EnvLock(entry.marker.get("lock_name"), entry.marker.get("lock_text"),
                       entry.marker.get("facts") or {})  # fmt: skip
        yield Prepared(kind.name, entry.path, key, entry.built, lock)
