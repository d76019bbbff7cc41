"""Lineage: an input whose hash equals an earlier run's output links the two runs.

`link_inputs` marks each input with the run that produced it (at the end of a run);
`describe` answers `runs lineage RUN_ID|FILE`: what produced a file, what it was made from,
and which runs used it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from runner.errors import StoreError
from runner.tracking.hashing import sha256_file
from runner.tracking.store import Store

MAX_DEPTH = 6


def link_inputs(store: Store, run_id: str, inputs: list[dict[str, Any]]) -> None:
    """Set `produced_by` on inputs whose content an earlier run wrote (the latest such run)."""
    for entry in inputs:
        if entry.get("kind") != "file":
            continue
        producers = {rid for rid, _ in store.files_with_hash(entry["sha256"], "output")}
        producers.discard(run_id)
        if producers:
            latest = max((store.get_run(rid) for rid in producers), key=lambda r: r["start_time"])
            entry["produced_by"] = latest["id"]


def describe(store: Store, target: str) -> str:
    """A readable lineage tree for a run id (or prefix) or a file path."""
    if os.path.isfile(target):
        return _describe_file(store, Path(target))
    if os.path.exists(target):
        raise StoreError(f"{target} is not a regular file", "name a file, or a run id")
    record = store.get_run(target)
    lines = [_run_line(record)]
    _made_from(store, record, 1, lines, {record["id"]})
    _used_by(store, record, 1, lines)
    return "\n".join(lines)


def _describe_file(store: Store, path: Path) -> str:
    digest = sha256_file(path)
    lines = [f"file {path} sha256:{digest[:16]}"]
    producers = sorted({rid for rid, _ in store.files_with_hash(digest, "output")})
    consumers = sorted({rid for rid, _ in store.files_with_hash(digest, "input")})
    if not producers:
        lines.append("  produced by no recorded run")
    for rid in producers:
        record = store.get_run(rid)
        lines.append("  produced by " + _run_line(record))
        _made_from(store, record, 2, lines, {rid})
    for rid in consumers:
        lines.append("  used by " + _run_line(store.get_run(rid)))
    return "\n".join(lines)


def _made_from(
    store: Store, record: dict[str, Any], depth: int, lines: list[str], seen: set[str]
) -> None:
    pad = "  " * depth
    inputs = record.get("inputs") or []
    lines.append(f"{pad}made from:" if inputs else f"{pad}made from: no recorded inputs")
    for entry in inputs:
        how = entry["source"] + (f" {entry['param']}" if entry.get("param") else "")
        lines.append(f"{pad}  {entry['path']} sha256:{entry['sha256'][:16]} ({how})")
        parent = entry.get("produced_by")
        if parent and parent not in seen and depth < MAX_DEPTH:
            parent_record = store.get_run(parent)
            lines.append(f"{pad}    produced by " + _run_line(parent_record))
            _made_from(store, parent_record, depth + 3, lines, seen | {parent})


def _used_by(store: Store, record: dict[str, Any], depth: int, lines: list[str]) -> None:
    pad = "  " * depth
    outputs = record.get("outputs") or []
    lines.append(f"{pad}outputs:" if outputs else f"{pad}outputs: none recorded")
    for entry in outputs:
        lines.append(f"{pad}  {entry['name']} sha256:{entry['sha256'][:16]}")
        users = {rid for rid, _ in store.files_with_hash(entry["sha256"], "input")}
        users.discard(record["id"])
        for rid in sorted(users):
            lines.append(f"{pad}    used by " + _run_line(store.get_run(rid)))


def _run_line(record: dict[str, Any]) -> str:
    return (
        f"run {record['id'][:8]} ({record.get('run_name')}, entry {record.get('entry_point')}, "
        f"{record['status']}, {record.get('start_time')})"
    )
