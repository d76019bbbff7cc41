"""`run-project rerun RUN_ID|BUNDLE ...`: parsing and output only; the work is in rerun/."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(args: Sequence[str]) -> int:
    """Repeat a recorded run; returns the new run's exit code."""
    from runner.backends import load_config
    from runner.cli.args import parse_params
    from runner.progress import Progress
    from runner.rerun.repeat import RerunOptions, rerun

    ns = _rerun_parser().parse_args(args)
    options = RerunOptions(
        target=ns.target,
        overrides=parse_params(ns.params),
        backend=ns.backend,
        backend_config=None if ns.backend_config is None else load_config(ns.backend_config),
        allow_changed_inputs=ns.allow_changed_inputs,
        store=ns.store,
        rtol=ns.rtol,
        atol=ns.atol,
        channel_alias=ns.channel_alias or None,  # the flag outranks variable and toml
    )
    return rerun(options, Progress(quiet=ns.quiet))


def _rerun_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run-project rerun",
        description="Repeat a recorded run (same commit, diff, params, locked environment, "
        "inputs checked) and say whether its outputs came out the same.",
    )
    parser.add_argument("target", metavar="RUN_ID|BUNDLE", help="a run id (prefix) or run.tar.gz")
    parser.add_argument("-P", "--param-list", dest="params", action="append", default=[],
                        metavar="NAME=VALUE", help="override a parameter (repeatable)")  # fmt: skip
    parser.add_argument("-b", "--backend", default="local", help="where to run: local, ray, slurm")
    parser.add_argument(
        "--backend-config",
        metavar="JSON|FILE",
        help="backend options (default: the recorded ones when the backend is the same)",
    )
    parser.add_argument(
        "--allow-changed-inputs",
        action="store_true",
        help="run even when recorded inputs are missing or changed (they are listed)",
    )
    parser.add_argument(
        "--rtol", type=_tolerance, default=0.0, metavar="X",
        help="logged metrics count as equal when |new - old| <= atol + rtol * |old| "
        "(as numpy.isclose; default 0: exactly)",
    )  # fmt: skip
    parser.add_argument("--atol", type=_tolerance, default=0.0, metavar="X",
                        help="absolute tolerance for logged metrics (default 0)")  # fmt: skip
    parser.add_argument("--store", help="run store holding the run, and receiving the rerun")
    parser.add_argument(
        "--channel-alias", metavar="URL",
        help="conda channel alias / mirror the recorded conda packages are fetched through",
    )  # fmt: skip
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return parser


def _tolerance(text: str) -> float:
    """A tolerance: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 0 (e.g. 1e-6)")
    return value
