"""Probed interpreter versions remembered across runs, keyed by the binary's identity.

Starting `pythonX.Y -c ...` to learn its version costs a warm run tens of milliseconds. The
answer cannot change while the resolved executable keeps its path, size, mtime and inode,
so it is kept in `<cache>/interpreters.json`; a reinstall changes the stamp and is probed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from runner import settings
from runner.errors import RunnerError

NAME = "interpreters.json"


def _stamp(exe: Path) -> str | None:
    try:
        real = os.path.realpath(exe)
        st = os.stat(real)
    except OSError:
        return None
    return f"{real}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def _file() -> Path | None:
    try:
        return settings.cache_dir() / NAME
    except RunnerError:
        return None


def _read(where: Path) -> dict[str, list[str]]:
    try:
        data = json.loads(where.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lookup(exe: Path) -> tuple[str | None, tuple[str, str] | None]:
    """(stamp of `exe`, its remembered (version, implementation) or None)."""
    stamp, where = _stamp(exe), _file()
    if stamp is None or where is None:
        return stamp, None
    found = _read(where).get(stamp)
    if isinstance(found, list) and len(found) == 2 and all(isinstance(x, str) for x in found):
        return stamp, (found[0], found[1])
    return stamp, None


def remember(stamp: str | None, version: str, implementation: str) -> None:
    """Add one probe result (atomic replace; a lost race only costs a later probe)."""
    where = _file()
    if stamp is None or where is None:
        return
    data = _read(where)
    data[stamp] = [version, implementation]
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        staging = where.with_name(f"{NAME}.{os.getpid()}.tmp")
        staging.write_text(json.dumps(data))
        os.replace(staging, where)
    except OSError:
        pass
