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
from runner.sources.git import git, repo_root

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
    root = repo_root(path)
    if root is None:
        return Checkout(path=path, uri=str(path), kind="local")
    head = git(["rev-parse", "--verify", "-q", "HEAD"], cwd=root, check=False)
    commit = head.stdout.strip() or None
    diff = _diff(root, commit)
    untracked = _untracked(root)
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


def _untracked(root: Path) -> list[str]:
    result = git(["ls-files", "--others", "--exclude-standard", "-z"], cwd=root, check=False)
    return [name for name in result.stdout.split("\0") if name]


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
