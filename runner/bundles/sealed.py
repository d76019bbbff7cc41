"""Bundles: one .tar.gz that travels. A run bundle (`runs export RUN_ID -o run.tar.gz`) holds
the record, the uncommitted diff and untracked files, the environment lock, the logs, the
project tree at the run's commit and (`--with-inputs`) copies of its input files; `rerun
run.tar.gz` repeats it against any store. Project bundles (`pack`) are in bundle_pack.py.

Every bundle carries `bundle.json` (schemas/bundle.schema.json) listing each file's sha256
and each symlink's target; it is checked whenever a bundle is read, so a damaged or edited
bundle, or one with a member added that it does not list, is refused.
"""

from __future__ import annotations

import json
import os
import platform
import tarfile
import time
from pathlib import Path
from typing import Any

from runner import __version__
from runner.errors import RunnerError
from runner.tracking.hashing import sha256_file
from runner.tracking.record import iso

MANIFEST = "bundle.json"
PROJECT_DIR = ".run-project-bundle"  # inside a packed project: bundle.json, wheels/
RUN_PARTS = ("source", "env", "logs", "events.jsonl")


class BundleError(RunnerError):
    """A bundle that cannot be written or read."""


def manifest(
    kind: str, source: dict[str, Any], env: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """The common part of bundle.json (files are added by `seal`)."""
    return {
        "bundle_version": 1,
        "kind": kind,
        "created": iso(time.time()),
        "runner_version": __version__,
        "source": source,
        "env": env,
        "platform": {
            "system": platform.system(),
            "machine": platform.machine(),
            "python": platform.python_version(),
        },
        **extra,
    }


def seal(top: Path, data: dict[str, Any], at: Path, output: Path) -> None:
    """Write bundle.json (at `at`, with every file's sha256) and tar `top` to `output`."""
    skip = at / MANIFEST
    files, links = {}, {}
    for path in sorted(top.rglob("*")):
        name = path.relative_to(top).as_posix()
        if path.is_symlink():
            links[name] = os.readlink(path)
        elif path.is_file() and path != skip:
            files[name] = sha256_file(path)
    at.mkdir(parents=True, exist_ok=True)
    sealed = {**data, "files": files, **({"links": links} if links else {})}
    skip.write_text(json.dumps(sealed, indent=2, sort_keys=True) + "\n")
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(top, arcname=top.name)
    os.replace(partial, output)  # a reader never sees half a bundle


def read_manifest(
    top: Path, at: Path, kind: str, shown: str, sealed: bool = True
) -> dict[str, Any]:
    """bundle.json checked against the schema, every file against its sha256 and, when
    `sealed` (the bundle was just extracted), every member against the list."""
    from runner.project.schemas import schema_errors

    try:
        data = json.loads((at / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{shown} has no readable {MANIFEST}: {exc}", REMAKE) from exc
    errors = schema_errors("bundle", data)
    if errors:
        where = "/".join(str(p) for p in errors[0].path) or "(top)"
        raise BundleError(f"{shown}: {MANIFEST} is invalid at {where}: {errors[0].message}", REMAKE)
    if data["kind"] != kind:
        raise BundleError(
            f"{shown} is a {data['kind']} bundle, not a {kind} bundle",
            "rerun takes `runs export -o` bundles; run packed projects directly",
        )
    for name, digest in data["files"].items():
        path = top / name
        if not path.is_file() or path.is_symlink() or sha256_file(path) != digest:
            raise BundleError(f"{shown}: {name} is missing or differs from {MANIFEST}", REMAKE)
    if sealed:
        _refuse_unlisted(top, at / MANIFEST, data, shown)
    return dict(data)


def _refuse_unlisted(top: Path, own: Path, data: dict[str, Any], shown: str) -> None:
    """A member the bundle does not list (a file, or a link, added after it was sealed) would
    be used as if it were part of the run: refuse the bundle."""
    links = data.get("links") or {}
    for dirpath, dirnames, filenames in os.walk(top):
        for entry in sorted(dirnames + filenames):
            path = Path(dirpath, entry)
            name = path.relative_to(top).as_posix()
            if path.is_symlink():
                listed = links.get(name) == os.readlink(path)
            else:
                listed = path.is_dir() or name in data["files"] or path == own
            if not listed:
                raise BundleError(f"{shown}: {name} is not listed in {MANIFEST}", REMAKE)


REMAKE = "make the bundle again (`run-project runs export` or `run-project pack`)"
