"""Per-run working copies exported from a mirror, and what can be read before making one.

A working copy is a plain directory (no `.git`) under `<cache>/work/`, filled from the mirror
with a private index file (`read-tree` + `checkout-index`), so the mirror is only read and two
runs of different revisions never share files. Each is removed after its run unless kept;
copies left by a runner that died (its pid is gone) are swept by the next run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from runner import settings
from runner.errors import SourceError
from runner.pids import pid_alive
from runner.sources.git import SAFE_CONFIG, git, git_env


def area() -> Path:
    """Where working copies live."""
    return settings.cache_dir() / "work"


def new_dir(keep: bool) -> Path:
    """A fresh, empty working directory; `keep` ones are never swept."""
    root = area()
    root.mkdir(parents=True, exist_ok=True)
    sweep(root)
    path = root / f"{'kept' if keep else os.getpid()}-{os.urandom(6).hex()}"
    path.mkdir()
    return path


def remove(path: Path) -> None:
    """Remove a working copy (or a stray file) without following symlinks out of it."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def sweep(root: Path) -> None:
    """Remove working copies of runners that are no longer alive."""
    for entry in root.iterdir():
        pid = entry.name.split("-", 1)[0].split(".", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            remove(entry)


def export(mirror: Path, commit: str, into: Path) -> None:
    """Write the tree of `commit` into `into`, reading the mirror only."""
    index = into.with_name(into.name + ".index")
    env = {"GIT_INDEX_FILE": str(index)}
    try:
        git(["--git-dir", str(mirror), "read-tree", "--end-of-options", commit], extra_env=env)
        git(["--git-dir", str(mirror), "--work-tree", str(into), "checkout-index", "--all",
             "--force"], extra_env=env)  # fmt: skip
    finally:
        index.unlink(missing_ok=True)


def object_type(mirror: Path, commit: str, relpath: str) -> str | None:
    """'tree', 'blob' or 'commit' (a submodule) for `commit:relpath`, None if absent."""
    result = git(["--git-dir", str(mirror), "cat-file", "-t", "--end-of-options",
                  f"{commit}:{relpath}"], check=False)  # fmt: skip
    return result.stdout.strip() if result.returncode == 0 else None


def list_dir(mirror: Path, commit: str, relpath: str) -> list[tuple[str, str]]:
    """(type, name) of each entry of the directory `commit:relpath`."""
    spec = f"{commit}:{relpath}" if relpath else commit
    result = git(["--git-dir", str(mirror), "ls-tree", "--end-of-options", spec], check=False)
    entries = []
    for line in result.stdout.splitlines():
        meta, _, name = line.partition("\t")
        entries.append((meta.split()[1], name))
    return entries


def read_blob(mirror: Path, commit: str, relpath: str) -> bytes | None:
    """The bytes of `commit:relpath`, None if it is not a file."""
    if object_type(mirror, commit, relpath) != "blob":
        return None
    result = subprocess.run(
        [
            "git",
            *SAFE_CONFIG,
            "--git-dir",
            str(mirror),
            "cat-file",
            "blob",
            "--end-of-options",
            f"{commit}:{relpath}",
        ],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env=git_env(),
    )
    return result.stdout if result.returncode == 0 else None


def check_subdirectory(mirror: Path, commit: str, sub: str, shown: str) -> None:
    """A missing `#sub/dir` fails before any working copy is made, naming what exists."""
    if not sub or object_type(mirror, commit, sub) == "tree":
        return
    parent = sub.rsplit("/", 1)[0] if "/" in sub else ""
    dirs = [name for kind, name in list_dir(mirror, commit, parent) if kind == "tree"]
    where = f"in {parent}/" if parent else "at the top"
    raise SourceError(
        f"subdirectory {sub!r} does not exist in {shown} at {commit[:12]}",
        f"directories {where}: " + (", ".join(dirs[:15]) or "none"),
    )


def preview_manifest(mirror: Path, commit: str, sub: str, into: Path) -> bool:
    """Copy only the MLproject (matched case-insensitively) into `into`; False if none."""
    for kind, name in list_dir(mirror, commit, sub):
        if kind == "blob" and name.lower() == "mlproject":
            data = read_blob(mirror, commit, f"{sub}/{name}" if sub else name)
            if data is not None:
                (into / "MLproject").write_bytes(data)
                return True
    return False


def inside(path: Path, root: Path) -> bool:
    """True when `path`, symlinks resolved, is `root` or below it."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([real, base]) == base
