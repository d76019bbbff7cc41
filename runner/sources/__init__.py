"""Project locations → Checkout: local directories (run in place), git URLs at any revision
(through the mirror cache, into a per-run working copy) and archives (safely extracted).

    resolve(uri, version) ─ uri.parse ─┬─ local dir, no -v ─────────── local.resolve_directory
                                       ├─ git URL, or local repo + -v ─ mirror → workcopy
                                       └─ .zip/.tar.gz/.tgz ─────────── archive → workcopy

For git, `precheck` sees a directory holding only the project's MLproject, read from the
mirror, before the working copy is made: parameters are type-checked there (ADVERSARIAL 1),
so a bad value fails before any working copy exists (the fetch into the mirror is needed to
learn the declared types at all).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from runner.errors import SourceError
from runner.progress import Progress
from runner.sources import mirror, workcopy
from runner.sources import uri as uris
from runner.sources.checkout import Checkout
from runner.sources.git import old_git_warning, repo_root
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
            raise SourceError(f"-v/--version {version!r} needs a git source; "
                              f"{location.shown!r} is an archive", "drop -v")  # fmt: skip
        return _archive(location, keep, progress)
    _warn_old_git(progress)
    if location.kind == "local":
        base = Path(location.url)
        if _is_bare(base):  # a bare repository named by the user: a git source, like file://
            resolved = str(base.resolve())
            location = uris.Location("git", resolved, resolved, location.subdirectory)
        elif version is None:
            return resolve_directory(base / location.subdirectory, uri)
        else:
            location = _local_repo(base, location, version)
    return _git(location, version, recurse_submodules, keep, precheck, progress)


def _warn_old_git(progress: Progress) -> None:
    if not _warned:
        _warned.append(True)
        message = old_git_warning()
        if message:
            progress.warn(message)


def _is_bare(path: Path) -> bool:
    """A bare repository the user named: not a project directory (no MLproject) and not
    inside a work tree, where it could be a repository planted in a project (ADVERSARIAL 15)."""
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
        raise SourceError(
            f"-v/--version {version!r} needs a git source; {location.shown!r} is not in a git "
            "repository",
            "drop -v to run the directory as it is",
        )
    inner = base.resolve().relative_to(root).as_posix()
    sub = "/".join(p for p in (inner, location.subdirectory) if p and p != ".")
    return uris.Location("git", str(root), str(root), sub)


def _git(
    location: uris.Location,
    version: str | None,
    recurse: bool,
    keep: bool,
    precheck: Precheck | None,
    progress: Progress,
) -> Checkout:
    sub = location.subdirectory
    with mirror.opened(location.url, location.shown, version, progress) as found:
        workcopy.check_subdirectory(found.path, found.commit, sub, location.shown)
        if precheck is not None:
            import tempfile  # a git run only; a local run's start-up does not pay for it

            with tempfile.TemporaryDirectory(prefix="run-project-manifest-") as tmp:
                if workcopy.preview_manifest(found.path, found.commit, sub, Path(tmp)):
                    precheck(Path(tmp))
        work = workcopy.new_dir(keep)
        try:
            workcopy.export(found.path, found.commit, work)
        except BaseException:
            workcopy.remove(work)
            raise
    try:
        if recurse:  # after the lock is released: a submodule may share this very mirror
            from runner.sources import submodules

            submodules.fetch_all(found.path, found.commit, location.url, work, progress)
        path = _inside(work, sub, location.shown)
    except BaseException:
        workcopy.remove(work)
        raise
    return Checkout(path=path, uri=location.shown, kind="git", commit=found.commit,
                    subdirectory=sub, version=version,
                    cleanup=_cleanup(work, keep, progress))  # fmt: skip


def _inside(work: Path, sub: str, shown: str) -> Path:
    path = work / sub if sub else work
    if not workcopy.inside(path, work) or not path.is_dir():
        raise SourceError(
            f"subdirectory {sub!r} of {shown} is not a directory inside the project",
            "name a real directory of the repository after '#'",
        )
    return path


def _cleanup(work: Path, keep: bool, progress: Progress) -> Callable[[], None]:
    def cleanup() -> None:
        if keep:
            progress.step(f"kept the working copy at {work}")
        else:
            workcopy.remove(work)

    return cleanup


def _archive(location: uris.Location, keep: bool, progress: Progress) -> Checkout:
    from runner.sources import archive  # tarfile, zipfile, urllib: only when needed

    work = workcopy.new_dir(keep)
    download = work.with_name(work.name + ".download")
    try:
        file = _archive_file(location, download, progress)
        digest = archive.sha256(file)
        archive.extract(file, location.shown, work)
        path = _inside(archive.project_root(work), location.subdirectory, location.shown)
    except BaseException:
        workcopy.remove(work)
        raise
    finally:
        workcopy.remove(download)
    return Checkout(path=path, uri=location.shown, kind="archive",
                    subdirectory=location.subdirectory, archive_sha256=digest,
                    cleanup=_cleanup(work, keep, progress))  # fmt: skip


def _archive_file(location: uris.Location, download: Path, progress: Progress) -> Path:
    from runner.sources import archive

    url = location.url
    if url.lower().startswith(("http://", "https://")):
        download.mkdir()
        progress.step(f"downloading {location.shown}")
        return archive.fetch(url, location.shown, download)
    path = Path(unquote(urlsplit(url).path)) if url.lower().startswith("file://") else Path(url)
    if not path.is_file():
        raise SourceError(f"archive {location.shown!r} does not exist", "check the path")
    return path
