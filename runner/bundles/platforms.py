"""`pack --platform PLAT`: a bundle for another machine. Platforms are named as conda names
its subdirectories (linux-64, linux-aarch64, osx-64, osx-arm64, win-64); the default is this
machine's. bundle.json records the target, and a packed project refuses to run elsewhere.

For this machine the environment is built here and its lock taken (the kind's `pack_lock`).
For another platform nothing can be built here: the kind's `foreign_lock` resolves for it
(virtualenv: `uv pip compile --python-platform`, envs/python/pack.py; conda: a solve for
that subdir, envs/conda/bundle.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.bundles.sealed import PROJECT_DIR, BundleError, read_manifest
from runner.errors import UsageError


def this_platform() -> str:
    """This machine, as a conda subdir name (`linux-64`)."""
    from runner.envs.conda.spec import PLATFORM

    return PLATFORM


def target(requested: str | None) -> str:
    """The platform to pack for: `requested` (checked) or this machine's."""
    if requested is None:
        return this_platform()
    from runner.envs.python.pack import UV_PLATFORMS as PLATFORMS  # the platforms uv knows

    if requested not in PLATFORMS:
        raise UsageError(
            f"--platform {requested!r} is not a platform run-project can pack for",
            "use one of: " + ", ".join(PLATFORMS),
        )
    return requested


def check(data: dict[str, Any], shown: str) -> None:
    """A packed project whose locks were resolved for another platform does not run here."""
    packed_for = (data.get("platform") or {}).get("target")
    here = this_platform()
    if packed_for and packed_for != here and (data.get("env") or {}).get("lock"):
        raise BundleError(
            f"{shown} was packed for {packed_for}; this machine is {here}",
            f"pack it again for this machine: `run-project pack URI --platform {here} ...`",
        )


def check_project(path: Path, extracted: bool) -> None:
    """Called on a packed project before it runs: its manifest and files must be whole and,
    when it was just extracted from its archive, hold nothing its manifest does not list (a
    directory the user unpacked may have gained outputs since)."""
    data = read_manifest(path, path / PROJECT_DIR, "project", str(path), sealed=extracted)
    check(data, str(path))
