"""One walk of a directory tree for hashing: each non-directory entry's relative path and
stat key, in the filesystem's own order, and a stamp that stays equal only while all of them do.

An unchanged tree is recognised from its stamp alone (hashing.HashCache.tree), so this walk is
most of what re-hashing an unchanged tree costs: one lstat per entry is unavoidable, so the
rest is kept to plain strings and tuples (no Path objects, no per-entry function calls).
"""

from __future__ import annotations

import hashlib
import marshal
import os
import stat

# (mode, size, mtime_ns, ctime_ns, inode, device). ctime is there because a program can set
# mtime back but not ctime; the inode because a file replaced by another (or by a symlink)
# is a new inode even when everything else matches.
Key = tuple[int, int, int, int, int, int]

# scandir on a directory fd stats each entry relative to it (fstatat): the kernel resolves
# one name, not the whole path, per file.
_BY_FD = os.scandir in os.supports_fd
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class Scan:
    """The non-directory entries under `root`: relative POSIX paths and their keys, in walk
    order (which is the filesystem's, stable while no directory changes). A plain class:
    importing dataclasses would cost more than re-hashing an unchanged tree."""

    __slots__ = ("keys", "names", "root")

    def __init__(self, root: str, names: list[str], keys: list[Key]) -> None:
        self.root = root
        self.names = names
        self.keys = keys

    def stamp(self) -> bytes:
        """sha256 of every name and key: equal stamps mean no entry was added, removed,
        renamed, rewritten or replaced. marshal format 2 has no back-references, so equal
        values always give equal bytes, in any process."""
        return hashlib.sha256(marshal.dumps((self.names, self.keys), 2)).digest()

    def path(self, rel: str) -> str:
        """The full path of an entry, spelled as os.scandir(root) would (the per-file cache
        rows are keyed by that spelling)."""
        return self.root.rstrip(os.sep) + os.sep + rel


def scan(root: str) -> Scan:
    """Walk `root` (followed if it is a symlink; nothing below it is). Unreadable directories
    are left out, as are entries that vanish while we look."""
    found = Scan(root, [], [])
    stack = [("", root, 0)]  # (relative prefix, path, extra open flags)
    while stack:
        _read_dir(*stack.pop(), found, stack)
    return found


def _read_dir(
    rel: str, path: str, flags: int, found: Scan, stack: list[tuple[str, str, int]]
) -> None:
    """Add one directory's entries to `found` and its subdirectories to `stack`. O_NOFOLLOW
    below the root: a directory swapped for a symlink mid-walk is not entered."""
    try:
        fd = os.open(path, _DIR_FLAGS | flags) if _BY_FD else None
    except OSError:
        return
    names, keys = found.names, found.keys
    try:
        with os.scandir(path if fd is None else fd) as listing:
            for entry in listing:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # gone since the listing
                if stat.S_ISDIR(st.st_mode):
                    stack.append((rel + entry.name + "/", path + os.sep + entry.name, _NOFOLLOW))
                else:
                    names.append(rel + entry.name)
                    keys.append(
                        (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
                         st.st_dev)
                    )  # fmt: skip
    except OSError:
        return  # unreadable (permission denied) or gone: left out
    finally:
        if fd is not None:
            os.close(fd)
