"""Run bundles: `runs export RUN_ID -o run.tar.gz` writes one; `rerun run.tar.gz` opens it.

A run bundle holds the record, the uncommitted diff and untracked files, the environment
lock, the logs, the project tree at the run's commit and (`--with-inputs`) copies of its
input files, sealed by bundle.json (sealed.py).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.bundles.sealed import REMAKE, RUN_PARTS, BundleError, manifest, read_manifest, seal
from runner.progress import Progress
from runner.tracking.hashing import sha256_file
from runner.tracking.store import Store


@dataclass(frozen=True)
class Original:
    """A recorded run to repeat: its record, the directory holding its `source/` and `env/`
    files, and (from a bundle) the project tree at its commit and copies of its inputs."""

    record: dict[str, Any]
    files: Path
    tree: Path | None = None
    inputs: Path | None = None


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
def opened_run(bundle: Path) -> Iterator[Original]:
    """Extract a run bundle safely and yield the rerun's `Original`."""
    from runner.project.schemas import schema_errors
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
                              f"{errors[0].message}", REMAKE)  # fmt: skip
        tree = top / "project"
        inputs = top / "inputs"
        yield Original(record, top, tree if tree.is_dir() else None,
                       inputs if inputs.is_dir() else None)  # fmt: skip
