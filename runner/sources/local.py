"""A project directory on this machine: run in place (as MLflow does), recording the git
commit and any uncommitted changes (the diff and the untracked files) when the directory is
in a git repository. git runs only at the repository's root, with hooks, fsmonitor and
external diff drivers off."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from runner.errors import SourceError
from runner.sources.checkout import Checkout
from runner.sources.git import git, nearest_git

MAX_UNTRACKED_BYTES = 50 * 1024 * 1024  # larger untracked data is named, not copied
DIFF_NAME = "uncommitted.diff"
UNTRACKED_DIR = "untracked"


def resolve_directory(path: Path, uri: str) -> Checkout:
    """A Checkout for a local directory, with commit, dirty flag and diff if it is in git."""
    if not path.is_dir():
        raise SourceError(
            f"project {uri!r} is not a directory, a git URL or an archive",
            "pass a project directory, a git URL (https://, ssh://, git@host:path...) or a "
            ".zip/.tar.gz/.tgz",
        )
    path = path.resolve()
    root = nearest_git(path)
    state = _status(root) if root is not None else None
    if root is None or state is None:
        return Checkout(path=path, uri=str(path), kind="local")
    commit, changed, untracked = state
    diff = _diff(root, commit) if changed else ""  # a clean tree costs one git process
    return Checkout(
        path=path,
        uri=str(path),
        kind="local",
        commit=commit,
        dirty=bool(diff.strip() or untracked),
        diff=diff or None,
        untracked=tuple(untracked),
        repo_root=root,
        subdirectory=str(path.relative_to(root)) if path != root else "",
    )


def _diff(root: Path, commit: str | None) -> str:
    """Staged and unstaged changes against HEAD, binary-safe (git apply can replay it)."""
    args = ["diff", "--binary", "--no-ext-diff", "--no-textconv", "--no-color",
            "--src-prefix=a/", "--dst-prefix=b/"]  # fmt: skip
    if commit is not None:
        args.append(commit)
    else:
        args.append("--cached")
    return git([*args, "--"], cwd=root, check=False).stdout


def _status(root: Path) -> tuple[str | None, bool, list[str]] | None:
    """(HEAD commit or None if unborn, whether tracked files changed, untracked files) from
    one `git status`, or None when `root` is not a usable work tree. Optional locks are off:
    recording a run must not rewrite the user's index."""
    result = git(
        ["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all"],
        cwd=root,
        check=False,
        extra_env={"GIT_OPTIONAL_LOCKS": "0"},
    )
    if result.returncode != 0:
        return None
    commit: str | None = None
    changed = False
    untracked: list[str] = []
    fields = iter(result.stdout.split("\0"))
    for entry in fields:
        if entry.startswith("# branch.oid "):
            oid = entry.removeprefix("# branch.oid ")
            commit = None if oid == "(initial)" else oid
        elif entry.startswith("? "):
            untracked.append(entry[2:])
        elif entry[:2] in ("1 ", "2 ", "u "):
            changed = True
            if entry.startswith("2 "):
                next(fields, None)  # a rename's original path follows as its own field
    return commit, changed, untracked


def save_uncommitted(checkout: Checkout, into: Path) -> list[str]:
    """Write the diff and copies of untracked files under `into`; returns what was skipped."""
    skipped: list[str] = []
    if checkout.diff:
        into.mkdir(parents=True, exist_ok=True)
        (into / DIFF_NAME).write_text(checkout.diff)
    if not checkout.untracked or checkout.repo_root is None:
        return skipped
    budget = MAX_UNTRACKED_BYTES
    for name in checkout.untracked:
        source = checkout.repo_root / name
        # Never follow a symlink: an untracked link to ~/.ssh must not be copied.
        if source.is_symlink() or not source.is_file():
            skipped.append(name)
            continue
        size = source.stat().st_size
        if size > budget:
            skipped.append(name)
            continue
        budget -= size
        target = into / UNTRACKED_DIR / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target, follow_symlinks=False)
        os.chmod(target, source.stat().st_mode & 0o777)
    return skipped
