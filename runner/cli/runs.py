"""`run-project runs ...`: list and show run records as tables or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from runner import settings
from runner.cli.args import STORE_HELP
from runner.cli.table import TIME_STEPS, Column, render, shorter_time, terminal_width
from runner.errors import EXIT_RUNNER_FAILED
from runner.tracking.store import Store, open_current, open_store

DEFAULT_LIMIT = 20  # a screenful, as `git log -n`; `--all` for every run


def main(args: Sequence[str]) -> int:
    """Dispatch `runs list|show|sync|...`."""
    from runner.cli import runs_compare, runs_push

    ns = _runs_parser().parse_args(args)
    if ns.command == "sync":  # reports on every journal it applies
        return sync(open_store(settings.get("store", ns.store), settings.get("artifacts")))
    store = open_current(settings.get("store", ns.store), settings.get("artifacts"))
    store.sweep_lost()
    if ns.command == "list":
        return _list(store, ns)
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


def _runs_parser() -> argparse.ArgumentParser:
    from runner.cli import runs_compare, runs_push

    parser = argparse.ArgumentParser(prog="run-project runs", description="Ask the run store.")
    sub = parser.add_subparsers(dest="command", required=True)
    lister = sub.add_parser("list", help="runs, newest first")
    lister.add_argument("--experiment", help="only the runs of this experiment")
    lister.add_argument(
        "--status",
        type=str.upper,
        choices=["STARTING", "RUNNING", "FINISHED", "FAILED", "KILLED", "LOST"],
        help="only the runs in this state",
    )
    lister.add_argument("-n", "--limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                        help=f"show the N newest (or first sorted) runs (default {DEFAULT_LIMIT}; "
                        "0: all)")  # fmt: skip
    lister.add_argument("-a", "--all", dest="limit", action="store_const", const=0,
                        help="show every run (as --limit 0)")  # fmt: skip
    lister.add_argument("--json", action="store_true", help="the records as a JSON list")
    lister.add_argument("--store", help=STORE_HELP)
    lister.add_argument("--param", action="append", default=[], metavar="COND",
                        help="a parameter condition, e.g. 'lr>0.01' (repeatable)")  # fmt: skip
    lister.add_argument("--metric", action="append", default=[], metavar="COND",
                        help="a metric condition, e.g. 'acc>=0.9', or a name: has it")  # fmt: skip
    lister.add_argument("--sort", help="metric.acc, param.lr or a field; '-' first: descending")
    shower = sub.add_parser("show", help="everything in one run's record")
    shower.add_argument("run_id", help="a run id or a unique prefix of one")
    shower.add_argument(
        "--json", action="store_true", help="the record as JSON (run-record schema)"
    )
    shower.add_argument("--store", help=STORE_HELP)
    syncer = sub.add_parser("sync", help="apply the journals of runs the store missed")
    syncer.add_argument("--store", help=STORE_HELP)
    runs_compare.add_parsers(sub)
    runs_push.add_parser(sub)
    return parser


def _list(store: Store, ns: argparse.Namespace) -> int:
    """`runs list`: the table (fitted to the terminal) or JSON, and how many more matched."""
    from runner.cli import runs_compare

    records = runs_compare.select(store, ns)
    more = runs_compare.not_shown(store, ns, len(records))
    if ns.json:
        print(json.dumps(records, indent=2))
    else:
        print(format_table(records, terminal_width()))
    if more:
        note = f"{more} more run{'s' if more > 1 else ''} (use --limit N or --all)"
        print(f"note: {note}" if ns.json else f"… {note}", file=sys.stderr if ns.json else None)
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


def format_table(records: list[dict[str, Any]], width: int | None = None) -> str:
    """A plain-text table of runs (one line each), fitted to `width` columns (None: not cut).
    Narrowed in this order: params and metrics cut, then ENTRY, EXPERIMENT, EXIT, DURATION
    left out, STARTED without its year and seconds; ID and STATUS always shown."""
    if not records:
        return "no runs yet"
    rows = [_row(r) for r in records]

    def cells(index: int) -> list[str]:
        return [row[index] for row in rows]

    columns = [
        Column("ID", cells(0)),
        Column("NAME", cells(1), shortest=8, drop_rank=6),
        Column("EXPERIMENT", cells(2), shortest=10, drop_rank=1),
        Column("STATUS", cells(3)),
        Column("EXIT", cells(4), drop_rank=2),
        Column("STARTED", cells(5), shortest=11, drop_rank=4, cut=shorter_time, steps=TIME_STEPS),
        Column("DURATION", cells(6), drop_rank=3),
        Column("ENTRY", cells(7), shortest=8, drop_rank=0),
        Column("PARAMS", cells(8), shortest=12, drop_rank=5),
        Column("METRICS", cells(9), shortest=12, drop_rank=7),
    ]
    return "\n".join(render(columns, width))


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
