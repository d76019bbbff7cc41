"""Fast sha256 of files and directory trees, with a stat cache so unchanged files are not re-read.

The cache (`<cache>/hashes.db`, SQLite) maps (path, size, mtime, ctime, inode, device) to the
digest. ctime is in the key because a program can set mtime back but not ctime: a file
rewritten with the same size and a restored mtime is still re-hashed. Symlinks are never
followed: a link is hashed as its target text.

A tree also gets one row of its own: the stamp of its last walk (treescan.Scan.stamp) with the
tree digest. When today's walk has the same stamp, nothing under the root changed, and the
digest is that row's: one lookup instead of ten thousand. Otherwise the tree is hashed file by
file, each file still from its own row when its stat matches.

Losing the cache only costs speed: a cache that cannot be opened or written is skipped, and one
that is not a database at all is replaced.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from pathlib import Path
from typing import TypeGuard

from runner.errors import RunnerError
from runner.tracking.treescan import Scan, scan

CHUNK = 1 << 20
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, size INTEGER, mtime INTEGER,"
    " ctime INTEGER, ino INTEGER, dev INTEGER, sha256 TEXT)",
    "CREATE TABLE IF NOT EXISTS trees (root TEXT PRIMARY KEY, stamp BLOB, sha256 TEXT,"
    " size INTEGER, files INTEGER)",
)
FileRow = tuple[str, int, int, int, int, int, str]
TreeRow = tuple[str, bytes, str, int, int]
# A path that is not UTF-8 (a surrogate-escaped str) cannot be bound as TEXT: not cached.
DB_ERRORS = (sqlite3.Error, UnicodeEncodeError)


def sha256_file(path: Path | str) -> str:
    """The sha256 of the file's bytes (hashlib.file_digest reads in large chunks, no copy)."""
    with open(path, "rb", buffering=0) as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class HashCache:
    """Digests keyed by stat identity; writes are collected and flushed once (`flush`)."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            from runner import settings  # only here: callers that name the file skip its cost

            try:
                path = settings.cache_dir() / "hashes.db"
            except RunnerError:
                path = None
        self.path = path
        self.conn: sqlite3.Connection | None = None
        self.pending: list[FileRow] = []
        self.pending_trees: dict[str, TreeRow] = {}
        self.hits = 0
        self.misses = 0
        # Rows under the roots `tree` preloaded: one query for a whole tree, not one per file.
        self.known: dict[str, tuple[int, int, int, int, int, str]] = {}
        self.preloaded: list[str] = []

    def _connect(self) -> sqlite3.Connection | None:
        if self.conn is None and self.path is not None:
            self.conn = _open(self.path)
            if self.conn is None:
                self.path = None  # a cache that cannot be opened only costs speed
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
            except DB_ERRORS:
                row = None
            if row and _is_digest(row[0]):
                self.hits += 1
                return row[0]
        self.misses += 1
        digest = sha256_file(path)
        self.pending.append((*key, digest))
        self.known[key[0]] = (*key[1:], digest)
        return digest

    def tree(self, root: Path) -> tuple[str, int, int]:
        """(digest, total bytes, file count) of a directory tree, symlinks not followed."""
        found = scan(str(root))
        stamp = found.stamp()
        same = self._same_tree(found.root, stamp)
        if same is not None:
            self.hits += same[2]
            return same
        result = self._hash_tree(found)
        self.pending_trees[found.root] = (found.root, stamp, *result)
        return result

    def _same_tree(self, root: str, stamp: bytes) -> tuple[str, int, int] | None:
        """The digest recorded for `root` when its walk had this very stamp, if any."""
        row: tuple[object, ...] | None = self.pending_trees.get(root)
        if row is not None:
            row = row[2:] if row[1] == stamp else None
        elif (conn := self._connect()) is not None:
            try:
                row = conn.execute(
                    "SELECT sha256, size, files FROM trees WHERE root = ? AND stamp = ?",
                    (root, stamp),
                ).fetchone()
            except DB_ERRORS:
                row = None
        if row is None:
            return None
        digest, size, files = row
        if _is_digest(digest) and isinstance(size, int) and isinstance(files, int):
            return digest, size, files
        return None  # a row we did not write: hash the tree again

    def _hash_tree(self, found: Scan) -> tuple[str, int, int]:
        """The tree digest, file by file: sha256 of the sorted lines `F <sha256> <path>` and
        `L <link target> <path>` (paths relative, POSIX), joined by newlines. Recorded runs
        compare these digests: this format must not change."""
        lines: list[str] = []
        total = count = 0
        prefix = found.path("")
        self._preload(prefix)
        for rel, key in zip(found.names, found.keys, strict=True):
            mode, size = key[0], key[1]
            if stat.S_ISLNK(mode):
                lines.append(f"L {os.readlink(prefix + rel)} {rel}")
            elif stat.S_ISREG(mode):
                lines.append(f"F {self._tree_file(prefix + rel, key)} {rel}")
                total += size
                count += 1
        # surrogateescape: a file name that is not UTF-8 is hashed as its bytes.
        text = "\n".join(sorted(lines)).encode("utf-8", "surrogateescape")
        return hashlib.sha256(text).hexdigest(), total, count

    def _tree_file(self, path: str, key: tuple[int, int, int, int, int, int]) -> str:
        """One file of a tree being hashed: from its preloaded row when the stat matches."""
        known = self.known.get(path)
        if known is not None and known[:5] == key[1:]:
            self.hits += 1
            return known[5]
        self.misses += 1
        digest = sha256_file(path)
        self.pending.append((path, *key[1:], digest))
        self.known[path] = (*key[1:], digest)
        return digest

    def _preload(self, prefix: str) -> None:
        """Read the cached rows of every file under `prefix` at once (a path range query)."""
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
        except DB_ERRORS:
            return
        self.known.update((row[0], tuple(row[1:])) for row in rows if _is_digest(row[6]))
        self.preloaded.append(prefix)

    def flush(self) -> None:
        """Write the new digests to the cache (one transaction), then close it."""
        conn = self._connect()
        if conn is not None and (self.pending or self.pending_trees):
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT OR REPLACE INTO hashes VALUES (?,?,?,?,?,?,?)",
                    (row for row in self.pending if _storable(row[0])),
                )
                conn.executemany(
                    "INSERT OR REPLACE INTO trees VALUES (?,?,?,?,?)",
                    (row for row in self.pending_trees.values() if _storable(row[0])),
                )
                conn.execute("COMMIT")
            except sqlite3.Error:
                pass  # losing cache entries only costs a re-hash next time
        self.pending.clear()
        self.pending_trees.clear()
        if conn is not None:
            conn.close()
            self.conn = None


def _is_digest(value: object) -> TypeGuard[str]:
    """A sha256 hex digest as this module writes it (a damaged or foreign row is not)."""
    return isinstance(value, str) and len(value) == 64


def _storable(path: str) -> bool:
    """Whether `path` can be stored as TEXT (names that are not UTF-8 are hashed every time)."""
    if path.isascii():
        return True
    try:
        path.encode()
    except UnicodeEncodeError:
        return False
    return True


def _open(path: Path, retry: bool = True) -> sqlite3.Connection | None:
    """The cache database, made if missing; None when it cannot be used. A file that is not
    a database (or is damaged) is removed and made again: otherwise every later run would
    silently go without the cache."""
    conn = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        # No fsync per commit: after a crash WAL mode keeps the file sound and at worst loses
        # the last writes, which only costs a re-hash.
        conn.execute("PRAGMA synchronous = NORMAL")
        for statement in SCHEMA:
            conn.execute(statement)
        return conn
    except (OSError, sqlite3.Error) as exc:
        if conn is not None:
            conn.close()
        code = getattr(exc, "sqlite_errorcode", None)
        if retry and code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
            try:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            except OSError:
                return None
            return _open(path, retry=False)
        return None


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
