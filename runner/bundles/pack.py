"""`run-project pack URI [-v REV] -o project.tar.gz [--with-deps] [--image TAG]`: a project
for a teammate. The bundle is an ordinary project archive (`run-project project.tar.gz -e
train` runs it) holding the source at the commit, its manifest, `pylock.toml` (the lock this
machine resolved; a project's own lock wins at run time, so nothing is resolved again) and
`.run-project-bundle/` (bundle.json and, with --with-deps, every wheel the lock installs).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import envs, sources
from runner.bundles import platforms as bundle_platform
from runner.bundles.sealed import PROJECT_DIR, BundleError, seal
from runner.bundles.sealed import manifest as bundle_manifest
from runner.envs.base import EnvKind
from runner.progress import Progress
from runner.project import manifest
from runner.sources.checkout import Checkout

# Never packed: git metadata, caches, the default run store of a project run in place.
IGNORED = (".git", ".venv", "__pycache__", "runs", PROJECT_DIR, "*.pyc")


@dataclass(frozen=True)
class PackOptions:
    """What `pack` was asked for."""

    uri: str
    version: str | None
    output: Path | None
    with_deps: bool = False
    image: str | None = None
    platform: str | None = None  # conda subdir name; None: this machine


def pack(options: PackOptions, progress: Progress) -> None:
    """Write the project bundle (or build the image) the options ask for."""
    if options.output is None and options.image is None:
        raise BundleError("pack needs -o FILE or --image TAG", "e.g. -o project.tar.gz")
    checkout = sources.resolve(options.uri, options.version, progress=progress)
    try:
        project = manifest.load_project(checkout.path)
        if options.image is not None:
            from runner.bundles.image import build_image

            build_image(project, checkout, options.image, progress)
            return
        assert options.output is not None
        _write(project, checkout, options, progress)
    finally:
        checkout.cleanup()


def _write(
    project: manifest.Project, checkout: Checkout, options: PackOptions, progress: Progress
) -> None:
    kind = envs.select(None, project.env, checkout.path)
    with tempfile.TemporaryDirectory(prefix="run-project-pack-") as tmp:
        top = Path(tmp) / _safe_name(project.name or checkout.path.name)
        shutil.copytree(checkout.path, top, symlinks=True,
                        ignore=shutil.ignore_patterns(*IGNORED))  # fmt: skip
        target = bundle_platform.target(options.platform)
        if target == bundle_platform.this_platform():
            lock, wheels = _lock(kind, project, checkout, top, options.with_deps, progress)
        else:
            lock, wheels = _foreign(kind, project, checkout, top, options, target, progress)
        data = bundle_manifest(
            "project",
            {"kind": checkout.kind, "uri": checkout.uri, "commit": checkout.commit,
             "version": checkout.version, "subdirectory": checkout.subdirectory, "tree": True},
            {"kind": kind.name, "lock": lock, "with_deps": options.with_deps},
            entry_points=sorted(project.entry_points), wheels=wheels,
        )  # fmt: skip
        data["platform"]["target"] = target
        if checkout.dirty:
            progress.warn("the directory has uncommitted changes; they are packed as they are")
        assert options.output is not None
        seal(top, data, top / PROJECT_DIR, options.output)
    shown = f" with {len(wheels)} wheels" if options.with_deps else ""
    print(f"wrote {options.output}{shown}; run it with `run-project {options.output} -e ENTRY`")


def _lock(
    kind: EnvKind,
    project: manifest.Project,
    checkout: Checkout,
    top: Path,
    with_deps: bool,
    progress: Progress,
) -> tuple[str | None, list[Any]]:
    """Build (or reuse) the environment here to learn its lock; with --with-deps, bundle
    the wheels it installed. Returns the lock's name in the bundle and the wheels."""
    if not kind.builds or kind.name == "docker":
        if with_deps and kind.name == "docker":
            progress.warn("--with-deps: a docker project's packages are in its image; "
                          "use --image TAG")  # fmt: skip
        return None, []
    with envs.prepared(kind, project.env, checkout, progress) as env:
        name, text = env.lock.lock_name, env.lock.lock_text
        if name is None or text is None:
            return None, []
        wheels: list[Any] = []
        where = top / name
        if name == "conda-lock.yml":
            from runner.envs.conda.bundle import lock_place

            where = lock_place(project.env, checkout.path, top)
        if with_deps and name == "pylock.toml" and env.env_dir is not None:
            from runner.envs.python.wheelhouse import bundle_wheels

            progress.step("downloading the wheels of " + name)
            prefix = f"{PROJECT_DIR}/wheels"
            text, wheels = bundle_wheels(text, env.env_dir, top / prefix, prefix)
        elif with_deps and name == "conda-lock.yml":
            from runner.envs.conda.bundle import bundle_packages
            from runner.envs.conda.spec import PLATFORM

            progress.step("downloading the conda packages and wheels of " + name)
            prefix = os.path.relpath(top / PROJECT_DIR, where.parent)
            text, wheels = bundle_packages(text, PLATFORM, top / PROJECT_DIR,
                                           prefix, checkout.path)  # fmt: skip
        elif with_deps:
            raise BundleError(
                f"--with-deps cannot bundle the packages of {name} yet",
                "pack without --with-deps (the lock is still included)",
            )
    where.write_text(text)
    return name, wheels


def _foreign(
    kind: EnvKind,
    project: manifest.Project,
    checkout: Checkout,
    top: Path,
    options: PackOptions,
    target: str,
    progress: Progress,
) -> tuple[str | None, list[Any]]:
    """Locks (and with --with-deps packages) for another platform, resolved without
    building anything here."""
    if kind.name == "virtualenv":
        name, text, wheels = bundle_platform.foreign_pylock(
            project, checkout, target, top, options.with_deps, progress
        )
    elif kind.name == "conda":
        return bundle_platform.foreign_conda(
            project, checkout, target, top, options.with_deps, progress
        )
    else:  # local or docker: nothing is resolved for a platform
        return _lock(kind, project, checkout, top, options.with_deps, progress)
    (top / name).write_text(text)
    return name, wheels


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip(".-") or "project"
