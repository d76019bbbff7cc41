"""Archives (.zip, .tar.gz, .tgz) by path or http(s) URL, extracted safely.

Extraction does not rely on `tarfile`'s filters (fooled on some interpreters by link chains
whose real path passes PATH_MAX). Every member is checked before anything is written: no
absolute names, no `..`, no device files or FIFOs, no member below a symlink member, and
every symlink resolved against the archive's own table of links, hop by hop as the kernel
would, must stay inside. Then the tree is written by walking directory fds with
`O_NOFOLLOW`, symlinks last, so no byte is ever written through a link; hard links become
copies. A refused archive leaves nothing behind.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from runner.errors import SourceError

MAX_BYTES = 4 * 1024**3  # unpacked size limit: a zip bomb fails instead of filling the disk
MAX_HOPS = 40  # symlinks followed while resolving one path, as Linux's MAXSYMLINKS
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
            with zipfile.ZipFile(archive) as zf:
                _extract_checked(_zip_members(zf, shown), shown, into)
        else:
            with tarfile.open(archive, "r:*") as tar:
                _extract_checked(_tar_members(tar, shown), shown, into)
    except SourceError:
        _empty(into)
        raise
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        _empty(into)
        hint = "check that the archive is whole"
        raise SourceError(f"cannot extract {shown}: {exc}", hint) from exc


@dataclass(frozen=True)
class _Member:
    """One archive member, checked: a normalised name and what to write there."""

    name: str
    kind: str  # "dir", "file" or "link"
    target: str = ""  # a link's text
    executable: bool = False
    read: Callable[[], IO[bytes] | None] | None = None


def _extract_checked(members: list[_Member], shown: str, into: Path) -> None:
    _check_members(members, shown)
    _write_all(members, into, shown)


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


def _tar_members(tar: tarfile.TarFile, shown: str) -> list[_Member]:
    members: list[_Member] = []
    total = 0
    for info in tar.getmembers():
        name = _check_name(shown, info.name)
        executable = bool(info.mode & 0o111)
        if info.issym():
            members.append(_Member(name, "link", info.linkname))
        elif info.islnk():
            if not _link_name_inside(info.linkname):
                raise _refuse(shown, info.name, f"is a hard link out ({info.linkname!r})")
            reader = _tar_reader(tar, info)  # a copy of the member it names
            members.append(_Member(name, "file", executable=executable, read=reader))
        elif info.isdir():
            members.append(_Member(name, "dir"))
        elif info.isfile():
            members.append(
                _Member(name, "file", executable=executable, read=_tar_reader(tar, info))
            )
        else:
            raise _refuse(shown, info.name, "is a device file, FIFO or other special file")
        total += info.size
        if total > MAX_BYTES:
            raise _refuse(shown, info.name, f"takes the archive past {MAX_BYTES} bytes")
    return members


def _tar_reader(tar: tarfile.TarFile, info: tarfile.TarInfo) -> Callable[[], IO[bytes] | None]:
    return lambda: tar.extractfile(info)


def _zip_members(zf: zipfile.ZipFile, shown: str) -> list[_Member]:
    infos = zf.infolist()
    if sum(i.file_size for i in infos) > MAX_BYTES:
        raise _refuse(shown, infos[-1].filename, f"takes the archive past {MAX_BYTES} bytes")
    members: list[_Member] = []
    for info in infos:
        name = _check_name(shown, info.filename)
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            members.append(_Member(name, "link", zf.read(info).decode("utf-8", "replace")))
        elif info.is_dir() or kind == stat.S_IFDIR:
            members.append(_Member(name, "dir"))
        elif kind in (0, stat.S_IFREG):
            opener = _zip_reader(zf, info)
            members.append(_Member(name, "file", executable=bool(mode & 0o111), read=opener))
        else:
            raise _refuse(shown, info.filename, "is a device file, FIFO or other special file")
    return members


def _zip_reader(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], IO[bytes] | None]:
    return lambda: zf.open(info)


def _check_members(members: list[_Member], shown: str) -> None:
    """Refuse, before anything is written, a member below a link, a name that is a link
    and something else, and a link whose real target leaves or loops."""
    links = {m.name: m.target for m in members if m.kind == "link"}
    kinds: dict[str, str] = {}
    for member in members:
        if kinds.setdefault(member.name, member.kind) != member.kind and "link" in (
            kinds[member.name],
            member.kind,
        ):
            raise _refuse(shown, member.name, "is both a symlink and another member")
        for above in _parents(member.name):
            if above in links:
                raise _refuse(shown, member.name, f"is written through the symlink {above!r}")
        if member.kind == "link" and not _resolves_inside(links, member.name, shown):
            raise _refuse(shown, member.name, f"is a symlink out ({member.target!r})")


def _parents(name: str) -> Iterator[str]:
    parts = name.split("/")
    for end in range(1, len(parts)):
        yield "/".join(parts[:end])


def _resolves_inside(links: dict[str, str], name: str, shown: str) -> bool:
    """Follow the link `name` through the archive's own links, component by component as
    the kernel does (no realpath, no PATH_MAX): False when it leaves the top."""
    if links[name].startswith("/"):
        return False
    here = name.split("/")[:-1]
    todo = collections.deque(links[name].split("/"))
    hops = 0
    while todo:
        part = todo.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if not here:
                return False
            here.pop()
            continue
        path = "/".join([*here, part])
        if path not in links:
            here.append(part)
            continue
        hops += 1
        if hops > MAX_HOPS:
            raise _refuse(shown, name, f"is a symlink loop or a chain of over {MAX_HOPS} links")
        if links[path].startswith("/"):
            return False
        todo.extendleft(reversed(links[path].split("/")))
    return True


def _write_all(members: list[_Member], into: Path, shown: str) -> None:
    root = os.open(into, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for member in members:  # links last: nothing is ever written through one
            if member.kind != "link" and member.name:
                _write_member(root, member, shown)
        for member in members:
            if member.kind == "link":
                parent, leaf = _open_parent(root, member.name, shown)
                try:
                    os.symlink(member.target, leaf, dir_fd=parent)
                finally:
                    os.close(parent)
    finally:
        os.close(root)


def _open_parent(root: int, name: str, shown: str) -> tuple[int, str]:
    """An fd on the directory holding `name`, made as needed; never through a symlink."""
    *dirs, leaf = name.split("/")
    fd = os.dup(root)
    try:
        for part in dirs:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            try:
                below = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _refuse(
                        shown, name, f"is written through a symlink or file {part!r}"
                    ) from exc
                raise
            os.close(fd)
            fd = below
    except BaseException:
        os.close(fd)
        raise
    return fd, leaf


def _write_member(root: int, member: _Member, shown: str) -> None:
    parent, leaf = _open_parent(root, member.name, shown)
    try:
        if member.kind == "dir":
            try:
                os.mkdir(leaf, 0o755, dir_fd=parent)
            except FileExistsError:
                if not stat.S_ISDIR(os.stat(leaf, dir_fd=parent, follow_symlinks=False).st_mode):
                    raise _refuse(shown, member.name, "is a directory and a file") from None
            return
        _write_file(parent, leaf, member, shown)
    finally:
        os.close(parent)


def _write_file(parent: int, leaf: str, member: _Member, shown: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    mode = 0o755 if member.executable else 0o644
    try:
        fd = os.open(leaf, flags, mode, dir_fd=parent)
    except FileExistsError:  # a later member of the same name replaces a regular file
        if not stat.S_ISREG(os.stat(leaf, dir_fd=parent, follow_symlinks=False).st_mode):
            raise _refuse(shown, member.name, "is a file and a directory") from None
        os.unlink(leaf, dir_fd=parent)
        fd = os.open(leaf, flags, mode, dir_fd=parent)
    with os.fdopen(fd, "wb") as out:
        source = member.read() if member.read else None
        if source is not None:
            with source:
                shutil.copyfileobj(source, out, CHUNK)


def _empty(into: Path) -> None:
    for child in into.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def refuse_a_choice_of_projects(top: Path, shown: str) -> None:
    """An archive of projects side by side (no MLproject at its top, several folders, one at
    least holding an MLproject): which one to run is for the user to say, with `#folder`."""
    from runner.project.manifest import find_manifest

    if find_manifest(top) is not None:
        return
    folders = sorted(
        c.name for c in top.iterdir() if c.is_dir() and not c.is_symlink() and c.name[0] != "."
    )
    projects = [name for name in folders if find_manifest(top / name) is not None]
    if len(folders) < 2 or not projects:
        return
    marked = [name + "/" + (" (MLproject)" if name in projects else "") for name in folders]
    listed = ", ".join(marked)
    raise SourceError(
        f"{shown} has no MLproject at its top but {len(folders)} folders: {listed}",
        f"name the project to run after '#': {shown}#{projects[0]}",
    )


def project_root(into: Path) -> Path:
    """The project inside an extracted archive: the top, or its single top-level directory
    when that is all there is (as most release archives are laid out)."""
    children = [c for c in into.iterdir() if not c.name.startswith(".")]
    if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
        return children[0]
    return into
