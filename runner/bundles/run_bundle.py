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
from runner.errors import RunnerError
from runner.progress import Progress
from runner.tracking.artifacts import check_name
from runner.tracking.hashing import sha256_file
from runner.tracking.store import Store

IMPORTED_TREE = "project"  # in an imported run's artifact dir: the bundle's project tree
OUTPUTS = "outputs-files"  # in a bundle: the run's output files by their record name


@dataclass(frozen=True)
class Original:
    """A recorded run to repeat: its record, the directory holding its `source/` and `env/`
    files, and (from a bundle) the project tree at its commit and copies of its inputs."""

    record: dict[str, Any]
    files: Path
    tree: Path | None = None
    inputs: Path | None = None


def export_run(
    store: Store,
    record: dict[str, Any],
    output: Path,
    with_inputs: bool,
    progress: Progress,
    with_outputs: bool = False,
) -> Path:
    """Write the run bundle of `record` to `output`."""
    from runner.sources.restore import fetch_tree

    with tempfile.TemporaryDirectory(prefix="run-project-export-") as tmp:
        top = Path(tmp) / f"run-{record['id'][:12]}"
        top.mkdir()
        (top / "record.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        run_dir = store.artifact_dir(record["id"])
        source = record["source"]
        sub = source.get("subdirectory") or ""
        for part in RUN_PARTS:
            _copy(run_dir / part, top / part)
        _only_subproject(top / "source", sub)
        stored = _stored_tree(store, record)
        tree = contextlib.nullcontext(stored) if stored else fetch_tree(source, progress)
        if tree is not None:
            with tree as root:
                _copy_project(root, top / "project", sub)
        inputs = _copy_inputs(record, top / "inputs") if with_inputs else []
        if with_outputs:
            _copy_outputs(record, run_dir, top / OUTPUTS)
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


def _stored_tree(store: Store, record: dict[str, Any]) -> Path | None:
    """The project tree kept by `runs import` for this run, or for the run it repeats (at the
    same commit): a rerun ran in a working copy that is gone, but its original's tree is
    here."""
    seen: set[str] = set()
    current: dict[str, Any] | None = record
    while current is not None and current["id"] not in seen:
        seen.add(current["id"])
        same = current["source"].get("commit") == record["source"].get("commit")
        tree = store.artifact_dir(current["id"]) / IMPORTED_TREE
        if same and tree.is_dir():
            return tree
        parent = current.get("rerun_of")
        try:
            current = store.get_run(parent) if parent else None
        except RunnerError:
            current = None
    return None


def _copy_project(root: Path, target: Path, sub: str) -> None:
    """The project's tree; for a subproject (`URI#sub/dir`) only that directory, at its
    place, so the recorded subdirectory still finds it."""
    inner = root / sub if sub and sub != "." else root
    shutil.copytree(inner, target / sub if inner != root else target, symlinks=True,
                    ignore=shutil.ignore_patterns(".git"))  # fmt: skip


def _only_subproject(saved: Path, sub: str) -> None:
    """A subproject's uncommitted changes without the rest of the repository's: the diff's
    other files and other projects' untracked files stay out of the bundle."""
    if not sub or sub == "." or not saved.is_dir():
        return
    from runner.sources.local import DIFF_NAME, UNTRACKED_DIR

    prefix = sub.strip("/") + "/"
    untracked = saved / UNTRACKED_DIR
    for path in sorted(untracked.rglob("*"), reverse=True) if untracked.is_dir() else []:
        if (path.relative_to(untracked).as_posix() + "/").startswith(prefix):
            continue  # inside the subproject, or one of the directories leading to it
        if path.is_dir() and not path.is_symlink():
            path.rmdir()  # emptied just before: the walk is deepest first
        else:
            path.unlink()
    diff = saved / DIFF_NAME
    if diff.is_file():
        diff.write_text(_diff_under(diff.read_text(), prefix))


def _diff_under(diff: str, prefix: str) -> str:
    """The sections of a `git diff` whose file lies under `prefix`."""
    sections = diff.split("\ndiff --git ")
    kept = []
    for index, section in enumerate(sections):
        text = section if index else section.removeprefix("diff --git ")
        if text.startswith(f"a/{prefix}") and f" b/{prefix}" in text.split("\n", 1)[0]:
            kept.append("diff --git " + text)
    return "\n".join(kept) + ("\n" if kept and not kept[-1].endswith("\n") else "")


def _copy_outputs(record: dict[str, Any], run_dir: Path, into: Path) -> None:
    for entry in record.get("outputs") or []:
        shown = run_dir / str(entry["name"])
        if shown.is_file() and not shown.is_symlink():
            target = into / str(entry["name"])
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shown, target)


def import_run(store: Store, original: Original) -> bool:
    """Add a bundle's run to `store`: its files (logs, source, env, events, the project tree,
    outputs if bundled), then its record, metric points, params and tags. False when the
    run is there already: importing twice changes nothing."""
    from runner.tracking.artifacts import ObjectStore
    from runner.tracking.run_record import RunRecord

    record = original.record
    if _has_run(store, record["id"]):
        return False
    run_dir = store.artifact_dir(record["id"])
    for part in RUN_PARTS:
        _copy(original.files / part, run_dir / part)
    if original.tree is not None:
        shutil.copytree(original.tree, run_dir / IMPORTED_TREE, symlinks=True,
                        dirs_exist_ok=True)  # fmt: skip
    objects = ObjectStore(store.artifacts_root)
    for entry in record.get("outputs") or []:
        name = check_name(str(entry["name"]))  # the bundle's record names a path: never `..`
        bundled = original.files / OUTPUTS / name
        if bundled.is_file() and not bundled.is_symlink():
            digest = objects.put(bundled, None)
            if digest == entry["sha256"]:  # else the record's hash would name other bytes
                objects.link(digest, run_dir / name)
    RunRecord.imported(store, record, run_dir / "events.jsonl")
    return True


def _has_run(store: Store, run_id: str) -> bool:
    try:
        store.get_run(run_id)
    except RunnerError:
        return False
    return True


def _copy(source: Path, target: Path) -> None:
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(
            source, target, symlinks=False, ignore_dangling_symlinks=True, dirs_exist_ok=True
        )  # an import cut short is simply done again
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
