"""`run-project pack PROJECT -o FILE ...`: parsing and output only; the work is in bundles/."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


def main(args: Sequence[str]) -> int:
    """Write a project bundle (or build an image)."""
    from runner.bundles.pack import PackOptions, pack
    from runner.progress import Progress

    ns = _pack_parser().parse_args(args)
    options = PackOptions(
        uri=ns.uri, version=ns.rev, output=Path(ns.output) if ns.output else None,
        with_deps=ns.with_deps, image=ns.image, platform=ns.platform,
    )  # fmt: skip
    pack(options, Progress(quiet=ns.quiet))
    return 0


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
