"""Submodules, only with --recurse-submodules, done by run-project rather than by git.

git's own submodule code is where the known attacks live (CVE-2024-32002: a symlinked module
directory; CVE-2025-48384: a carriage return in a path). Here each submodule is checked
before anything is fetched: its path must be a plain relative path, free of control
characters, that the commit records as a submodule (a gitlink) and whose every component in
the working copy is a real directory, not a symlink; its URL passes the same checks as a
URL typed by the user, and local (file) URLs are refused. The module's commit then comes
through the mirror cache like any other source, exported without a `.git`, so no hook or
configuration from it can run.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from runner.errors import SourceError
from runner.progress import Progress
from runner.sources import mirror, uri, workcopy
from runner.sources.git import git

MAX_DEPTH = 4
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\\]")


def fetch_all(
    mirror_path: Path, commit: str, parent_url: str, into: Path, progress: Progress, depth: int = 0
) -> None:
    """Export every submodule of `commit` into the working copy `into`, recursively."""
    if depth >= MAX_DEPTH:
        raise SourceError("submodules nest too deeply", f"at most {MAX_DEPTH} levels are fetched")
    for name, path, url in _declared(mirror_path, commit):
        target = _checked_target(into, path, name)
        gitlink = _gitlink(mirror_path, commit, path, name)
        full = _checked_url(parent_url, url, name)
        shown = uri.redact(full)
        with mirror.opened(full, shown, gitlink, progress) as sub:
            target.mkdir(parents=True, exist_ok=True)
            _ensure_plain(into, target, name)
            workcopy.export(sub.path, sub.commit, target)
        fetch_all(sub.path, sub.commit, full, target, progress, depth + 1)


def _declared(mirror_path: Path, commit: str) -> list[tuple[str, str, str]]:
    data = workcopy.read_blob(mirror_path, commit, ".gitmodules")
    if data is None:
        return []
    with tempfile.NamedTemporaryFile(suffix=".gitmodules") as tmp:
        tmp.write(data)
        tmp.flush()
        # `config -f` on a file reads it as data: no includes, nothing executed.
        result = git(["config", "--file", tmp.name, "--null", "--get-regexp",
                      r"^submodule\..*\.(path|url)$"], check=False)  # fmt: skip
    found: dict[str, dict[str, str]] = {}
    for item in result.stdout.split("\0"):
        key, _, value = item.partition("\n")
        if key.count(".") >= 2:
            name, var = key[len("submodule.") :].rsplit(".", 1)
            found.setdefault(name, {})[var] = value
    return [(n, v["path"], v["url"]) for n, v in found.items() if "path" in v and "url" in v]


def _checked_target(into: Path, path: str, name: str) -> Path:
    parts = path.split("/")
    if (CONTROL_RE.search(path) or path.startswith("/") or ".." in parts or "" in parts
            or any(p.lower() == ".git" for p in parts)):  # fmt: skip
        raise SourceError(
            f"submodule {name!r} has an unsafe path {path!r}",
            "this repository's .gitmodules looks hostile; run without --recurse-submodules",
        )
    target = into.joinpath(*parts)
    _ensure_plain(into, target, name)
    return target


def _ensure_plain(into: Path, target: Path, name: str) -> None:
    """Every existing component below `into` is a real directory (CVE-2024-32002)."""
    current = into
    for part in target.relative_to(into).parts:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            raise SourceError(
                f"submodule {name!r}: {current.relative_to(into)} is a symlink or a file",
                "this repository's .gitmodules looks hostile; run without --recurse-submodules",
            )


def _gitlink(mirror_path: Path, commit: str, path: str, name: str) -> str:
    result = git(["--git-dir", str(mirror_path), "ls-tree", "--end-of-options", commit, "--",
                  path], check=False)  # fmt: skip
    meta, _, listed = result.stdout.partition("\t")
    fields = meta.split()
    if len(fields) != 3 or fields[0] != "160000" or listed.rstrip("\n") != path:
        raise SourceError(
            f"submodule {name!r}: {path!r} is not a submodule in this commit",
            "this repository's .gitmodules does not match its tree; run without "
            "--recurse-submodules",
        )
    return fields[2]


def _checked_url(parent: str, url: str, name: str) -> str:
    if url.startswith(("./", "../")):
        url = _relative(parent, url)
    location = uri.parse(url)
    if location.kind != "git" or location.url.lower().startswith("file:"):
        raise SourceError(
            f"submodule {name!r} points at {location.shown!r}, which is not a remote git URL",
            "run-project fetches submodules only from remote URLs; run without "
            "--recurse-submodules",
        )
    return location.url


def _relative(parent: str, rel: str) -> str:
    base = parent.rstrip("/")
    for part in rel.split("/"):
        if part == "..":
            base = base.rsplit("/", 1)[0]
        elif part not in ("", "."):
            base = f"{base}/{part}"
    return base
