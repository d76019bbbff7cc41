"""Hashing worker: time one hash of a file or a tree, in this process, and print the
`seconds=…,cpu=…` line harness.run_worker reads (interpreter start-up is not counted).

    python hash_ops.py ours CACHE_DB PATH      run-project's HashCache (a file or a tree)
    python hash_ops.py hashlib PATH            hashlib sha256 of the same bytes: the limit
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import timed


def hashlib_all(path: Path) -> None:
    """sha256 of every regular file under `path` (or of `path`), read in 1 MiB chunks."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for name in files:
        with open(name, "rb", buffering=0) as handle:
            hashlib.file_digest(handle, "sha256").hexdigest()


def ours(cache_db: Path, path: Path) -> None:
    from runner.tracking.hashing import HashCache

    cache = HashCache(cache_db)
    if path.is_file():
        cache.file(path, os.stat(path))
    else:
        cache.tree(path)
    cache.flush()


def main() -> None:
    if sys.argv[1] == "ours":
        print(timed(lambda: ours(Path(sys.argv[2]), Path(sys.argv[3]))))
    else:
        print(timed(lambda: hashlib_all(Path(sys.argv[2]))))


if __name__ == "__main__":
    main()
