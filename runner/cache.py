"""Locked, atomic, content-addressed cache entries (environments, and anything built once).

The pattern, for every entry `<cache>/<area>/<key>/`:

    shared lock → complete and healthy? use it
    else exclusive lock → check again → remove any entry without a completion marker
         → build into a staging dir on the same filesystem → health check
         → rename into place → write the completion marker last, atomically

An entry without its marker is never used, so a `kill -9` at any moment leaves nothing that
a later run trusts. An entry owns its files: before the rename, any file it shares with
something else (a hardlink from uv's or conda's package cache) is replaced by its own copy
(a reflink where the filesystem can), so a run that writes into its environment changes no
other environment and no package cache (docs/security.md, isolated environments).

Users of an entry hold a shared lock for as long as they use it, which is how `gc` knows
never to remove an entry in use. Kinds never touch locks or markers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from runner.errors import EnvError
from runner.progress import Progress

MARKER = ".run-project-complete"
LAST_USED = ".run-project-last-used"
USERS = ".run-project-users"
STAGING_PREFIX = ".staging-"


class Entry(NamedTuple):
    """A complete cache entry, and whether this call built it."""

    path: Path
    key: str
    built: bool
    marker: dict[str, Any]


@contextlib.contextmanager
def use(
    area: Path,
    key: str,
    build: Callable[[Path], dict[str, Any]],
    healthy: Callable[[Path], bool],
    progress: Progress,
    relocatable: bool = True,
    user: str | None = None,
) -> Iterator[Entry]:
    """Yield the complete entry `area/key`, building it if needed; held (shared) while used.

    `build(into)` fills the directory and returns facts saved in the marker. When the built
    files are not relocatable, `build` runs on the final path itself (still guarded by the
    exclusive lock and the marker). `user` (e.g. the project URI) is remembered in the entry
    so `envs list` can say which projects use it.
    """
    area.mkdir(parents=True, exist_ok=True)
    final = area / key
    with _locked(area / f"{key}.lock") as lock_fd:
        _acquire(lock_fd, fcntl.LOCK_SH, progress, key)
        marker = _complete(final, healthy)
        built = False
        for _attempt in range(3):
            if marker is not None:
                break
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
            _acquire(lock_fd, fcntl.LOCK_EX, progress, key)
            marker = _complete(final, healthy)
            if marker is None:
                marker = _build(area, final, key, build, healthy, progress, relocatable)
                built = True
            # flock's exclusive → shared is not atomic: a `gc` may slip in between and
            # remove the entry, so check again under the shared lock.
            fcntl.flock(lock_fd, fcntl.LOCK_SH)
            marker = read_marker(final)
        if marker is None:
            raise EnvError(
                f"cache entry {final} keeps disappearing while it is being used",
                "stop any `run-project envs gc` running in a loop, then run again",
            )
        _touch(final / LAST_USED)
        _remember_user(final, user)
        yield Entry(path=final, key=key, built=built, marker=marker)


def read_marker(entry: Path) -> dict[str, Any] | None:
    """The completion marker of `entry`, or None if it is incomplete."""
    try:
        data: dict[str, Any] = json.loads((entry / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data


def _complete(final: Path, healthy: Callable[[Path], bool]) -> dict[str, Any] | None:
    marker = read_marker(final)
    if marker is None or not healthy(final):
        return None
    return marker


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        yield fd
    finally:
        os.close(fd)  # closing releases the lock, as does the death of the process


def _acquire(fd: int, mode: int, progress: Progress, key: str) -> None:
    """Take the lock, saying so when another run (a builder) makes us wait."""
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        progress.step(f"waiting for another run that is building environment {key[:12]}")
        fcntl.flock(fd, mode)


def _build(
    area: Path,
    final: Path,
    key: str,
    build: Callable[[Path], dict[str, Any]],
    healthy: Callable[[Path], bool],
    progress: Progress,
    relocatable: bool,
) -> dict[str, Any]:
    _remove(final)  # incomplete or unhealthy: never trusted, never repaired in place
    _remove_stale_staging(area, key)
    target = area / f"{STAGING_PREFIX}{key}-{os.getpid()}-{os.urandom(4).hex()}"
    if not relocatable:
        target = final
    try:
        target.mkdir(parents=True)
        facts = build(target)
        own_files(target)
        if target != final:
            os.rename(target, final)
        if not healthy(final):
            raise EnvError(
                f"the environment built in {final} fails its health check",
                "this is likely a bug in the environment kind; rerun with a fresh cache",
            )
    except BaseException:
        _remove(target)
        _remove(final)
        raise
    marker = {"key": key, "created": time.time(), **facts}
    _write_atomic(final / MARKER, json.dumps(marker, indent=2))
    return marker


def own_files(root: Path) -> int:
    """Give every regular file under `root` that has other hardlinks its own copy (same mode
    and times); returns how many were copied. A file with one link is left as it is."""
    copied = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
                _replace_with_copy(path, info)
                copied += 1
    return copied


def _replace_with_copy(path: str, info: os.stat_result) -> None:
    tmp = f"{path}.{os.urandom(4).hex()}.own"
    with open(path, "rb") as src, open(tmp, "xb") as dst:
        if not _clone_into(src.fileno(), dst.fileno()):
            _copy_in_kernel(src, dst, info.st_size)
    try:
        os.chmod(tmp, stat.S_IMODE(info.st_mode))
        os.utime(tmp, ns=(info.st_atime_ns, info.st_mtime_ns))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _copy_in_kernel(src: BinaryIO, dst: BinaryIO, size: int) -> None:
    """copy_file_range (no trip through user space), else a plain copy."""
    copied = 0
    try:
        while copied < size and (n := os.copy_file_range(src.fileno(), dst.fileno(), size)):
            copied += n
    except OSError:
        copied = 0
    if copied < size:
        src.seek(0)
        dst.seek(0)
        dst.truncate()
        shutil.copyfileobj(src, dst, 1 << 20)


_FICLONE = 0x40049409  # linux/fs.h: share the source's blocks, copy-on-write


def _clone_into(src_fd: int, dst_fd: int) -> bool:
    """A copy-on-write clone (btrfs, XFS, ...); False where the filesystem cannot."""
    try:
        fcntl.ioctl(dst_fd, _FICLONE, src_fd)
    except OSError:
        return False
    return True


def can_clone(source_dir: Path, target_dir: Path) -> bool:
    """Whether a file in `source_dir` can be cloned (copy-on-write) into `target_dir`."""
    import tempfile

    try:
        source_dir.mkdir(parents=True, exist_ok=True)
        target_dir.mkdir(parents=True, exist_ok=True)
        with (
            tempfile.TemporaryFile(dir=source_dir) as src,
            tempfile.TemporaryFile(dir=target_dir) as dst,
        ):
            src.write(b"probe")
            src.flush()
            return _clone_into(src.fileno(), dst.fileno())
    except OSError:
        return False


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _remove(path: Path) -> None:
    """Remove a directory fast and safely: rename aside first, so a crash mid-delete cannot
    leave a half-deleted entry under the real name."""
    if not path.exists() and not path.is_symlink():
        return
    trash = path.with_name(f"{STAGING_PREFIX}trash-{os.urandom(4).hex()}")
    try:
        os.rename(path, trash)
    except OSError:
        trash = path
    if trash.is_dir() and not trash.is_symlink():
        shutil.rmtree(trash, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            trash.unlink()


def _remove_stale_staging(area: Path, key: str) -> None:
    """Staging dirs of this key left by dead builders (we hold the exclusive lock now)."""
    for stale in area.glob(f"{STAGING_PREFIX}{key}-*"):
        _remove(stale)
    for trash in area.glob(f"{STAGING_PREFIX}trash-*"):
        _remove(trash)


def _remember_user(entry: Path, user: str | None) -> None:
    """Append `user` to the entry's users file once (appends of one short line are atomic)."""
    if not user or "\n" in user:
        return
    if user in users(entry):
        return
    with contextlib.suppress(OSError), open(entry / USERS, "a") as handle:
        handle.write(user + "\n")


