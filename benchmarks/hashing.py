"""Hashing speed: run-project's file hash vs the machine's sha256 (openssl via hashlib on a
buffer already in memory), and the stat-cache hit for an unchanged file.

    python benchmarks/hashing.py [SIZE_MB]
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.tracking.hashing import HashCache, sha256_file  # noqa: E402


def main() -> None:
    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as tmp:
        path = Path(tmp) / "big.bin"
        block = os.urandom(1 << 20)
        with open(path, "wb") as out:
            for _ in range(size_mb):
                out.write(block)
        start = time.perf_counter()
        for _ in range(size_mb):
            hashlib.sha256(block).digest()
        machine = time.perf_counter() - start
        start = time.perf_counter()
        sha256_file(path)  # page cache is warm: measures hashing, not the disk
        ours = time.perf_counter() - start
        cache = HashCache(Path(tmp) / "hashes.db")
        cache.file(path)
        cache.flush()
        start = time.perf_counter()
        again = HashCache(Path(tmp) / "hashes.db")
        again.file(path)
        cached = time.perf_counter() - start
        print(f"{size_mb} MB: machine sha256 {size_mb / machine:.0f} MB/s, "
              f"run-project file hash {size_mb / ours:.0f} MB/s "
              f"(ratio {machine / ours:.2f}), unchanged file from stat cache {cached * 1000:.1f} ms")


if __name__ == "__main__":
    main()
