"""Sources that are not run in place: a git URL (or a local repository with -v) through the
mirror cache into a per-run working copy, and an archive extracted into one. A local
directory run never loads this module (nor the mirror's and working copy's code)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from runner.errors import SourceError
from runner.progress import Progress
from runner.sources import mirror, workcopy
from runner.sources import uri as uris
from runner.sources.checkout import Checkout

Precheck = Callable[[Path], None]  # sees a directory holding only the MLproject (see __init__)


def from_git(
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
                    resolved_offline=_utc(found.offline) if found.offline is not None else None,
                    cleanup=_cleanup(work, keep, progress))  # fmt: skip


def _utc(when: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


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


def from_archive(location: uris.Location, keep: bool, progress: Progress) -> Checkout:
    from runner.sources import archive  # tarfile, zipfile, urllib: only when needed

    work = workcopy.new_dir(keep)
    download = work.with_name(work.name + ".download")
    try:
        file = _archive_file(location, download, progress)
        digest = archive.sha256(file)
        archive.extract(file, location.shown, work)
        top = archive.project_root(work)
        if not location.subdirectory:
            archive.refuse_a_choice_of_projects(top, location.shown)
        path = _inside(top, location.subdirectory, location.shown)
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
