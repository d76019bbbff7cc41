"""`runs list` filters and `runs compare|diff|lineage|plot|export|import`: parsing and output only;
the work is in tracking/ (query, compare, lineage, plot)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from runner.cli.args import STORE_HELP
from runner.cli.table import Column, render, terminal_width
from runner.errors import RunnerError
from runner.tracking import compare, lineage, query
from runner.tracking.store import Store


def add_parsers(sub: Any) -> None:
    """Add the subcommands to `runs`' subparsers."""
    comparer = sub.add_parser("compare", help="one table of several runs, differences marked")
    comparer.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="runs to compare")
    differ = sub.add_parser("diff", help="what changed from run A to run B")
    differ.add_argument("run_ids", nargs=2, metavar="RUN", help="run A, then run B")
    liner = sub.add_parser("lineage", help="what produced a file or run, and what used it")
    liner.add_argument("target", metavar="RUN_ID|FILE", help="a run, or a file it read or wrote")
    plotter = sub.add_parser("plot", help="learning curves of runs to a PNG")
    plotter.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="runs to draw")
    plotter.add_argument("--metric", required=True, help="the metric to draw")
    plotter.add_argument("-o", "--output", default="plot.png", help="the PNG to write")
    plotter.add_argument("--log-y", action="store_true", help="values on a log scale")
    exporter = sub.add_parser("export", help="a run's record, metric points and files")
    exporter.add_argument("run_id", help="a run id or a unique prefix of one")
    exporter.add_argument("--json", action="store_true", default=True, help="(the default)")
    exporter.add_argument(
        "-o", "--output", help="write a run bundle (run.tar.gz) to rerun elsewhere"
    )
    exporter.add_argument("--with-inputs", action="store_true", help="bundle the input files too")
    exporter.add_argument(
        "--with-outputs", action="store_true", help="bundle the output files too (for import)"
    )
    importer = sub.add_parser(
        "import", help="add a run bundle's run (record, metrics, files) to this store"
    )
    importer.add_argument("bundle", metavar="BUNDLE", help="a run.tar.gz from `runs export -o`")
    for parser in (comparer, differ, liner, plotter, exporter, importer):
        parser.add_argument("--store", help=STORE_HELP)


def select(store: Store, ns: argparse.Namespace) -> list[dict[str, Any]]:
    """The records `runs list` shows: filtered, sorted, limited."""
    conditions = [query.parse_condition("param", c) for c in ns.param]
    conditions += [query.parse_condition("metric", c) for c in ns.metric]
    from runner.tracking.listing import select_runs  # filters, sort and limit run in SQL

    return select_runs(store, ns.experiment, ns.status, conditions, ns.sort, ns.limit)


def not_shown(store: Store, ns: argparse.Namespace, shown: int) -> int:
    """How many runs matched `runs list`'s filters beyond the `shown` ones its limit let in
    (a count in SQL: no record is read)."""
    if not ns.limit or shown < ns.limit:
        return 0
    conditions = [query.parse_condition("param", c) for c in ns.param]
    conditions += [query.parse_condition("metric", c) for c in ns.metric]
    from runner.tracking.listing import count_runs

    return max(count_runs(store, ns.experiment, ns.status, conditions) - shown, 0)


def run(store: Store, ns: argparse.Namespace) -> int:
    """Dispatch compare, diff, lineage, plot, export and import."""
    if ns.command == "compare":
        print(_compare_table([store.get_run(i) for i in ns.run_ids], terminal_width()))
    elif ns.command == "diff":
        print(compare.diff(store.get_run(ns.run_ids[0]), store.get_run(ns.run_ids[1])))
    elif ns.command == "lineage":
        print(lineage.describe(store, ns.target))
    elif ns.command == "plot":
        _plot(store, ns.run_ids, ns.metric, Path(ns.output), ns.log_y)
    elif ns.command == "import":
        _import(store, Path(ns.bundle))
    elif ns.command == "export" and ns.output:
        _bundle(store, ns)
    elif ns.command == "export":
        record = store.get_run(ns.run_id)
        metrics = {
            key: [[step, value] for step, value in store.metric_history(record["id"], key)]
            for key in record.get("metrics") or {}
        }
        print(json.dumps({"record": record, "metric_points": metrics}, indent=2))
    return 0


def _compare_table(records: list[dict[str, Any]], width: int | None) -> str:
    """`runs compare`'s table fitted to `width`: fact names and values cut, no run left out."""
    table = compare.compare_rows(records)
    header, rows = table[0], table[1:]
    columns = [
        Column("", [row[0] for row in rows]),
        Column("", [row[1] for row in rows], shortest=16, cut=compare.cut_keeping_end),
        *(Column(title, [row[i] for row in rows], shortest=8) for i, title in enumerate(header)
          if i >= 2),
    ]  # fmt: skip
    return "\n".join([*render(columns, width), f"({compare.MARK} marks rows that differ)"])


def _bundle(store: Store, ns: argparse.Namespace) -> None:
    from runner.bundles.run_bundle import export_run
    from runner.progress import Progress

    record = store.get_run(ns.run_id)
    path = export_run(store, record, Path(ns.output), ns.with_inputs, Progress(quiet=False),
                      with_outputs=ns.with_outputs)  # fmt: skip
    print(f"wrote {path} (run {record['id'][:8]}; rerun it with `run-project rerun {path}`)")


def _import(store: Store, bundle: Path) -> None:
    from runner.bundles.run_bundle import import_run, opened_run

    with opened_run(bundle) as original:
        short = original.record["id"][:8]
        if import_run(store, original):
            print(
                f"imported run {short} from {bundle}; see it with `run-project runs show {short}`"
            )
        else:
            print(f"run {short} is already in the store; nothing imported")


def _plot(store: Store, run_ids: list[str], metric: str, output: Path, log_y: bool) -> None:
    from runner.tracking import plot

    records = [store.get_run(i) for i in run_ids]
    series = [[(float(s), v) for s, v in store.metric_history(r["id"], metric) if v is not None]
              for r in records]  # fmt: skip
    if not any(series):
        raise RunnerError(
            f"none of the runs has points of metric {metric!r}",
            "see the metric names with `run-project runs show RUN_ID`",
        )
    labels = [f"{r['id'][:8]} {r.get('run_name') or ''}".strip() for r in records]
    plot.draw(series, output, title=metric, labels=labels, log_y=log_y)
    x0, x1, y0, y1 = plot.bounds(series)
    print(f"wrote {output} ({metric}: steps {x0:g}..{x1:g}, values {y0:.4g}..{y1:.4g})")
    for index, (record, points) in enumerate(zip(records, series, strict=True)):
        colour = plot.COLOR_NAMES[index % len(plot.COLOR_NAMES)]
        print(f"  {colour}: run {record['id'][:8]} {record.get('run_name')} ({len(points)} points)")
