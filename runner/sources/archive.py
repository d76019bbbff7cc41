"""Archives (.zip, .tar.gz, .tgz) by path or http(s) URL, extracted safely.

Every member is checked before anything is written: no absolute names, no `..`, no device
files or FIFOs, no links (hard or symbolic) that leave the extraction directory; tar then
goes through `tarfile`'s `data` filter as a second line, zip is written by hand with the same
rules, and afterwards every symlink is resolved once more (a chain of in-tree links can
still point out). A refused archive leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

from runner.errors import SourceError

MAX_BYTES = 4 * 1024**3  # unpacked size limit: a zip bomb fails instead of filling the disk
CHUNK = 1024 * 1024


def fetch(url: str, shown: str, into: Path) -> Path:
    """Download an http(s) archive into `into`; returns the file."""
    import urllib.request  # costly to import; only archive URLs need it

    name = posixpath.basename(url.split("?", 1)[0]) or "archive"
    target = into / name
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out, CHUNK)
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot download {shown}: {exc}", "check the URL and network") from exc
    return target


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file (recorded, so a rerun can tell if the archive changed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def extract(archive: Path, shown: str, into: Path) -> None:
    """Extract `archive` into the empty directory `into`, refusing anything unsafe."""
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, shown, into)
        else:
            _extract_tar(archive, shown, into)
        _check_links(into, shown)
    except SourceError:
        _empty(into)
        raise
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        _empty(into)
        hint = "check that the archive is whole"
        raise SourceError(f"cannot extract {shown}: {exc}", hint) from exc


def _refuse(shown: str, name: str, why: str) -> SourceError:
    return SourceError(
        f"archive {shown} is refused: member {name!r} {why}",
        "archives may only hold regular files, directories and links that stay inside",
    )


def _check_name(shown: str, name: str) -> str:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or "\x00" in name:
        raise _refuse(shown, name, "has an absolute name")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise _refuse(shown, name, "climbs out with '..'")
    return "/".join(p for p in parts if p not in ("", "."))


def _link_name_inside(target: str) -> bool:
    """A hard link names another member: relative, without '..'."""
    parts = target.replace("\\", "/").split("/")
    return bool(target) and not target.startswith("/") and ".." not in parts


def _link_stays_inside(name: str, target: str) -> bool:
    if target.startswith("/"):
        return False
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    return joined != ".." and not joined.startswith("../")


def _extract_tar(archive: Path, shown: str, into: Path) -> None:
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        total = 0
        for member in members:
            _check_name(shown, member.name)
            if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                raise _refuse(shown, member.name, "is a device file, FIFO or other special file")
            if member.issym() and not _link_stays_inside(member.name, member.linkname):
                raise _refuse(shown, member.name, f"is a symlink out ({member.linkname!r})")
            if member.islnk() and not _link_name_inside(member.linkname):
                raise _refuse(shown, member.name, f"is a hard link out ({member.linkname!r})")
            total += member.size
            if total > MAX_BYTES:
                raise _refuse(shown, member.name, f"takes the archive past {MAX_BYTES} bytes")
        if not hasattr(tarfile, "data_filter"):
            raise SourceError("this Python has no safe tar extraction", "use Python >= 3.11.4")
        try:
            tar.extractall(into, members=members, filter="data")
        except tarfile.FilterError as exc:
            info = getattr(exc, "tarinfo", None)
            name = info.name if isinstance(info, tarfile.TarInfo) else "?"
            raise _refuse(shown, name, "leaves the extraction directory") from exc


def _extract_zip(archive: Path, shown: str, into: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if sum(i.file_size for i in infos) > MAX_BYTES:
            raise _refuse(shown, infos[-1].filename, f"takes the archive past {MAX_BYTES} bytes")
        links: list[tuple[str, str]] = []
        for info in infos:
            name = _check_name(shown, info.filename)
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if kind == stat.S_IFLNK:
                target = zf.read(info).decode("utf-8", "replace")
                if not _link_stays_inside(name, target):
                    raise _refuse(shown, info.filename, f"is a symlink out ({target!r})")
                links.append((name, target))
            elif kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise _refuse(shown, info.filename, "is a device file, FIFO or other special file")
        for info in infos:
            _write_zip_member(zf, info, into, shown)
        for name, target in links:  # links last, so no file is ever written through one
            os.symlink(target, into / name)


def _write_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, into: Path, shown: str) -> None:
    name = _check_name(shown, info.filename)
    if not name or stat.S_ISLNK(info.external_attr >> 16):
        return
    path = into / name
    if info.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    mode = 0o755 if (info.external_attr >> 16) & 0o111 else 0o644
    with zf.open(info) as src, os.fdopen(os.open(path, flags, mode), "wb") as out:
        shutil.copyfileobj(src, out, CHUNK)


def _check_links(into: Path, shown: str) -> None:
    """Resolve every extracted symlink: a chain of in-tree links may still lead out."""
    base = os.path.realpath(into)
    for dirpath, dirnames, filenames in os.walk(into):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                real = os.path.realpath(path)
                if os.path.commonpath([real, base]) != base:
                    raise _refuse(shown, os.path.relpath(path, into), "resolves outside")


def _empty(into: Path) -> None:
    for child in into.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def project_root(into: Path) -> Path:
    """The project inside an extracted archive: the top, or its single top-level directory
    when that is all there is (as most release archives are laid out)."""
    children = [c for c in into.iterdir() if not c.name.startswith(".")]
    if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
        return children[0]
    return into
