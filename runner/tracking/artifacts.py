"""Content-addressed artifact storage, browsable per run.

Each distinct content is stored once as `<artifacts>/objects/<aa>/<sha256>` (read-only), and
each run sees its files as `<artifacts>/<run id>/<name>` hard links to those objects (a copy
where the filesystem refuses links). Objects are written to a temporary file and renamed into
place, so a crash or a full disk never leaves a half-written object under its final name.

An object is never more readable than any file it was stored from (a `0600` output is stored
`0400`), and the store's directories are private (`0700`), or shared with the group named by
the `store_group` setting (`2770`): docs/security.md#outputs-artifacts-and-the-store.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

from runner import settings
from runner.errors import StoreError

CHUNK = 1 << 20


class ArtifactError(StoreError):
    """An artifact cannot be stored (over the limit, disk full, refused name)."""


@cache
def store_group() -> int | None:
    """The group id of the `store_group` setting; None: the store is private to its owner."""
    import grp  # only a team store pays for it

    name = settings.get("store_group")
    if not name:
        return None
    try:
        return int(name) if name.isdigit() else grp.getgrnam(name).gr_gid
    except KeyError:
        raise StoreError(
            f"setting store_group = {name!r} names no group on this machine",
            "set RUN_PROJECT_STORE_GROUP to an existing group (see `getent group`), "
            "or unset it for a store private to you",
        ) from None


def private_dirs(path: Path) -> None:
    """`mkdir -p path`, each directory made here private: 0700, or 2770 and the store group
    (setgid, so what is made inside joins the group too)."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
            share(directory, 0o700)


def share(path: Path, private_mode: int) -> None:
    """Give `path` (made by run-project) its private mode, or with a store group the group's
    rights too (`rw` for files, `rwx` and setgid for directories)."""
    group = store_group()
    if group is None:
        os.chmod(path, private_mode)
        return
    os.chown(path, -1, group)
    widened = private_mode | (private_mode & 0o700) >> 3
    os.chmod(path, widened | (stat.S_ISGID if path.is_dir() else 0))


