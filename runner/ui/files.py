"""A run's files as the web UI reads them: confined to the run's artifact directory.

A name from a URL is refused if any part is `..`, empty, hidden behind a backslash or a
control character (tracking.artifacts.check_name), and again if its real path (symlinks
followed) leaves the run's directory: an encoded `..` is decoded once by the server and then
meets the same check, a symlink out is caught by the second (docs/ui.md#safety).
"""

from __future__ import annotations

import os
from pathlib import Path

from runner.errors import NotFoundError
from runner.tracking.artifacts import ArtifactError, check_name

TAIL_BYTES = 64 * 1024
SHOW_BYTES = 256 * 1024


def confined(run_dir: Path, name: str) -> Path:
    """The real path of `name` inside `run_dir`; NotFound for anything outside or missing."""
    if name in ("", "."):
        target = run_dir
    else:
        try:
            check_name(name)
        except ArtifactError as exc:
            raise NotFoundError(exc.message, exc.hint) from exc
        target = run_dir / name
    root = run_dir.resolve()
    real = target.resolve()
    if real != root and not real.is_relative_to(root):
        raise NotFoundError(f"{name!r} is outside the run's files", "browse from the run's page")
    if not real.exists():
        raise NotFoundError(f"no file {name!r} in this run", "browse from the run's page")
    return real


def listing(directory: Path) -> list[tuple[str, bool, int]]:
    """(name, is a directory, size) of a directory's entries, directories first."""
    entries = []
    for entry in os.scandir(directory):
        is_dir = entry.is_dir(follow_symlinks=False)
        size = 0 if is_dir else entry.stat(follow_symlinks=False).st_size
        entries.append((entry.name, is_dir, size))
    return sorted(entries, key=lambda e: (not e[1], e[0]))


def read_text(path: Path | None, limit: int = SHOW_BYTES) -> str | None:
    """The start of a small text file (None if absent); invalid UTF-8 shown replaced."""
    if path is None or not path.is_file():
        return None
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    text = data[:limit].decode("utf-8", "replace")
    return text + ("\n… (cut; download the file for the rest)" if len(data) > limit else "")


def tail(path: Path, offset: int | None) -> tuple[str, int]:
    """The log's text from `offset` (else its last TAIL_BYTES) and the offset after it."""
    try:
        size = path.stat().st_size
    except OSError:
        return "", 0
    start = max(0, size - TAIL_BYTES) if offset is None else min(max(offset, 0), size)
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read(min(size - start, 4 * TAIL_BYTES))
    return data.decode("utf-8", "replace"), start + len(data)
