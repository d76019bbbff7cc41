"""What every environment kind provides (pre-commit's `language` idea: one module per kind)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from runner.progress import Progress
from runner.project.manifest import EnvSpec
from runner.sources.checkout import Checkout

# A project's own lock files, in the order one wins over the other.
LOCK_FILES = ("pylock.toml", "uv.lock")
# Files that make a project without a declared environment a virtualenv project (what
# python_inputs reads): kept here so a local run can look for them without loading the parser.
PYTHON_FILES = ("requirements.txt", "pyproject.toml", *LOCK_FILES)


class EnvLock(NamedTuple):
    """What a build produced: the lock file text to record with the run, and facts about it."""

    lock_name: str | None = None
    lock_text: str | None = None
    facts: Mapping[str, Any] = MappingProxyType({})


class Launch(NamedTuple):
    """How to start a command inside an environment."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    #: Called once the command has ended, however it ended (docker: remove the container).
    cleanup: Callable[[], None] | None = None


class EnvKind(Protocol):
    """An environment kind. `cache.py` owns locking and markers; a kind only builds and runs."""

    name: str
    #: False for kinds with nothing to build (local); the cache is skipped for them.
    builds: bool
    #: True when a build made in a staging directory still works after being renamed.
    relocatable: bool

    def key(self, spec: EnvSpec, checkout: Checkout) -> str:
        """Hash of everything that decides the environment's contents."""
        ...

    def build(self, spec: EnvSpec, checkout: Checkout, into: Path, progress: Progress) -> EnvLock:
        """Create the environment in `into` (a fresh directory)."""
        ...

    def healthy(self, env_dir: Path) -> bool:
        """True if the built environment at `env_dir` still works."""
        ...

    def command(
        self, env_dir: Path | None, argv: tuple[str, ...], env: Mapping[str, str]
    ) -> Launch:
        """The argv and environment variables that run `argv` inside this environment."""
        ...