def private_file(path: Path) -> None:
    """Create `path` empty, 0600 (0660 with a store group), unless it exists."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return
    share(path, 0o600)


def check_name(name: str) -> str:
    """A relative POSIX artifact name without `..`, backslashes or control characters."""
    bad = (
        not name
        or name.startswith("/")
        or "\\" in name
        or any(ord(c) < 32 for c in name)
        or any(part in ("..", "") for part in name.split("/"))
    )
    if bad:
        raise ArtifactError(
            f"artifact name {name!r} is refused",
            "use a relative path with '/' separators and no '..', e.g. 'plots/loss.png'",
        )
    return str(PurePosixPath(name))


class ObjectStore:
    """The objects directory of one artifacts root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"

    def path_of(self, sha256: str) -> Path:
        """Where the object with this digest lives."""
        return self.objects / sha256[:2] / sha256

    def put(self, source: Path, expected: str | None = None) -> str:
        """Store `source`'s bytes (copied while hashed); returns the digest of what was stored."""
        mode = _stored_mode(source)
        if expected and self.path_of(expected).is_file():
            _narrow(self.path_of(expected), mode)
            return expected
        import tempfile  # only a run with outputs to store pays for it

        try:  # a disk that refuses (full, read-only) is an ArtifactError, never a bare OSError
            private_dirs(self.objects)
            fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=self.objects)
        except OSError as exc:
            raise _storage_error(source, exc) from exc
        tmp = Path(tmp_name)
        try:
            digest = _copy_hashing(source, fd)
            final = self.path_of(digest)
            private_dirs(final.parent)
            os.chmod(tmp, mode)
            if final.exists():
                tmp.unlink()
                _narrow(final, mode)
            else:
                os.replace(tmp, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise _storage_error(source, exc) from exc
        return digest

    def link(self, sha256: str, dest: Path) -> None:
        """Make `dest` show the object (hard link; a copy across filesystems)."""
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        try:
            private_dirs(dest.parent)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            try:
                os.link(self.path_of(sha256), tmp)
            except OSError:
                shutil.copyfile(self.path_of(sha256), tmp)
                shutil.copymode(self.path_of(sha256), tmp)
            os.replace(tmp, dest)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise _storage_error(dest, exc) from exc


def _stored_mode(source: Path) -> int:
    """Read-only, and never readable by anyone the source is not readable by."""
    return stat.S_IMODE(os.lstat(source).st_mode) & 0o444 | 0o400


def _narrow(stored: Path, mode: int) -> None:
    """The same content stored again from a less readable file: the object (and so every
    run's link to it) becomes as private as the most private of its sources."""
    current = stat.S_IMODE(os.stat(stored).st_mode)
    if current & ~mode:
        os.chmod(stored, current & mode)


def _copy_hashing(source: Path, fd: int) -> str:
    """Copy and hash; holes of a sparse file (and blocks of zeros) stay holes in the copy,
    so a 2 GB sparse output takes the disk it really takes."""
    digest = hashlib.sha256()
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    src = os.open(source, flags)
    try:
        with os.fdopen(fd, "wb") as out:
            for offset, length in _extents(src):
                if offset is None:  # a hole: zeros to the hash, a seek in the copy
                    _hash_zeros(digest, length)
                    out.seek(length, os.SEEK_CUR)
                    continue
                _copy_extent(src, offset, length, digest, out)
            out.truncate()
    finally:
        os.close(src)
    return digest.hexdigest()


def _extents(fd: int) -> list[tuple[int | None, int]]:
    """(offset, length) of each data extent in order, with (None, length) for each hole."""
    size = os.fstat(fd).st_size
    if not hasattr(os, "SEEK_DATA"):
        return [(0, size)]
    extents: list[tuple[int | None, int]] = []
    position = 0
    while position < size:
        try:
            data = os.lseek(fd, position, os.SEEK_DATA)
        except OSError:  # no data after position (ENXIO), or no SEEK_DATA here
            data = size
        if data > position:
            extents.append((None, data - position))
        if data >= size:
            break
        end = os.lseek(fd, data, os.SEEK_HOLE)
        extents.append((data, end - data))
        position = end
    os.lseek(fd, 0, os.SEEK_SET)
    return extents


_ZEROS = bytes(CHUNK)


def _hash_zeros(digest: Any, length: int) -> None:
    while length > 0:
        digest.update(_ZEROS[: min(length, CHUNK)])
        length -= CHUNK


def _copy_extent(src: int, offset: int, length: int, digest: Any, out: Any) -> None:
    os.lseek(src, offset, os.SEEK_SET)
    while length > 0:
        chunk = os.read(src, min(length, CHUNK))
        if not chunk:
            break  # the file shrank meanwhile
        digest.update(chunk)
        if chunk == _ZEROS[: len(chunk)]:
            out.seek(len(chunk), os.SEEK_CUR)  # zeros written as data: a hole in the copy
        else:
            out.write(chunk)
        length -= len(chunk)


def _storage_error(path: Path, exc: OSError) -> ArtifactError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ArtifactError(
            f"the disk is full while storing artifact {path} ({exc.strerror})",
            "free space where the artifacts go, or set RUN_PROJECT_ARTIFACTS to a bigger disk",
        )
    return ArtifactError(
        f"cannot store artifact {path}: {exc.strerror or exc}",
        "check the permissions and free space of the artifacts directory",
    )


def parse_size(text: str) -> int:
    """'500MB', '2GiB', '1000' → bytes; raises ValueError on anything else."""
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    units.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})
    raw = text.strip().upper().replace(" ", "")
    number = raw.rstrip("KMGTIB")
    unit = raw[len(number) :]
    if unit not in units or not number:
        raise ValueError(text)
    return int(float(number) * units[unit])
