"""`run-project pack URI [-v REV] -o project.tar.gz [--with-deps] [--image TAG]`: a project
for a teammate. The bundle is an ordinary project archive (`run-project project.tar.gz -e
train` runs it) holding the source at the commit, its manifest, `pylock.toml` (the lock this
machine resolved; a project's own lock wins at run time, so nothing is resolved again) and
`.run-project-bundle/` (bundle.json and, with --with-deps, every wheel the lock installs).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from runner import envs, sources
from runner.bundles import platforms as bundle_platform
from runner.bundles.sealed import PROJECT_DIR, seal
from runner.bundles.sealed import manifest as bundle_manifest
from runner.envs.base import PackInto
from runner.errors import UsageError
from runner.progress import Progress
from runner.project import manifest
from runner.sources.checkout import Checkout


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
        raise UsageError("pack needs -o FILE or --image TAG", "e.g. -o project.tar.gz")
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
        _copy_packable(checkout, top, progress)
        target = bundle_platform.target(options.platform)
        into = PackInto(top, top / PROJECT_DIR, options.with_deps)
        if target == bundle_platform.this_platform():  # built here, its lock taken
            packed = kind.pack_lock(project.env, checkout, into, progress)
        else:  # resolved for the target; nothing can be built here
            packed = kind.foreign_lock(project.env, checkout, into, target, progress)
        lock, wheels = packed.lock_name, list(packed.files)
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
    shown = f" with {_counted(wheels)}" if options.with_deps else ""
    print(f"wrote {options.output}{shown}; run it with `run-project {options.output} -e ENTRY`")


def _counted(files: list[dict[str, str]]) -> str:
    """What --with-deps bundled, by format: `12 conda packages and 1 wheel`."""
    formats = {"conda package": (".conda", ".tar.bz2"), "wheel": (".whl",)}
    counts = {name: sum(f["file"].endswith(ends) for f in files) for name, ends in formats.items()}
    counts["other file"] = len(files) - sum(counts.values())
    shown = [f"{n} {name}{'' if n == 1 else 's'}" for name, n in counts.items() if n]
    return " and ".join(shown) or "no packages"


def _copy_packable(checkout: Checkout, top: Path, progress: Progress) -> None:
    """Copy what git would see (or what the .gitignore files keep, outside git), links as
    links; warn about names that look like secrets."""
    from runner.sources.packable import IGNORE_FILE, packable_files, secret_looking

    files = packable_files(checkout, (PROJECT_DIR,))
    for name in files:
        target = top / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(checkout.path / name, target, follow_symlinks=False)
    top.mkdir(parents=True, exist_ok=True)
    risky = secret_looking(files)
    if risky:
        shown = ", ".join(risky[:5]) + (f" and {len(risky) - 5} more" if len(risky) > 5 else "")
        progress.warn(
            f"packing files that look like secrets: {shown}; to leave them out, "
            f"list them in {IGNORE_FILE} (gitignore patterns) and pack again"
        )


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip(".-") or "project"
