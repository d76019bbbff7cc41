"""Which files of a checkout travel in a packed project, and which of them look like secrets.

In a git work tree: what git would see (tracked files plus untracked files that are not
ignored). Elsewhere (a directory outside git, an extracted archive, a working copy of a git
URL): every file, minus what the project's `.gitignore` files exclude. In both cases the
patterns of `.run-projectignore` at the project's top (gitignore syntax) are left out too,
and so are `ALWAYS_EXCLUDED`. git itself applies the patterns (through an empty repository
for a directory outside git), so the syntax is exactly gitignore's.
"""

from __future__ import annotations

import fnmatch
import tempfile
from pathlib import Path, PurePosixPath

from runner.sources.checkout import Checkout
from runner.sources.git import git

IGNORE_FILE = ".run-projectignore"
# Never packed: git metadata, caches, the default run store of a project run in place.
ALWAYS_EXCLUDED = (".git", ".venv", "__pycache__", "runs", "*.pyc")
# File names that usually hold credentials: packed only with a warning.
SECRET_NAMES = (".env", ".env.*", "*.env", "*.pem", "*.key", "id_rsa*", "id_ed25519*",
                "id_ecdsa*", "credentials*", ".netrc", ".pypirc")  # fmt: skip
_NO_LOCKS = {"GIT_OPTIONAL_LOCKS": "0"}  # listing files must not rewrite the user's index


def packable_files(checkout: Checkout, extra_excluded: tuple[str, ...] = ()) -> list[str]:
    """The files under `checkout.path` to pack, relative to it (posix), sorted."""
    excluded = (*ALWAYS_EXCLUDED, *extra_excluded)
    if checkout.kind == "local" and checkout.repo_root is not None:
        seen = set(_git_visible(checkout.repo_root, checkout.subdirectory))
        files = [f for f in _walk(checkout.path, excluded, per_directory=False) if f in seen]
        for module in sorted(s for s in seen if (checkout.path / s / ".git").exists()):
            # a checked-out submodule: git lists it as one entry; its files go as they are
            inner = _walk(checkout.path / module, excluded, per_directory=True)
            files += [f"{module}/{name}" for name in inner]
    else:  # an exported git revision holds only tracked files: its .gitignore is not applied
        per_directory = checkout.kind != "git"
        files = _walk(checkout.path, excluded, per_directory=per_directory)
    here = checkout.path
    return sorted(f for f in files if (here / f).is_file() or (here / f).is_symlink())


def secret_looking(files: list[str]) -> list[str]:
    """The files whose name looks like it holds a secret."""
    return [f for f in files
            if any(fnmatch.fnmatch(PurePosixPath(f).name, p) for p in SECRET_NAMES)]  # fmt: skip


def _git_visible(root: Path, sub: str) -> list[str]:
    """Tracked plus untracked-not-ignored files of the work tree under `sub`, relative to it."""
    args = ["ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    prefix = f"{sub.strip('/')}/" if sub and sub != "." else ""
    if prefix:
        args += ["--", prefix]
    listed = git(args, cwd=root, extra_env=_NO_LOCKS).stdout.split("\0")
    return [name[len(prefix) :] for name in listed if name and name.startswith(prefix)]


def _walk(top: Path, excluded: tuple[str, ...], per_directory: bool) -> list[str]:
    """Every file under `top` that the exclude patterns keep, listed by git from an empty
    repository (so nothing of a repository above `top` is read)."""
    with tempfile.TemporaryDirectory(prefix="run-project-ls-") as empty:
        git(["init", "--quiet", "--bare", "--template=", "--end-of-options", empty])
        args = ["--git-dir", empty, "--work-tree", str(top), "ls-files", "-z", "--others"]
        args += [f"--exclude={pattern}" for pattern in excluded]
        if (top / IGNORE_FILE).is_file():
            args.append(f"--exclude-from={top / IGNORE_FILE}")
        if per_directory:
            args.append("--exclude-per-directory=.gitignore")
        listed = git(args, cwd=top, extra_env=_NO_LOCKS).stdout.split("\0")
    return [name for name in listed if name and not name.endswith("/")]
