"""`run-project runs ...`: list and show run records as tables or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from runner import settings
from runner.errors import EXIT_RUNNER_FAILED
from runner.tracking.store import Store, open_store


def main(args: Sequence[str]) -> int:
    """Dispatch `runs list|show`."""
    parser = argparse.ArgumentParser(prog="run-project runs")
    sub = parser.add_subparsers(dest="command", required=True)
    lister = sub.add_parser("list", help="runs, newest first")
    lister.add_argument("--experiment")
    lister.add_argument(
        "--status",
        type=str.upper,
        choices=["STARTING", "RUNNING", "FINISHED", "FAILED", "KILLED", "LOST"],
    )
    lister.add_argument("--limit", type=int, default=50)
    lister.add_argument("--json", action="store_true")
    lister.add_argument("--store")
    lister.add_argument("--param", action="append", default=[], metavar="COND", help="lr>0.01")
    lister.add_argument("--metric", action="append", default=[], metavar="COND", help="acc>=0.9")
    lister.add_argument("--sort", help="metric.acc, param.lr or a field; '-' first: descending")
    shower = sub.add_parser("show", help="everything in one run's record")
    shower.add_argument("run_id")
    shower.add_argument(
        "--json", action="store_true", help="the record as JSON (run-record schema)"
    )
    shower.add_argument("--store")
    syncer = sub.add_parser("sync", help="apply the journals of runs the store missed")
    syncer.add_argument("--store")
    from runner.cli import runs_compare, runs_push

    runs_compare.add_parsers(sub)
    runs_push.add_parser(sub)
    ns = parser.parse_args(args)
    store = open_store(settings.get("store", ns.store), settings.get("artifacts"))
    if ns.command == "sync":
        return sync(store)
    store.sweep_lost()
    if ns.command == "list":
        records = runs_compare.select(store, ns)
        print(json.dumps(records, indent=2) if ns.json else format_table(records))
        return 0
    if ns.command == "push":
        return runs_push.run(store, ns)
    if ns.command != "show":
        return runs_compare.run(store, ns)
    record = store.get_run(ns.run_id)
    if ns.json:
        print(json.dumps(record, indent=2))
        return 0
    print(format_record(record))
    for child_id, name, status in store.children_of(record["id"]):
        print(f"child run: {child_id} {name} {status}")
    return 0


def sync(store: Store) -> int:
    """`runs sync`: apply every pending journal now and say what each one brought."""
    replayed = store.replay_journals()
    for one in replayed:
        print(one.describe())
    if not replayed:
        print(f"nothing to apply: no journal is waiting for {store.label}")
    # A journal the store would not take: run-project failed, as for any store error.
    return EXIT_RUNNER_FAILED if any(one.error for one in replayed) else 0


def format_table(records: list[dict[str, Any]]) -> str:
    """A plain-text table of runs (one line each)."""
    if not records:
        return "no runs yet"
    header = [
        "ID",
        "NAME",
        "EXPERIMENT",
        "STATUS",
        "EXIT",
        "STARTED",
        "DURATION",
        "ENTRY",
        "PARAMS",
        "METRICS",
    ]
    rows = [header] + [_row(r) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    )


def _row(record: dict[str, Any]) -> list[str]:
    params = " ".join(f"{k}={_short(v['value'])}" for k, v in record.get("params", {}).items())
    return [
        record["id"][:8],
        _short(record.get("run_name") or "", 24),
        _short(record.get("experiment") or "", 16),
        record["status"],
        "" if record.get("exit_code") is None else str(record["exit_code"]),
        _local_time(record.get("start_time")),
        _duration(record.get("start_time"), record.get("end_time")),
        _short(record.get("entry_point") or "", 16),
        _short(params, 40),
        _short(_metrics(record), 40),
    ]


def _metrics(record: dict[str, Any]) -> str:
    summary = record.get("metrics") or {}
    return " ".join(f"{k}={v['last']:.4g}" for k, v in summary.items() if v.get("last") is not None)


def _short(value: Any, width: int = 12) -> str:
    text = str(value).replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def _parse(ts: str | None) -> datetime | None:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")) if ts else None


def _local_time(ts: str | None) -> str:
    parsed = _parse(ts)
    return parsed.astimezone().strftime("%Y-%m-%d %H:%M:%S") if parsed else ""


def _duration(start: str | None, end: str | None) -> str:
    began, ended = _parse(start), _parse(end)
    if not began or not ended:
        return ""
    seconds = (ended - began).total_seconds()
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def format_record(record: dict[str, Any]) -> str:
    """A readable, complete view of one record (nested sections indented)."""
    lines: list[str] = []
    _describe(record, 0, lines)
    return "\n".join(lines)


def _describe(value: Any, depth: int, lines: list[str]) -> None:
    pad = "  " * depth
    for key, item in value.items():
        if isinstance(item, dict) and item:
            lines.append(f"{pad}{key}:")
            _describe(item, depth + 1, lines)
        elif isinstance(item, list) and item and isinstance(item[0], dict):
            lines.append(f"{pad}{key}:")  # inputs, outputs: one line each
            lines.extend(f"{pad}  " + " ".join(f"{k}={v}" for k, v in i.items()) for i in item)
        elif isinstance(item, list):
            lines.append(f"{pad}{key}: {' '.join(map(str, item)) if item else '[]'}")
        else:
            lines.append(f"{pad}{key}: {'' if item is None else item}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
