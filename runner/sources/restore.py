"""The source of a rerun: the recorded commit (never a branch or tag name) in a fresh working
copy, with the recorded uncommitted diff applied and the untracked files copied in.

A run bundle (`runs export`) carries the tree at that commit itself (`project/`), so a rerun
on another machine needs neither the original directory nor the git server.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path, PurePosixPath
from typing import Any

from runner import sources
from runner.errors import SourceError
from runner.progress import Progress
from runner.sources import workcopy
from runner.sources.checkout import Checkout
from runner.sources.git import git
from runner.sources.local import DIFF_NAME, UNTRACKED_DIR


def materialise(
    source: dict[str, Any], saved: Path, tree: Path | None, progress: Progress
) -> Checkout:
    """A Checkout of the recorded source; `saved` holds the run's `source/` artifacts
    (uncommitted.diff, untracked/), `tree` the bundled project tree if any."""
    if tree is not None and tree.is_dir():
        checkout = _from_tree(tree, source)
    else:
        checkout = _fetch(source, progress)
    try:
        root = _root_of(checkout.path, source.get("subdirectory") or "")
        _apply(saved, root, source)
    except BaseException:
        checkout.cleanup()
        raise
    return checkout._replace(
        uri=source["uri"],
        kind=source["kind"],
        commit=source.get("commit"),
        dirty=bool(source.get("dirty")),
        diff=_read_diff(saved),
        # what was restored: a subproject's bundle holds only its own untracked files
        untracked=tuple(n for n in source.get("untracked") or () if (root / n).is_file()),
        repo_root=root,
        subdirectory=source.get("subdirectory") or "",
        version=source.get("version"),
    )


def _fetch(source: dict[str, Any], progress: Progress) -> Checkout:
    kind, commit, sub = source["kind"], source.get("commit"), source.get("subdirectory") or ""
    if kind == "archive":
        checkout = sources.resolve(source["uri"] + (f"#{sub}" if sub else ""), progress=progress)
        if checkout.archive_sha256 != source.get("archive_sha256"):
            checkout.cleanup()
            raise SourceError(
                f"archive {source['uri']} has changed since the run (sha256 differs)",
                "rerun from an exported run bundle (`run-project runs export RUN_ID -o F`)",
            )
        return checkout
    if commit is None:  # a directory outside git: all there is, is the directory as it is now
        progress.warn(f"{source['uri']} is not in git: rerunning the directory as it is now")
        return sources.resolve(source["path"], progress=progress)
    uri = source["path"] if kind == "local" else source["uri"] + (f"#{sub}" if sub else "")
    if kind == "local" and not Path(uri).is_dir() and Path(source["uri"]).is_dir():
        uri = source["uri"]  # a rerun ran in a working copy now gone; its project is here
    if kind == "local" and not Path(uri).is_dir():
        raise SourceError(
            f"the run's project directory {uri} no longer exists",
            "rerun from an exported run bundle, which carries the project at its commit",
        )
    return sources.resolve(uri, commit, progress=progress)


def _from_tree(tree: Path, source: dict[str, Any]) -> Checkout:
    work = workcopy.new_dir(False)
    shutil.copytree(tree, work, symlinks=True, dirs_exist_ok=True)
    sub = source.get("subdirectory") or ""
    path = work / sub if sub else work
    if not workcopy.inside(path, work) or not path.is_dir():
        workcopy.remove(work)
        raise SourceError(f"the bundle has no directory {sub!r}", "export the run again")
    return Checkout(path=path, uri=source["uri"], kind=source["kind"],
                    cleanup=lambda: workcopy.remove(work))  # fmt: skip


def _root_of(path: Path, sub: str) -> Path:
    """The top of the working copy: `path` without its recorded subdirectory."""
    depth = len(PurePosixPath(sub).parts) if sub and sub != "." else 0
    root = path
    for _ in range(depth):
        root = root.parent
    return root


def _read_diff(saved: Path) -> str | None:
    diff = saved / DIFF_NAME
    return diff.read_text() if diff.is_file() else None


def _apply(saved: Path, root: Path, source: dict[str, Any]) -> None:
    """Replay the recorded diff and copy the untracked files (never through a symlink)."""
    if source.get("commit") is None:
        return  # nothing was recorded beyond the directory itself
    diff = saved / DIFF_NAME
    if diff.is_file() and diff.stat().st_size:
        # Outside any repository (the ceiling stops git finding one above the copy), git
        # apply works like patch and refuses paths that leave the working copy.
        result = git(
            ["apply", "--binary", "--whitespace=nowarn", "-p1", str(diff)],
            cwd=root,
            check=False,
            extra_env={"GIT_CEILING_DIRECTORIES": str(root.parent)},
        )
        if result.returncode != 0:
            raise SourceError(
                f"the recorded uncommitted diff does not apply: {result.stderr.strip()[:300]}",
                "check the run's source/uncommitted.diff in its artifact directory",
            )
    untracked = saved / UNTRACKED_DIR
    if not untracked.is_dir():
        return
    for file in sorted(untracked.rglob("*")):
        if file.is_symlink() or not file.is_file():
            continue
        target = root / file.relative_to(untracked)
        if not workcopy.inside(target.parent, root):
            raise SourceError(f"untracked file {file} leaves the project", "export the run again")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target, follow_symlinks=False)


def tag_moved(source: dict[str, Any], progress: Progress) -> str | None:
    """If the run asked for a revision name (branch or tag) that now names another commit,
    a sentence saying so; the rerun uses the recorded commit either way
    (tests/test_rerun.py::test_rerun_after_the_tag_moved_uses_the_recorded_sha)."""
    version, commit = source.get("version"), source.get("commit")
    if not version or not commit or version == commit or source["kind"] == "archive":
        return None
    uri = source["path"] if source["kind"] == "local" else source["uri"]
    from runner.sources import mirror
    from runner.sources import uri as uris

    try:
        location = uris.parse(uri)
        url = str(Path(location.url).resolve()) if location.kind == "local" else location.url
        if location.kind == "local":
            from runner.sources.git import repo_root

            url = str(repo_root(Path(url)) or url)
        with mirror.opened(url, location.shown, version, progress) as found:
            now, offline = found.commit, found.offline
    except SourceError as exc:
        return f"could not check where {version!r} points now ({exc.message}); used {commit}"
    if offline is not None:  # the mirror's value, not the server's: nothing is known
        return f"could not check where {version!r} points now (server unreachable); used {commit}"
    if now == commit:
        return None
    return f"{version!r} moved: it now points to {now}; this rerun used the recorded {commit}"


def fetch_tree(source: dict[str, Any], progress: Progress) -> AbstractContextManager[Path] | None:
    """The project's whole tree at the recorded commit (no diff: that travels separately),
    for a run bundle; None, with a warning, when it cannot be had here."""
    if source.get("commit") is None and source["kind"] == "local":
        path = Path(source["path"])
        return contextlib.nullcontext(path) if path.is_dir() else None
    try:
        checkout = _fetch(source, progress)
    except SourceError as exc:
        progress.warn(f"the bundle will not hold the project's files: {exc.message}")
        return None
    return _tree(checkout, _root_of(checkout.path, source.get("subdirectory") or ""))


@contextlib.contextmanager
def _tree(checkout: Checkout, root: Path) -> Iterator[Path]:
    try:
        yield root
    finally:
        checkout.cleanup()
