"""Content-addressed artifact storage, browsable per run.

Each distinct content is stored once as `<artifacts>/objects/<aa>/<sha256>` (read-only), and
each run sees its files as `<artifacts>/<run id>/<name>` hard links to those objects (a copy
where the filesystem refuses links). Objects are written to a temporary file and renamed into
place, so a crash or a full disk never leaves a half-written object under its final name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
from pathlib import Path, PurePosixPath

from runner.errors import StoreError

CHUNK = 1 << 20


class ArtifactError(StoreError):
    """An artifact cannot be stored (over the limit, disk full, refused name)."""


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
        if expected and self.path_of(expected).is_file():
            return expected
        self.objects.mkdir(parents=True, exist_ok=True)
        import tempfile  # only a run with outputs to store pays for it

        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=self.objects)
        tmp = Path(tmp_name)
        try:
            digest = _copy_hashing(source, fd)
            final = self.path_of(digest)
            final.parent.mkdir(exist_ok=True)
            os.chmod(tmp, 0o444)
            if final.exists():
                tmp.unlink()
            else:
                os.replace(tmp, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise _storage_error(source, exc) from exc
        return digest

    def link(self, sha256: str, dest: Path) -> None:
        """Make `dest` show the object (hard link; a copy across filesystems)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        try:
            try:
                os.link(self.path_of(sha256), tmp)
            except OSError:
                shutil.copyfile(self.path_of(sha256), tmp)
            os.replace(tmp, dest)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise _storage_error(dest, exc) from exc


def _copy_hashing(source: Path, fd: int) -> str:
    digest = hashlib.sha256()
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    src = os.open(source, flags)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := os.read(src, CHUNK):
                digest.update(chunk)
                out.write(chunk)
    finally:
        os.close(src)
    return digest.hexdigest()


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
