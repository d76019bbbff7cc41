"""A project directory on this machine: run in place (as MLflow does), recording the git
commit and any uncommitted changes when the directory is in a git repository."""

from __future__ import annotations

from pathlib import Path

from runner.errors import SourceError
from runner.sources.checkout import Checkout
from runner.sources.git import git, repo_root


def resolve_directory(path: Path, uri: str) -> Checkout:
    """A Checkout for a local directory, with commit and dirty flag if it is in git."""
    if not path.is_dir():
        raise SourceError(f"project {uri!r} is not a directory", "pass a project directory")
    path = path.resolve()
    root = repo_root(path)
    if root is None:
        return Checkout(path=path, uri=str(path), kind="local")
    head = git(["rev-parse", "--verify", "-q", "HEAD"], cwd=root, check=False)
    commit = head.stdout.strip() or None
    status = git(["status", "--porcelain", "--untracked-files=normal"], cwd=root, check=False)
    dirty = bool(status.stdout.strip())
    return Checkout(
        path=path,
        uri=str(path),
        kind="local",
        commit=commit,
        dirty=dirty,
        subdirectory=str(path.relative_to(root)) if path != root else "",
    )
