"""`run-project runs push ID... --to URL`: parsing and output only; the work is in
tracking/push/."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from runner.cli.args import STORE_HELP
from runner.tracking.store import Store


def add_parser(sub: Any) -> None:
    """Add `push` to `runs`' subparsers."""
    pusher = sub.add_parser(
        "push",
        help="copy runs into an MLflow tracking server (idempotent)",
        description="Copy runs (record, params, every metric point, tags, files) into an MLflow "
        "tracking server, so its UI shows them. Pushing again creates nothing new. "
        "Credentials: MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD.",
    )
    pusher.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="runs to copy")
    pusher.add_argument("--to", required=True, metavar="URL",
                        help="the tracking server, e.g. http://127.0.0.1:5000")  # fmt: skip
    pusher.add_argument("--experiment", metavar="NAME",
                        help="experiment on the server (default: each run's own)")  # fmt: skip
    pusher.add_argument("--store", help=STORE_HELP)


def run(store: Store, ns: argparse.Namespace) -> int:
    """Push the runs, one line each."""
    from runner.tracking.push.to_mlflow import Pushed, push_runs

    def report(pushed: Pushed) -> None:
        what = "created" if pushed.created else "updated"
        if not pushed.created and not (pushed.params or pushed.points or pushed.files):
            what = "already there"
        print(
            f"{pushed.run_id[:8]} → MLflow run {pushed.mlflow_run_id} (experiment "
            f"{pushed.experiment_id}): {what}; {pushed.params} params, {pushed.points} metric "
            f"points, {pushed.tags} tags, {pushed.files} files sent"
        )
        for warning in pushed.warnings:
            print(f"warning: {warning}", file=sys.stderr)

    push_runs(store, ns.run_ids, ns.to, ns.experiment, report)
    return 0
