"""What `envs list|gc` works on: the cached environments of every kind, what kinds keep
outside the cache, and their removal.

Every kind keeps its entries under `<cache>/envs/<kind>/<key>/` (cache.py's layout), so the
listing knows no kind; what a kind keeps elsewhere (docker: images, containers) it lists and
removes itself through its hooks (`EnvKind.inventory`, `remove`, `collect`). `gc` removes an
entry only when it can take the entry's lock exclusively, which a run using the entry
prevents: an env in use is never removed.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from runner import cache, settings
from runner.envs import KIND_CLASSES, new_kind
from runner.envs.base import EnvRow
from runner.errors import RunnerError, UsageError

DAY = 86400.0


class Chosen(NamedTuple):
    """A row `gc` removes, and why (which limit it is past)."""

    row: EnvRow
    why: str


class Removal(NamedTuple):
    """What `gc` did with one row: removed (or, dry, would), or kept because a run uses it;
    `why` it was chosen; `notes` say what of it had to stay."""

    row: EnvRow
    removed: bool
    notes: list[str]
    why: str = ""


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


def list_outside() -> list[EnvRow]:
    """What every kind keeps outside the cache (docker images: machine-wide)."""
    return [row for name in KIND_CLASSES for row in new_kind(name).inventory()]


def check_limits(older_than: float | None, keep_last: int | None) -> None:
    """Refuse negative `gc` limits (before anything is removed)."""
    if (older_than is not None and older_than < 0) or (keep_last is not None and keep_last < 0):
        raise UsageError("--older-than and --keep-last must not be negative", "pass 0 or more")


def select_for_gc(
    rows: list[EnvRow], older_than: float | None, keep_last: int | None
) -> list[Chosen]:
    """The rows `gc` would remove, each with why: unused for `older_than` days, or beyond
    the newest N."""
    now = time.time()
    chosen = []
    for index, row in enumerate(rows):  # rows are most recently used first
        why = []
        if older_than is not None and now - row.last_used > older_than * DAY:
            days = (now - row.last_used) / DAY
            why.append(f"unused for {days:.1f} days (--older-than {older_than:g})")
        if keep_last is not None and index >= keep_last:
            why.append(f"not among the {keep_last} most recently used (--keep-last {keep_last})")
        if why:
            chosen.append(Chosen(row, "; ".join(why)))
    return chosen


def sweep() -> int:
    """Remove what interrupted builds left in every area; returns how many."""
    return sum(cache.sweep(area) for area in areas())


def remove(chosen: list[Chosen], dry_run: bool) -> Iterator[Removal]:
    """Remove each row's entry unless in use, through its kind (which takes what it keeps
    outside the cache with it); one `Removal` per row, as it happens. Dry, nothing is
    removed: a row counts as removed unless a run holds it now."""
    for row, why in chosen:
        if dry_run:
            entry = Path(row.path)
            yield Removal(row, not cache.in_use(entry.parent, entry), [], why)
            continue
        notes = _remove_entry(row)
        yield Removal(row, notes is not None, notes or [], why)


def _remove_entry(row: EnvRow) -> list[str] | None:
    entry = Path(row.path)
    if row.kind not in KIND_CLASSES:  # an area no kind of this version owns: plain removal
        return [] if cache.try_remove(entry.parent, entry) else None
    return new_kind(row.kind).remove(entry)


def catch_up_store() -> None:
    """`envs list` opens no store, but like every command it applies the journals waiting
    for the configured one (docs/tracking.md, "Replay"): one directory listing when none
    is; a store that cannot take them keeps them, with a warning."""
    from runner.tracking.store import open_current

    with contextlib.suppress(RunnerError):
        open_current(settings.get("store"), settings.get("artifacts")).close()


def collect(store_flag: str | None, dry_run: bool) -> list[str]:
    """Ask every kind to remove what runs that are over left outside the cache (docker:
    containers of killed runs); the store says which runs are over."""
    from runner.tracking.store import open_current

    store = open_current(settings.get("store", store_flag), settings.get("artifacts"))
    if not store.exists():
        return []
    if not dry_run:  # runs whose runner died: closed LOST, what they left running stopped
        store.sweep_lost()
    return [line for name in KIND_CLASSES for line in new_kind(name).collect(store, dry_run)]


def _size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed while we walked
                total += os.lstat(os.path.join(root, name)).st_size
    return total
