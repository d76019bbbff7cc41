"""`run-project envs list|gc`: the cached environments of every kind, and their removal.

Every kind keeps its entries under `<cache>/envs/<kind>/<key>/` (cache.py's layout), so this
module knows no kind. `gc` removes an entry only when it can take the entry's lock
exclusively, which a run using the entry prevents: an env in use is never removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from runner import cache, settings
from runner.errors import RunnerError

DAY = 86400.0


@dataclass(frozen=True)
class EnvRow:
    """One cached environment, as `envs list` shows it."""

    key: str
    kind: str
    size: int
    last_used: float
    projects: list[str]
    python: str | None
    path: str


def main(args: Sequence[str]) -> int:
    """Dispatch `envs list|gc`."""
    parser = argparse.ArgumentParser(prog="run-project envs")
    sub = parser.add_subparsers(dest="command", required=True)
    lister = sub.add_parser("list", help="cached environments, most recently used first")
    lister.add_argument("--json", action="store_true")
    lister.add_argument(
        "--no-images", action="store_true", help="leave out Docker images (they are machine-wide)"
    )
    gc = sub.add_parser("gc", help="remove cached environments (never one in use)")
    gc.add_argument("--older-than", type=float, metavar="DAYS", help="unused for DAYS days")
    gc.add_argument("--keep-last", type=int, metavar="N", help="keep the N most recently used")
    gc.add_argument("--dry-run", action="store_true", help="say what would be removed")
    gc.add_argument("--store", help="the store asked about containers left by killed runs")
    ns = parser.parse_args(args)
    if ns.command == "list":
        rows = list_envs() + ([] if ns.no_images else list_images())
        print(json.dumps([asdict(r) for r in rows], indent=2) if ns.json else format_rows(rows))
        return 0
    _remove_orphaned_containers(ns.store, ns.dry_run)  # first: they may hold images
    return _gc(ns.older_than, ns.keep_last, ns.dry_run)


def _remove_orphaned_containers(store_flag: str | None, dry_run: bool) -> None:
    from runner.envs.docker.orphans import remove_orphans
    from runner.tracking.store import open_store

    try:
        store = open_store(settings.get("store", store_flag), settings.get("artifacts"))
        lines = remove_orphans(store, dry_run) if store.exists() else []
    except RunnerError as exc:  # the cache can still be cleaned without the store
        print(f"warning: containers of killed runs not checked: {exc.message}")
        return
    for line in lines:
        print(line)


def areas() -> list[Path]:
    """The cache area of every kind that has one (`<cache>/envs/<kind>`)."""
    root = settings.cache_dir() / "envs"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_envs() -> list[EnvRow]:
    """Every complete environment of every kind, most recently used first."""
    rows = []
    for area in areas():
        for entry in cache.entries(area):
            facts = (cache.read_marker(entry) or {}).get("facts") or {}
            rows.append(
                EnvRow(
                    key=entry.name,
                    kind=area.name,
                    size=_size(entry),
                    last_used=cache.last_used(entry),
                    projects=cache.users(entry),
                    python=facts.get("python"),
                    path=str(entry),
                )
            )
    return sorted(rows, key=lambda r: r.last_used, reverse=True)


def list_images() -> list[EnvRow]:
    """Docker images built by run-project (labelled as ours; never anyone else's)."""
    from runner.envs.docker.images import image_rows

    return [EnvRow(python=None, **row) for row in image_rows()]


def select_for_gc(
    rows: list[EnvRow], older_than: float | None, keep_last: int | None
) -> list[EnvRow]:
    """The rows `gc` would remove: unused for `older_than` days, or beyond the newest N."""
    now = time.time()
    chosen = []
    for index, row in enumerate(rows):  # rows are most recently used first
        too_old = older_than is not None and now - row.last_used > older_than * DAY
        too_many = keep_last is not None and index >= keep_last
        if too_old or too_many:
            chosen.append(row)
    return chosen


def _gc(older_than: float | None, keep_last: int | None, dry_run: bool) -> int:
    if (older_than is not None and older_than < 0) or (keep_last is not None and keep_last < 0):
        raise RunnerError("--older-than and --keep-last must not be negative", "pass 0 or more")
    swept = 0 if dry_run else sum(cache.sweep(area) for area in areas())
    freed, kept = 0, 0
    for row in select_for_gc(list_envs(), older_than, keep_last):
        label = f"{row.kind}/{row.key[:12]} ({_human(row.size)}, last used {_when(row.last_used)})"
        if dry_run:
            print(f"would remove {label}")
        elif _remove(row):
            print(f"removed {label}")
            freed += row.size
        else:
            print(f"kept {label}: in use by a run")
            kept += 1
    if swept:
        print(f"removed {swept} unfinished build(s) left by interrupted runs")
    if older_than is None and keep_last is None:
        print("no --older-than or --keep-last given: only unfinished builds were removed")
    print(f"freed {_human(freed)}" + (f"; {kept} in use, kept" if kept else ""))
    return 0


def _remove(row: EnvRow) -> bool:
    """Remove an entry unless in use; a docker entry takes its images with it."""
    entry = Path(row.path)
    images: list[str] = []
    if row.kind == "docker":
        from runner.envs.docker.kind import entry_images

        images = entry_images(entry)
    if not cache.try_remove(entry.parent, entry):
        return False
    if images:
        from runner.envs.docker.images import remove_images

        for ref in remove_images(images):
            print(f"kept image {ref}: a container still uses it")
    return True


def format_rows(rows: list[EnvRow]) -> str:
    """A plain-text table of environments."""
    if not rows:
        return "no cached environments"
    table = [["KEY", "KIND", "PYTHON", "SIZE", "LAST USED", "PROJECTS"]]
    for r in rows:
        projects = ", ".join(r.projects) or "-"
        table.append([r.key[:12], r.kind, r.python or "-", _human(r.size), _when(r.last_used),
                      projects])  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in table
    )


def _size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed while we walked
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M") if stamp else "never"
