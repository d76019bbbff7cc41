"""`pack --platform PLAT`: a bundle for another machine. Platforms are named as conda names
its subdirectories (linux-64, linux-aarch64, osx-64, osx-arm64, win-64); the default is this
machine's. bundle.json records the target, and a packed project refuses to run elsewhere.

For this machine the environment is built here and its lock taken (bundle_pack.py). For
another platform nothing can be built here, so a virtualenv project's requirements are
resolved with `uv pip compile --python-platform` (uv keeps only that platform's wheels in the
pylock.toml), and a conda project's with a solve for that subdir (in the py-rattler worker).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from runner.bundles.sealed import PROJECT_DIR, BundleError, read_manifest
from runner.envs.python import inputs as python_inputs
from runner.envs.python import uvtool
from runner.progress import Progress
from runner.project import manifest
from runner.sources.checkout import Checkout

# conda subdir → uv's --python-platform (glibc 2.28: what current manylinux wheels need)
UV_PLATFORMS = {
    "linux-64": "x86_64-manylinux_2_28",
    "linux-aarch64": "aarch64-manylinux_2_28",
    "osx-64": "x86_64-apple-darwin",
    "osx-arm64": "aarch64-apple-darwin",
    "win-64": "x86_64-pc-windows-msvc",
}


def this_platform() -> str:
    """This machine, as a conda subdir name (`linux-64`)."""
    from runner.envs.conda.spec import PLATFORM

    return PLATFORM


def target(requested: str | None) -> str:
    """The platform to pack for: `requested` (checked) or this machine's."""
    if requested is None:
        return this_platform()
    if requested not in UV_PLATFORMS:
        raise BundleError(
            f"--platform {requested!r} is not a platform run-project can pack for",
            "use one of: " + ", ".join(UV_PLATFORMS),
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


def foreign_pylock(
    project: manifest.Project,
    checkout: Checkout,
    platform: str,
    top: Path,
    with_deps: bool,
    progress: Progress,
) -> tuple[str, str, list[Any]]:
    """Resolve a virtualenv project for `platform`; returns lock name, text and wheels."""
    inputs = python_inputs.detect(project.env, checkout.path)
    if inputs.lock is not None:  # the project's own lock is packed with it and wins
        if with_deps:
            raise BundleError(
                f"--with-deps --platform {platform}: the project ships {inputs.lock.name}, "
                "whose wheels for another platform cannot be chosen here yet",
                "pack without --with-deps, or on a machine of that platform",
            )
        return inputs.lock.name, inputs.lock.read_text(), []
    version = _python_version(inputs.python)
    progress.step(f"resolving {inputs.source} for {platform} (Python {version})")
    with tempfile.TemporaryDirectory(prefix="run-project-platform-") as tmp:
        source = inputs.pyproject
        if source is None:
            source = Path(tmp) / "requirements.in"
            source.write_text("".join(line + "\n" for line in inputs.requirements))
        out = Path(tmp) / "pylock.toml"
        args = ["pip", "compile", "--format", "pylock.toml", "--no-header",
                "--python-platform", UV_PLATFORMS[platform], "--python-version", version,
                str(source), "-o", str(out)]  # fmt: skip
        uvtool.run(args, progress, checkout.path, f"resolving {inputs.source} for {platform}")
        text = out.read_text()
    wheels: list[Any] = []
    if with_deps:
        from runner.envs.python.wheelhouse import bundle_wheels

        progress.step(f"downloading the {platform} wheels of pylock.toml")
        prefix = f"{PROJECT_DIR}/wheels"
        text, wheels = bundle_wheels(text, None, top / prefix, prefix)
    return "pylock.toml", text, wheels


def _python_version(requested: str | None) -> str:
    """`X.Y` of the Python the project asks for, else of the one running run-project."""
    if requested:
        parts = requested.strip().lstrip("=~<>!").split(".")
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            return f"{parts[0]}.{parts[1]}"
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def foreign_conda(
    project: manifest.Project,
    checkout: Checkout,
    platform: str,
    top: Path,
    with_deps: bool,
    progress: Progress,
) -> tuple[str, list[Any]]:
    """Solve a conda project for `platform` (nothing installed), write its lock where the
    run will find it; returns the lock's name and, with --with-deps, the bundled packages."""
    from runner.envs.conda.bundle import bundle_packages, foreign_lock, lock_place

    text = foreign_lock(project.env, checkout.path, platform, progress)
    where = lock_place(project.env, checkout.path, top)
    packages: list[Any] = []
    if with_deps:
        progress.step(f"downloading the {platform} conda packages of conda-lock.yml")
        prefix = os.path.relpath(top / PROJECT_DIR, where.parent)
        text, packages = bundle_packages(text, platform, top / PROJECT_DIR, prefix,
                                         checkout.path)  # fmt: skip
    where.write_text(text)
    return "conda-lock.yml", packages


def check_project(path: Path) -> None:
    """Called on a packed project before it runs: its manifest and files must be whole."""
    check(read_manifest(path, path / PROJECT_DIR, "project", str(path)), str(path))
