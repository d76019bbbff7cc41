"""A rerun's checks: recorded inputs against their hashes before the command starts, and
after it, the outputs hash for hash."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from runner.tracking.hashing import HashCache


def check_inputs(
    record: dict[str, Any], workdir: Path, bundled: Path | None
) -> tuple[list[str], dict[str, str]]:
    """What differs from the recorded inputs (one line each), and for path parameters whose
    file is missing here but was bundled (`runs export --with-inputs`), the bundled copy."""
    problems: list[str] = []
    replaced: dict[str, str] = {}
    hashes = HashCache(None)
    original_dir = str(record.get("source", {}).get("path") or "")
    for entry in record.get("inputs") or []:
        path = _here(str(entry["path"]), original_dir, workdir)
        now = _digest(hashes, path, entry.get("kind", "file"))
        if now == entry["sha256"]:
            continue
        copy = _bundled(bundled, entry)
        if now is None and copy is not None and entry.get("param"):
            replaced[str(entry["param"])] = str(copy)
            continue
        state = (
            "missing" if now is None else f"changed (sha256 {entry['sha256'][:12]} → {now[:12]})"
        )
        problems.append(f"{path}: {state}")
    return problems, replaced


def _here(path: str, original_dir: str, workdir: Path) -> Path:
    """Files the run read from its own project directory are read from the rerun's copy."""
    if original_dir and (path == original_dir or path.startswith(original_dir.rstrip("/") + "/")):
        return workdir / os.path.relpath(path, original_dir)
    return Path(path)


def _digest(hashes: HashCache, path: Path, kind: str) -> str | None:
    try:
        if kind == "dir":
            return hashes.tree(path)[0] if path.is_dir() else None
        return hashes.file(path) if path.is_file() and not path.is_symlink() else None
    except OSError:
        return None


def _bundled(bundled: Path | None, entry: dict[str, Any]) -> Path | None:
    """A bundled file input, copied out under its own name (scripts may look at it)."""
    if bundled is None or entry.get("kind") != "file":
        return None
    source = bundled / str(entry["sha256"])
    if not source.is_file():
        return None
    target = Path(tempfile.mkdtemp(prefix="run-project-input-")) / Path(entry["path"]).name
    shutil.copyfile(source, target)
    return target


def compare_outputs(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The verdict: identical when every output has the same name and sha256."""
    before = {o["name"]: o["sha256"] for o in old.get("outputs") or []}
    after = {o["name"]: o["sha256"] for o in new.get("outputs") or []}
    differ = sorted(n for n in before.keys() & after.keys() if before[n] != after[n])
    missing = sorted(before.keys() - after.keys())
    extra = sorted(after.keys() - before.keys())
    lines = [f"differs: {n} (sha256 {before[n][:12]} → {after[n][:12]})" for n in differ]
    lines += [f"not produced again: {n}" for n in missing]
    lines += [f"new output: {n}" for n in extra]
    identical = not lines and new.get("status") == old.get("status")
    if identical:
        summary = f"outputs identical ({len(after)} files, hash for hash)"
    elif lines:
        summary = f"outputs differ ({len(lines)} of {len(before.keys() | after.keys())} files)"
    else:
        summary = f"outputs identical, but the run ended {new.get('status')}"
    return {"identical": identical, "summary": summary, "differ": differ, "missing": missing,
            "extra": extra, "lines": lines + _env_notes(old, new)}  # fmt: skip


def _env_notes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What the environment did differently: a docker image rebuilt (the recorded one was
    gone, so the same Dockerfiles made a new one), another kind."""
    before, after = old.get("env") or {}, new.get("env") or {}
    if before.get("kind") != after.get("kind"):
        return [f"environment: {before.get('kind')} → {after.get('kind')}"]
    old_image, new_image = before.get("image_id"), after.get("image_id")
    if old_image and new_image and old_image != new_image:
        return [f"environment: image rebuilt ({str(old_image)[:19]} → {str(new_image)[:19]})"]
    return []