def users(entry: Path) -> list[str]:
    """Who used the entry (project URIs), oldest first, without repeats."""
    try:
        lines = (entry / USERS).read_text().splitlines()
    except OSError:
        return []
    return list(dict.fromkeys(line for line in lines if line))


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.touch()


def entries(area: Path) -> list[Path]:
    """All complete entries in `area`."""
    if not area.is_dir():
        return []
    return sorted(p for p in area.iterdir() if p.is_dir() and (p / MARKER).is_file())


def last_used(entry: Path) -> float:
    """When the entry was last used (seconds since the epoch)."""
    for name in (LAST_USED, MARKER):
        with contextlib.suppress(OSError):
            return (entry / name).stat().st_mtime
    return 0.0


def try_remove(area: Path, entry: Path) -> bool:
    """Remove `entry` unless a run is using it (holds its lock); True if removed."""
    fd = os.open(area / f"{entry.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        (entry / MARKER).unlink(missing_ok=True)  # first: a half-removed entry is incomplete
        _remove(entry)
        return True
    finally:
        os.close(fd)


def in_use(area: Path, entry: Path) -> bool:
    """Whether a run holds `entry`'s lock now (what `try_remove` would be refused by)."""
    fd = os.open(area / f"{entry.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases the lock at once
    return False


def sweep(area: Path) -> int:
    """Remove what interrupted builds left in `area` (staging dirs, trash, entries without a
    marker) unless a live builder holds their key's lock; returns how many were removed."""
    if not area.is_dir():
        return 0
    removed = 0
    for path in sorted(area.iterdir()):
        if not path.is_dir() or (path / MARKER).is_file():
            continue
        if path.name.startswith(f"{STAGING_PREFIX}trash-"):
            _remove(path)
            removed += 1
            continue
        key = path.name
        if key.startswith(STAGING_PREFIX):
            key = key[len(STAGING_PREFIX) :].split("-", 1)[0]
        if _remove_if_unlocked(area, key, path):
            removed += 1
    return removed


def _remove_if_unlocked(area: Path, key: str, path: Path) -> bool:
    fd = os.open(area / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a build of this key is running right now
        if (path / MARKER).is_file():
            return False  # finished while we looked
        _remove(path)
        return True
    finally:
        os.close(fd)
