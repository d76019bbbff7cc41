"""Project locations → Checkout: local directories (run in place), git URLs at any revision
(through the mirror cache, into a per-run working copy) and archives (safely extracted).

    resolve(uri, version) ─ uri.parse ─┬─ local dir, no -v ───────── local.resolve_directory
                                       ├─ git URL, local repo + -v ─ remote.from_git
                                       └─ .zip/.tar.gz/.tgz ───────── remote.from_archive

remote.py holds the mirror → working copy and archive → working copy flows.

For git, `precheck` sees a directory holding only the project's MLproject, read from the
mirror, before the working copy is made: parameters are type-checked there, so a bad value
fails before any working copy exists (the fetch into the mirror is needed to learn the
declared types at all).
Held by tests/test_sources_git.py::test_parameters_are_type_checked_before_any_working_copy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from runner.errors import UsageError
from runner.progress import Progress
from runner.sources import uri as uris
from runner.sources.checkout import Checkout
from runner.sources.git import nearest_git, old_git_warning_due, repo_root
from runner.sources.local import resolve_directory

Precheck = Callable[[Path], None]
_warned: list[bool] = []


def resolve(
    uri: str,
    version: str | None = None,
    *,
    recurse_submodules: bool = False,
    keep: bool = False,
    precheck: Precheck | None = None,
    progress: Progress | None = None,
) -> Checkout:
    """Resolve a project location to a Checkout; call its `cleanup()` when the run ends."""
    progress = progress or Progress(quiet=True)
    if version is not None:
        uris.check_revision(version)
    location = uris.parse(uri)
    if location.kind == "archive":
        if version is not None:
            raise UsageError(f"-v/--version {version!r} needs a git source; "
                             f"{location.shown!r} is an archive", "drop -v")  # fmt: skip
        from runner.sources import remote

        return remote.from_archive(location, keep, progress)
    if location.kind == "local":
        base = Path(location.url)
        if _is_bare(base):  # a bare repository named by the user: a git source, like file://
            resolved = str(base.resolve())
            location = uris.Location("git", resolved, resolved, location.subdirectory)
        elif version is None:
            if nearest_git(base.resolve()) is not None:  # git reads its commit and diff
                _warn_old_git(progress)
            return resolve_directory(base / location.subdirectory, uri)
        else:
            location = _local_repo(base, location, version)
    _warn_old_git(progress)
    from runner.sources import remote  # the mirror and working copies: not for a local run

    return remote.from_git(location, version, recurse_submodules, keep, precheck, progress)


def _warn_old_git(progress: Progress) -> None:
    """The old-git advisory, only where git is used. `-q` leaves it out: it is about this
    machine, not the run, unlike the warnings `-q` keeps (docs/sources.md#hardening)."""
    if not _warned and not progress.quiet:
        _warned.append(True)
        message = old_git_warning_due()
        if message:
            progress.warn(message)


def _is_bare(path: Path) -> bool:
    """A bare repository the user named: not a project directory (no MLproject) and not
    inside a work tree, where it could be a repository planted in a project
    (tests/test_sources_hostile.py::test_nested_bare_repository_with_fsmonitor_never_runs)."""
    looks_bare = (
        (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()
    )
    if not looks_bare or any(p.name.lower() == "mlproject" for p in path.iterdir()):
        return False
    return repo_root(path.resolve()) is None


def _local_repo(base: Path, location: uris.Location, version: str) -> uris.Location:
    """`-v REV` on a local repository: fetched into a mirror like any URL, so the user's
    working tree and index are never touched."""
    root = repo_root(base.resolve()) if base.is_dir() else None
    if root is None:
        raise UsageError(
            f"-v/--version {version!r} needs a git source; {location.shown!r} is not in a git "
            "repository",
            "drop -v to run the directory as it is",
        )
    inner = base.resolve().relative_to(root).as_posix()
    sub = "/".join(p for p in (inner, location.subdirectory) if p and p != ".")
    return uris.Location("git", str(root), str(root), sub)
