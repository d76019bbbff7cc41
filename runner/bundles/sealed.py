"""Bundles: one .tar.gz that travels. A run bundle (`runs export RUN_ID -o run.tar.gz`) holds
the record, the uncommitted diff and untracked files, the environment lock, the logs, the
project tree at the run's commit and (`--with-inputs`) copies of its input files; `rerun
run.tar.gz` repeats it against any store. Project bundles (`pack`) are in bundle_pack.py.

Every bundle carries `bundle.json` (schemas/bundle.schema.json) listing each file's sha256;
it is checked whenever a bundle is read, so a damaged or edited bundle is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner import __version__
from runner.errors import RunnerError
from runner.progress import Progress
from runner.tracking.hashing import sha256_file
from runner.tracking.record import iso
from runner.tracking.store import Store

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
    files = {}
    for path in sorted(top.rglob("*")):
        if path.is_file() and not path.is_symlink() and path != skip:
            files[path.relative_to(top).as_posix()] = sha256_file(path)
    at.mkdir(parents=True, exist_ok=True)
    skip.write_text(json.dumps({**data, "files": files}, indent=2, sort_keys=True) + "\n")
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(top, arcname=top.name)
    os.replace(partial, output)  # a reader never sees half a bundle


def read_manifest(top: Path, at: Path, kind: str, shown: str) -> dict[str, Any]:
    """bundle.json checked against the schema and every file against its sha256."""
    from runner.project.schemas import schema_errors

    try:
        data = json.loads((at / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{shown} has no readable {MANIFEST}: {exc}", _REMAKE) from exc
    errors = schema_errors("bundle", data)
    if errors:
        where = "/".join(str(p) for p in errors[0].path) or "(top)"
        raise BundleError(
            f"{shown}: {MANIFEST} is invalid at {where}: {errors[0].message}", _REMAKE
        )
    if data["kind"] != kind:
        raise BundleError(
            f"{shown} is a {data['kind']} bundle, not a {kind} bundle",
            "rerun takes `runs export -o` bundles; run packed projects directly",
        )
    for name, digest in data["files"].items():
        path = top / name
        if not path.is_file() or path.is_symlink() or sha256_file(path) != digest:
            raise BundleError(f"{shown}: {name} is missing or differs from {MANIFEST}", _REMAKE)
    return dict(data)


_REMAKE = "make the bundle again (`run-project runs export` or `run-project pack`)"


def check_project(path: Path) -> None:
    """Called on a packed project before it runs: its manifest and files must be whole."""
    from runner.bundles.platforms import check

    check(read_manifest(path, path / PROJECT_DIR, "project", str(path)), str(path))


def export_run(
    store: Store, record: dict[str, Any], output: Path, with_inputs: bool, progress: Progress
) -> Path:
    """Write the run bundle of `record` to `output`."""
    from runner.sources.restore import fetch_tree

    with tempfile.TemporaryDirectory(prefix="run-project-export-") as tmp:
        top = Path(tmp) / f"run-{record['id'][:12]}"
        top.mkdir()
        (top / "record.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        run_dir = store.artifact_dir(record["id"])
        for part in RUN_PARTS:
            _copy(run_dir / part, top / part)
        source = record["source"]
        tree = fetch_tree(source, progress)
        if tree is not None:
            with tree as root:
                shutil.copytree(root, top / "project", symlinks=True,
                                ignore=shutil.ignore_patterns(".git"))  # fmt: skip
        inputs = _copy_inputs(record, top / "inputs") if with_inputs else []
        env = record.get("env") or {}
        data = manifest(
            "run",
            {"kind": source["kind"], "uri": source["uri"], "commit": source.get("commit"),
             "version": source.get("version"), "subdirectory": source.get("subdirectory") or "",
             "dirty": bool(source.get("dirty")), "tree": tree is not None},
            {"kind": env.get("kind", "local"), "lock": env.get("lock_name")},
            run_id=record["id"], entry_points=[record["entry_point"]], inputs=inputs,
        )  # fmt: skip
        seal(top, data, top, output)
    return output


def _copy(source: Path, target: Path) -> None:
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=False, ignore_dangling_symlinks=True)
    elif source.is_file() and not source.is_symlink():
        shutil.copyfile(source, target)


def _copy_inputs(record: dict[str, Any], into: Path) -> list[str]:
    """Copies of the input files (by sha256; unchanged since the run, or left out)."""
    kept = []
    for entry in record.get("inputs") or []:
        path = Path(entry["path"])
        if entry.get("kind") != "file" or not path.is_file() or path.is_symlink():
            continue
        into.mkdir(parents=True, exist_ok=True)
        target = into / entry["sha256"]
        shutil.copyfile(path, target)
        if sha256_file(target) != entry["sha256"]:
            target.unlink()  # changed since the run: the bundle must not carry another file
            continue
        kept.append(entry["sha256"])
    return sorted(set(kept))


@contextlib.contextmanager
def opened_run(bundle: Path) -> Iterator[Any]:
    """Extract a run bundle safely and yield the rerun's `Original`."""
    from runner.project.schemas import schema_errors
    from runner.rerun.repeat import Original
    from runner.sources import archive

    if not bundle.is_file():
        raise BundleError(f"run bundle {bundle} does not exist", "check the path")
    with tempfile.TemporaryDirectory(prefix="run-project-bundle-") as tmp:
        archive.extract(bundle, str(bundle), Path(tmp))  # the same checks as project archives
        top = archive.project_root(Path(tmp))
        read_manifest(top, top, "run", str(bundle))
        record = json.loads((top / "record.json").read_text())
        errors = schema_errors("run-record", record)
        if errors:
            where = "/".join(str(p) for p in errors[0].path) or "(top)"
            raise BundleError(f"{bundle}: record.json is invalid at {where}: "
                              f"{errors[0].message}", _REMAKE)  # fmt: skip
        tree = top / "project"
        inputs = top / "inputs"
        yield Original(record, top, tree if tree.is_dir() else None,
                       inputs if inputs.is_dir() else None)  # fmt: skip
