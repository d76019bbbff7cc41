"""The build context of a project image: the checkout's files, minus what `.dockerignore`
excludes, with symlinks that leave the project refused; hashed and tarred deterministically.

We assemble the context ourselves (rather than `docker build DIR`) so that what is hashed for
the image tag is exactly what is sent, byte for byte, and so no file outside the project can
reach an image through a symlink.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from runner.errors import EnvError

# Never part of a project image: git history, and a run store kept inside the project (every
# run changes it, so it would change the image tag on every run).
ALWAYS_SKIPPED_DIRS = (".git",)
STORE_MARKER = "runs.db"


@dataclass(frozen=True)
class Item:
    """One context entry: a relative POSIX name, its type and what decides its content."""

    name: str
    kind: str  # "file", "dir" or "link"
    mode: int
    source: Path
    digest: str = ""  # sha256 of a file's bytes, or the target of a link


@dataclass(frozen=True)
class Pattern:
    """A `.dockerignore` line as a regex; `exclude` False for a `!` exception."""

    regex: re.Pattern[str]
    exclude: bool
    depth: int


def load_dockerignore(root: Path) -> list[Pattern]:
    """The patterns of `root/.dockerignore` (Docker's syntax: `*`, `?`, `**`, `!`, `#`)."""
    path = root / ".dockerignore"
    if not path.is_file():
        return []
    patterns = []
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        text = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        if text in ("", "."):
            continue
        patterns.append(Pattern(_compile(text), exclude, text.count("/") + 1))
    return patterns


def _compile(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):  # `**/` matches zero or more directories
                i += 1
                out += "(?:.*/)?"
            else:
                out += ".*"
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out += re.escape(char)
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                out += "[" + ("^" + body[1:] if body.startswith("^") else body) + "]"
                i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(char)
        i += 1
    return re.compile(out + r"\Z")


def ignored(name: str, patterns: list[Pattern]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a parent directory
    matches everything below it."""
    result = False
    parts = name.split("/")
    for pattern in patterns:
        match = bool(pattern.regex.match(name))
        if not match and len(parts) > pattern.depth:
            match = bool(pattern.regex.match("/".join(parts[: pattern.depth])))
        if match:
            result = pattern.exclude
    return result


def collect(root: Path) -> list[Item]:
    """Every file, directory and symlink of the project that goes into the image, sorted."""
    real_root = os.path.realpath(root)
    patterns = load_dockerignore(root)
    exceptions = any(not pattern.exclude for pattern in patterns)
    items: list[Item] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if STORE_MARKER in filenames and rel_dir != ".":
            dirnames[:] = []
            continue
        dirnames.sort()
        kept_dirs = []
        for name in dirnames:
            rel = _rel(rel_dir, name)
            if name in ALWAYS_SKIPPED_DIRS and rel_dir == ".":
                continue
            path = Path(dirpath, name)
            if path.is_symlink():
                if not ignored(rel, patterns):
                    items.append(_link(path, rel, real_root))
                continue
            if not ignored(rel, patterns):
                items.append(Item(rel, "dir", _mode(path), path))
            elif not exceptions:
                continue  # nothing below an ignored directory can come back: skip the walk
            kept_dirs.append(name)
        dirnames[:] = kept_dirs
        for name in sorted(filenames):
            rel = _rel(rel_dir, name)
            if not ignored(rel, patterns):
                items.append(_file_item(Path(dirpath, name), rel, real_root))
    return sorted(items, key=lambda item: item.name)


def _rel(rel_dir: str, name: str) -> str:
    return name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _file_item(path: Path, rel: str, real_root: str) -> Item:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return _link(path, rel, real_root)
    if not stat.S_ISREG(info.st_mode):
        raise EnvError(
            f"{rel} in the project is not a regular file (a device, socket or FIFO)",
            "remove it or list it in .dockerignore",
        )
    return Item(rel, "file", stat.S_IMODE(info.st_mode), path, _sha256(path))


def _link(path: Path, rel: str, real_root: str) -> Item:
    target = os.readlink(path)
    resolved = os.path.realpath(path)
    inside = os.path.commonpath([resolved, real_root]) == real_root
    if os.path.isabs(target) or not inside:
        raise EnvError(
            f"{rel} in the project is a symlink to {target}, outside the project; it would "
            "put a file from this machine into the image",
            "make it a relative link inside the project, or list it in .dockerignore",
        )
    return Item(rel, "link", 0o777, path, target)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def digest(items: Iterable[Item], *extra: str) -> str:
    """A hash of names, types, modes and contents (not times, owners or the host path)."""
    hasher = hashlib.sha256()
    for text in extra:
        hasher.update(text.encode() + b"\0")
    for item in items:
        hasher.update(f"{item.kind}\0{item.name}\0{item.mode:o}\0{item.digest}\n".encode())
    return hasher.hexdigest()


def write_tar(out: IO[bytes], items: Iterable[Item], prefix: str, extra: dict[str, bytes]) -> None:
    """A reproducible tar: `extra` files (e.g. the Dockerfile) then `items` under `prefix`."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(extra.items()):
            tar.addfile(_info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
        for item in items:
            name = f"{prefix}{item.name}"
            if item.kind == "dir":
                tar.addfile(_info(name, tarfile.DIRTYPE, item.mode))
            elif item.kind == "link":
                info = _info(name, tarfile.SYMTYPE, 0o777)
                info.linkname = item.digest
                tar.addfile(info)
            else:
                size = item.source.stat().st_size
                with open(item.source, "rb") as handle:
                    tar.addfile(_info(name, tarfile.REGTYPE, item.mode, size), handle)


def _info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, 0
    return info
