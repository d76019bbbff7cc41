"""What every environment kind provides (pre-commit's `language` idea: one module per kind)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypedDict, TypeVar

from runner import cache
from runner.progress import Progress
from runner.project.manifest import EnvSpec
from runner.sources.checkout import Checkout

if TYPE_CHECKING:  # a run opens the store itself; only `envs gc` hands one to a kind
    from runner.tracking.store import Store

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
    #: Set when the command does not see this machine's files (a container): where it sees
    #: the run's directories, {its path: "workdir" | "outputs"}. Paths in its events are
    #: read only inside those (tracking/foreign.py).
    view: Mapping[str, str] | None = None
    #: The kind already put the command behind the run's MLflow endpoint where it runs (docker:
    #: inside the container), or it cannot be; else run.py wraps it on this machine.
    wrapped: bool = False


class KindOptions(TypedDict, total=False):
    """Per-run options from the command line. Each kind reads the ones it knows and ignores
    the rest, as MLflow ignores -A for a project that is not a docker project."""

    docker_args: tuple[str, ...]  # -A NAME[=VALUE]
    allow_docker_volumes: bool
    allow_host_env: bool
    channel_alias: str | None  # --channel-alias (conda)


class EnvRow(NamedTuple):
    """One cached environment (or a thing a kind keeps outside the cache), as `envs list`
    shows it."""

    key: str
    kind: str
    size: int
    last_used: float
    projects: list[str]
    python: str | None
    path: str


class PackInto(NamedTuple):
    """Where `pack` writes: `top` is the copy of the project being packed, `files` its
    bundle directory (`.run-project-bundle/`), where bundled packages go."""

    top: Path
    files: Path
    with_deps: bool


class Packed(NamedTuple):
    """What a kind put in the bundle: its lock file's name (None: no lock) and, with
    --with-deps, the packages it downloaded ({name, version, file, sha256, ...})."""

    lock_name: str | None = None
    files: tuple[dict[str, str], ...] = ()


class EnvKind(Protocol):
    """An environment kind. `cache.py` owns locking and markers; a kind builds and runs, and
    answers for what only it knows: its command-line options, what it keeps outside the
    cache (`envs list|gc`) and how its lock is packed (`pack`)."""

    name: str
    #: False for kinds with nothing to build (local); the cache is skipped for them.
    builds: bool
    #: True when a build made in a staging directory still works after being renamed.
    relocatable: bool

    def configured(self, options: KindOptions) -> EnvKind:
        """This kind for one run, with the options it knows from `options` (a fresh
        instance when it keeps per-run state)."""
        ...

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

    def inventory(self) -> list[EnvRow]:
        """`envs list`: what the kind keeps outside the cache directory (docker: images)."""
        ...

    def remove(self, entry: Path) -> list[str] | None:
        """`envs gc`: remove a cache entry of this kind unless a run uses it (None then);
        returns a line for each thing of it that had to stay (docker: an image in use)."""
        ...

    def collect(self, store: Store, dry_run: bool) -> list[str]:
        """`envs gc`: remove what runs that are over left outside the cache (docker: the
        containers of killed runs); one line per thing removed (or, dry, to remove)."""
        ...

    def pack_lock(
        self, spec: EnvSpec, checkout: Checkout, into: PackInto, progress: Progress
    ) -> Packed:
        """`pack` for this machine: write the lock of the environment (built here if
        needed) into the bundle, with its packages when `into.with_deps`."""
        ...

    def foreign_lock(
        self, spec: EnvSpec, checkout: Checkout, into: PackInto, platform: str, progress: Progress
    ) -> Packed:
        """`pack --platform` for another platform (a conda subdir name): the same, resolved
        for `platform` without building anything here."""
        ...


K = TypeVar("K")


class KindDefaults:
    """The hooks of a kind with no options, nothing outside its cache entries and no lock
    to pack; a kind overrides what it has."""

    name: str

    def configured(self: K, options: KindOptions) -> K:
        return self

    def inventory(self) -> list[EnvRow]:
        return []

    def remove(self, entry: Path) -> list[str] | None:
        return [] if cache.try_remove(entry.parent, entry) else None

    def collect(self, store: Store, dry_run: bool) -> list[str]:
        return []

    def pack_lock(
        self, spec: EnvSpec, checkout: Checkout, into: PackInto, progress: Progress
    ) -> Packed:
        return Packed()

    def foreign_lock(
        self, spec: EnvSpec, checkout: Checkout, into: PackInto, platform: str, progress: Progress
    ) -> Packed:
        # Nothing of this kind depends on the platform: packed as for this machine.
        return self.pack_lock(spec, checkout, into, progress)
