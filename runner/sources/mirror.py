"""The mirror cache: one bare repository per normalised URL under `<cache>/git/`.

A run holds the mirror's lock shared while it reads, and exclusive while it fetches, so ten
runs of one URL fetch one at a time and all succeed. A commit already in the mirror is used
without touching the network. A mirror without its completion marker (its first fetch was
killed) is rebuilt; a complete one whose later fetch was killed is repaired (stale git lock
files and temporary packs removed) before the next fetch, and rebuilt if that fetch still
fails for a reason other than the network.

Mirrors are made by `init --bare` + `fetch` with the URL on the command line, never stored in
the mirror's config (no credentials on disk), and a fetch never takes the hard-linking local
shortcut (the equivalent of `clone --no-local`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from runner import settings
from runner.errors import SourceError
from runner.progress import Progress
from runner.sources import giterrors
from runner.sources.git import git
from runner.sources.uri import mirror_name

MARKER = "run-project-complete"
FETCHED = "run-project-fetched"
HEAD_REF = "refs/run-project/HEAD"
REFSPECS = (f"+HEAD:{HEAD_REF}", "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
FULL_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
SHA_LIKE = re.compile(r"^[0-9a-f]{7,64}$")


class Mirror(NamedTuple):
    """A complete mirror (held under a shared lock) and the commit a revision resolved to;
    `offline` is when the mirror was last fetched if the server could not be reached and the
    revision name was resolved from the mirror alone (None: resolved with the server)."""

    path: Path
    commit: str
    fetched: bool
    offline: float | None = None


def area() -> Path:
    """Where mirrors live."""
    return settings.cache_dir() / "git"


@contextlib.contextmanager
def opened(url: str, shown: str, rev: str | None, progress: Progress) -> Iterator[Mirror]:
    """The mirror of `url` with `rev` (None: the default branch) resolved to a full SHA."""
    root = area()
    root.mkdir(parents=True, exist_ok=True)
    name = mirror_name(url)
    path = root / name
    fd = os.open(root / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        commit = _known_commit(path, rev)
        fetched = False
        offline: float | None = None
        if commit is None:
            asked = time.time()
            fcntl.flock(fd, fcntl.LOCK_UN)
            _lock_exclusive(fd, progress, shown)
            try:
                commit = _update(path, url, shown, rev, progress, asked)
            except giterrors.Unreachable as exc:
                cached = _cached_name(path, rev)
                if cached is None:
                    raise
                commit, offline = cached
                progress.warn(_offline_warning(exc, rev, commit, offline))
            fetched = offline is None
            fcntl.flock(fd, fcntl.LOCK_SH)  # downgrade: others may read while we export
        yield Mirror(path, commit, fetched, offline)
    finally:
        os.close(fd)


def _cached_name(path: Path, rev: str | None) -> tuple[str, float] | None:
    """A branch or tag (or the default branch) as the complete mirror last saw it, and when
    that was: what runs when the server is down."""
    if not _complete(path) or not _healthy(path):
        return None
    try:
        commit = _resolve(path, rev, str(path))
    except SourceError:
        return None
    return commit, _last_fetch(path) or _created(path)


def _offline_warning(exc: SourceError, rev: str | None, commit: str, when: float) -> str:
    name = "the default branch" if rev is None else repr(rev)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if when else "an unknown time"
    return (f"{exc.message}; running {name} as the mirror last saw it: {commit} "
            f"(fetched {stamp}); it may have moved on the server since")  # fmt: skip


def _created(path: Path) -> float:
    try:
        return float((path / MARKER).read_text())
    except (OSError, ValueError):
        return 0.0


def _lock_exclusive(fd: int, progress: Progress, shown: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        progress.step(f"waiting for another run fetching {shown}")
        fcntl.flock(fd, fcntl.LOCK_EX)


def _complete(path: Path) -> bool:
    return (path / MARKER).is_file()


def _known_commit(path: Path, rev: str | None) -> str | None:
    """A commit SHA (full, or short and unambiguous) already in a complete mirror: used
    offline. Branch and tag names may have moved upstream, so they always fetch (and fall
    back to the mirror's value, with a warning, only when the server cannot be reached)."""
    if rev is None or not SHA_LIKE.match(rev) or not _complete(path):
        return None
    if rev in ref_names(path):  # a branch or tag that merely looks like hex
        return None
    commit = resolve_local(path, rev)
    return commit if commit is not None and commit.startswith(rev) else None


def resolve_local(path: Path, rev: str) -> str | None:
    """`rev` as a full commit SHA in the mirror, or None."""
    result = git(["--git-dir", str(path), "rev-parse", "--verify", "-q", "--end-of-options",
                  f"{rev}^{{commit}}"], check=False)  # fmt: skip
    return result.stdout.strip() if result.returncode == 0 else None


def _update(
    path: Path, url: str, shown: str, rev: str | None, progress: Progress, asked: float
) -> str:
    """Fetch (repairing or rebuilding the mirror as needed) and resolve `rev`.

    A fetch another run finished after we asked is as fresh as ours would be: ten runs
    started together make one fetch, not ten."""
    if _complete(path) and _healthy(path) and _last_fetch(path) >= asked:
        with contextlib.suppress(SourceError):  # not there after all: fetch ourselves
            return _resolve(path, rev, shown)
    before = _tag_value(path, rev)
    _fetch_or_rebuild(path, url, shown, progress)
    (path / FETCHED).write_text(f"{time.time()}\n")
    commit = _resolve(path, rev, shown)
    after = _tag_value(path, rev)
    if before and after and before != after:
        progress.warn(f"tag {rev} of {shown} moved from {before[:12]} to {after[:12]}")
    return commit


def _fetch_or_rebuild(path: Path, url: str, shown: str, progress: Progress) -> None:
    if not _complete(path) or not _healthy(path):
        _rebuild(path, url, shown, progress)
        return
    _repair(path)
    try:
        _fetch(path, url, shown, progress)
    except giterrors.FetchError as exc:
        if exc.network:
            raise exc.error from None
        progress.warn(f"the mirror of {shown} is damaged ({exc.error.message}); rebuilding it")
        _rebuild(path, url, shown, progress)


def _last_fetch(path: Path) -> float:
    try:
        return float((path / FETCHED).read_text())
    except (OSError, ValueError):
        return 0.0


def _healthy(path: Path) -> bool:
    """git still recognises the mirror as a repository (HEAD, objects and refs intact)."""
    result = git(["--git-dir", str(path), "rev-parse", "--git-dir"], check=False)
    return result.returncode == 0 and (path / "objects").is_dir()


def _rebuild(path: Path, url: str, shown: str, progress: Progress) -> None:
    """A fresh mirror: anything without the marker is never trusted or repaired."""
    if path.exists():
        shutil.rmtree(path)
    git(["init", "--quiet", "--bare", "--template=", "--end-of-options", str(path)])
    try:
        _fetch(path, url, shown, progress)
    except giterrors.FetchError as exc:
        shutil.rmtree(path, ignore_errors=True)
        raise exc.error from None
    (path / MARKER).write_text(f"{time.time()}\n")


def _repair(path: Path) -> None:
    """Remove what a killed git leaves behind; safe because we hold the exclusive lock."""
    for stale in path.rglob("*.lock"):
        with contextlib.suppress(OSError):
            stale.unlink()
    for temp in (path / "objects" / "pack").glob("tmp_*"):
        with contextlib.suppress(OSError):
            temp.unlink()


def _fetch(path: Path, url: str, shown: str, progress: Progress) -> None:
    progress.step(f"fetching {shown}")
    # Our own call names the URL, so a local or file:// source is the user's choice;
    # submodule URLs never get this (git's default keeps file:// "user"-only for them).
    local = "://" not in url or url.lower().startswith("file://")
    config = ("-c", "protocol.file.allow=always") if local else ()
    args = ["--git-dir", str(path), "fetch", "--quiet", "--no-write-fetch-head", "--prune",
            "--force", "--no-recurse-submodules", "--end-of-options", url, *REFSPECS]  # fmt: skip
    result = git(args, check=False, config=config)
    if result.returncode != 0:
        raise giterrors.classify(result.stderr, shown)
    progress.done(f"fetched {shown}")


def _resolve(path: Path, rev: str | None, shown: str) -> str:
    if rev is None:
        commit = resolve_local(path, HEAD_REF)
        if commit is None:
            raise SourceError(f"{shown} has no default branch", "pass -v BRANCH")
        return commit
    for candidate in (f"refs/heads/{rev}", f"refs/tags/{rev}", rev):
        commit = resolve_local(path, candidate)
        if commit is not None:
            return commit
    raise _unknown_revision(path, rev, shown)


def _unknown_revision(path: Path, rev: str, shown: str) -> SourceError:
    names = ref_names(path)
    import difflib

    close = difflib.get_close_matches(rev, names, n=3, cutoff=0.5)
    if close:
        hint = "closest branches/tags: " + ", ".join(close)
    else:
        hint = "branches/tags: " + (", ".join(names[:10]) or "none")
    return SourceError(f"revision {rev!r} is not a branch, tag or commit of {shown}", hint)


def ref_names(path: Path) -> list[str]:
    """Branch and tag names in the mirror."""
    result = git(["--git-dir", str(path), "for-each-ref", "--format=%(refname:short)",
                  "refs/heads", "refs/tags"], check=False)  # fmt: skip
    return result.stdout.split()


def _tag_value(path: Path, rev: str | None) -> str | None:
    if rev is None or not _complete(path):
        return None
    return resolve_local(path, f"refs/tags/{rev}")
