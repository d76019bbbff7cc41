"""Fast sha256 of files and directory trees, with a stat cache so unchanged files are not re-read.

The cache (`<cache>/hashes.db`, SQLite) maps (path, size, mtime, ctime, inode, device) to the
digest. ctime is in the key because a program can set mtime back but not ctime: a file
rewritten with the same size and a restored mtime is still re-hashed. Symlinks are never
followed: a link is hashed as its target text.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from pathlib import Path

from runner import settings
from runner.errors import RunnerError

CHUNK = 1 << 20


def sha256_file(path: Path | str) -> str:
    """The sha256 of the file's bytes (hashlib.file_digest reads in large chunks, no copy)."""
    with open(path, "rb", buffering=0) as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class HashCache:
    """Digests keyed by stat identity; writes are collected and flushed once (`flush`)."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            try:
                path = settings.cache_dir() / "hashes.db"
            except RunnerError:
                path = None
        self.path = path
        self.conn: sqlite3.Connection | None = None
        self.pending: list[tuple[str, int, int, int, int, int, str]] = []
        self.hits = 0
        self.misses = 0
        # Rows under the roots `tree` preloaded: one query for a whole tree, not one per file.
        self.known: dict[str, tuple[int, int, int, int, int, str]] = {}
        self.preloaded: list[str] = []

    def _connect(self) -> sqlite3.Connection | None:
        if self.conn is None and self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                self.conn.execute("PRAGMA journal_mode = WAL")
                self.conn.execute(
                    "CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, size INTEGER,"
                    " mtime INTEGER, ctime INTEGER, ino INTEGER, dev INTEGER, sha256 TEXT)"
                )
            except (OSError, sqlite3.Error):
                self.path = None  # a cache that cannot be opened only costs speed
                self.conn = None
        return self.conn

    def file(self, path: Path | str, st: os.stat_result | None = None) -> str:
        """The sha256 of the regular file at `path` (from the cache when its stat matches)."""
        st = st or os.lstat(path)
        key = (str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
        if any(key[0].startswith(prefix) for prefix in self.preloaded):
            known = self.known.get(key[0])
            if known is not None and known[:5] == key[1:]:
                self.hits += 1
                return known[5]
        elif (conn := self._connect()) is not None:
            try:
                row = conn.execute(
                    "SELECT sha256 FROM hashes WHERE path = ? AND size = ? AND mtime = ?"
                    " AND ctime = ? AND ino = ? AND dev = ?",
                    key,
                ).fetchone()
            except sqlite3.Error:
                row = None
            if row:
                self.hits += 1
                return str(row[0])
        self.misses += 1
        digest = sha256_file(path)
        self.pending.append((*key, digest))
        self.known[key[0]] = (*key[1:], digest)
        return digest

    def tree(self, root: Path) -> tuple[str, int, int]:
        """(digest, total bytes, file count) of a directory tree, symlinks not followed."""
        lines: list[str] = []
        total = count = 0
        self._preload(root)
        base = len(str(root).rstrip(os.sep) + os.sep)
        for path, st in _scan(str(root)):
            rel = path[base:].replace(os.sep, "/")
            if stat.S_ISLNK(st.st_mode):
                lines.append(f"L {os.readlink(path)} {rel}")
            elif stat.S_ISREG(st.st_mode):
                lines.append(f"F {self.file(path, st)} {rel}")
                total += st.st_size
                count += 1
        digest = hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()
        return digest, total, count

    def _preload(self, root: Path) -> None:
        """Read the cached rows of every file under `root` at once (a path range query)."""
        prefix = str(root).rstrip(os.sep) + os.sep
        conn = self._connect()
        if conn is None or any(prefix.startswith(p) for p in self.preloaded):
            return
        upper = prefix[:-1] + chr(ord(os.sep) + 1)  # just past every path under the prefix
        try:
            rows = conn.execute(
                "SELECT path, size, mtime, ctime, ino, dev, sha256 FROM hashes"
                " WHERE path >= ? AND path < ?",
                (prefix, upper),
            ).fetchall()
        except sqlite3.Error:
            return
        self.known.update((row[0], tuple(row[1:])) for row in rows)
        self.preloaded.append(prefix)

    def flush(self) -> None:
        """Write the new digests to the cache (one transaction), then close it."""
        conn = self._connect()
        if conn is not None and self.pending:
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT OR REPLACE INTO hashes VALUES (?,?,?,?,?,?,?)", self.pending
                )
                conn.execute("COMMIT")
            except sqlite3.Error:
                pass  # losing cache entries only costs a re-hash next time
        self.pending.clear()
        if conn is not None:
            conn.close()
            self.conn = None


def _scan(root: str) -> list[tuple[str, os.stat_result]]:
    """`walk` on plain strings, for `tree`: a Path per file costs more than a cached hash."""
    found: list[tuple[str, os.stat_result]] = []
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
            else:
                found.append((entry.path, st))
    return found


def walk(
    root: Path, skip: frozenset[str] = frozenset(), skip_paths: frozenset[str] = frozenset()
) -> list[tuple[Path, os.stat_result]]:
    """Every non-directory entry under `root` with its lstat, not following symlinks; names in
    `skip`, absolute paths in `skip_paths` and unreadable directories are left out."""
    found: list[tuple[Path, os.stat_result]] = []
    stack = [root]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            if entry.name in skip or entry.path in skip_paths:
                continue
            path = Path(entry.path)
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(path)
            else:
                found.append((path, st))
    return found
