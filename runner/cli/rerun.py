"""`run-project rerun ...` and `run-project pack ...`: parsing and output only; the work is
in rerun.py and bundle.py."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


def main(args: Sequence[str]) -> int:
    """Dispatch `rerun` or `pack` (args[0])."""
    from runner.progress import Progress

    if args[0] == "rerun":
        ns = _rerun_parser().parse_args(args[1:])
        from runner.backends import load_config
        from runner.cli.main import parse_params
        from runner.rerun.repeat import RerunOptions, rerun

        options = RerunOptions(
            target=ns.target,
            overrides=parse_params(ns.params),
            backend=ns.backend,
            backend_config=None if ns.backend_config is None else load_config(ns.backend_config),
            allow_changed_inputs=ns.allow_changed_inputs,
            store=ns.store,
        )
        return rerun(options, Progress(quiet=ns.quiet))
    ns = _pack_parser().parse_args(args[1:])
    from runner.bundles.pack import PackOptions, pack

    pack_options = PackOptions(
        uri=ns.uri, version=ns.rev, output=Path(ns.output) if ns.output else None,
        with_deps=ns.with_deps, image=ns.image, platform=ns.platform,
    )  # fmt: skip
    pack(pack_options, Progress(quiet=ns.quiet))
    return 0


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
    parser.add_argument("--store", help="run store holding the run, and receiving the rerun")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return parser


def _pack_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run-project pack",
        description="One file for a teammate: the project at a commit, its manifest and locked "
        "environment (with --with-deps every wheel, so it runs offline), or a Docker image.",
    )
    parser.add_argument("uri", help="project: a directory, a git URL or an archive")
    parser.add_argument("-v", "--version", dest="rev", help="git branch, tag or commit")
    parser.add_argument("-o", "--output", help="the bundle to write (project.tar.gz)")
    parser.add_argument("--with-deps", action="store_true", help="include every wheel needed")
    parser.add_argument("--image", metavar="TAG", help="build a Docker image instead")
    parser.add_argument(
        "--platform",
        metavar="PLAT",
        help="resolve the locks for this platform: linux-64, linux-aarch64, osx-64, "
        "osx-arm64, win-64 (default: this machine)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return parser
