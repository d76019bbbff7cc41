"""`run-project envs list|gc`: parsing and output; what is listed and removed is decided in
runner/envs/inventory.py (and, for what a kind keeps outside the cache, by the kind)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import datetime

from runner.cli.table import TIME_STEPS, Column, keeping_end, render, shorter_time, terminal_width
from runner.envs import inventory
from runner.envs.base import EnvRow
from runner.errors import RunnerError


def main(args: Sequence[str]) -> int:
    """Dispatch `envs list|gc`."""
    ns = _envs_parser().parse_args(args)
    if ns.command == "list":
        inventory.catch_up_store()
        rows = inventory.list_envs() + ([] if ns.no_images else inventory.list_outside())
        print(json.dumps([r._asdict() for r in rows], indent=2) if ns.json
              else format_rows(rows, terminal_width()))  # fmt: skip
        return 0
    _collect(ns.store, ns.dry_run)  # first: containers may hold images
    return _gc(ns.older_than, ns.keep_last, ns.dry_run)


def _envs_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run-project envs", description="Cached environments.")
    sub = parser.add_subparsers(dest="command", required=True)
    lister = sub.add_parser("list", help="cached environments, most recently used first")
    lister.add_argument("--json", action="store_true", help="the environments as a JSON list")
    lister.add_argument(
        "--no-images", action="store_true", help="leave out Docker images (they are machine-wide)"
    )
    gc = sub.add_parser("gc", help="remove cached environments (never one in use)")
    gc.add_argument("--older-than", type=float, metavar="DAYS", help="unused for DAYS days")
    gc.add_argument("--keep-last", type=int, metavar="N", help="keep the N most recently used")
    gc.add_argument("--dry-run", action="store_true", help="say what would be removed")
    gc.add_argument("--store", help="the store asked about containers left by killed runs")
    return parser


def _collect(store_flag: str | None, dry_run: bool) -> None:
    try:
        lines = inventory.collect(store_flag, dry_run)
    except RunnerError as exc:  # the cache can still be cleaned without the store
        print(f"warning: containers of killed runs not checked: {exc.message}")
        return
    for line in lines:
        print(line)


def _gc(older_than: float | None, keep_last: int | None, dry_run: bool) -> int:
    inventory.check_limits(older_than, keep_last)
    swept = 0 if dry_run else inventory.sweep()
    freed, kept = 0, 0
    chosen = inventory.select_for_gc(inventory.list_envs(), older_than, keep_last)
    for removal in inventory.remove(chosen, dry_run):
        row = removal.row
        label = f"{row.kind}/{row.key[:12]} ({_human(row.size)}, last used {_when(row.last_used)})"
        for note in removal.notes:
            print(note)
        if removal.removed:
            print(f"{'would remove' if dry_run else 'removed'} {label}: {removal.why}")
            freed += row.size
        else:
            print(f"{'would keep' if dry_run else 'kept'} {label}: in use by a run")
            kept += 1
    if swept:
        print(f"removed {swept} unfinished build(s) left by interrupted runs")
    if older_than is None and keep_last is None:
        done = "nothing would be removed" if dry_run else "only unfinished builds were removed"
        print(f"no --older-than or --keep-last given: {done}")
    print(_total(freed, len(chosen) - kept, kept, dry_run))
    return 0


def _total(freed: int, removed: int, kept: int, dry_run: bool) -> str:
    in_use = f"; {kept} in use, kept" if kept else ""
    if dry_run:
        return f"would free {_human(freed)} ({removed} environment(s)){in_use}; nothing removed"
    return f"freed {_human(freed)}{in_use}"


def format_rows(rows: list[EnvRow], width: int | None = None) -> str:
    """A plain-text table of environments, fitted to `width` columns (None: not cut)."""
    if not rows:
        return "no cached environments"
    columns = [
        Column("KEY", [r.key[:12] for r in rows]),
        Column("KIND", [r.kind for r in rows]),
        Column("PYTHON", [r.python or "-" for r in rows], drop_rank=0),
        Column("SIZE", [_human(r.size) for r in rows]),
        Column("LAST USED", [_when(r.last_used) for r in rows], shortest=11, drop_rank=1,
               cut=shorter_time, steps=TIME_STEPS),
        Column("PROJECTS", [", ".join(r.projects) or "-" for r in rows], shortest=16,
               drop_rank=2, cut=keeping_end),
    ]  # fmt: skip
    return "\n".join(render(columns, width))


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M") if stamp else "never"
