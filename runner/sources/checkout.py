"""The Checkout: what every source (directory, git URL, archive) resolves to."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple


def _nothing() -> None:
    return None


class Checkout(NamedTuple):
    """A directory holding the project at a known revision.

    `path` is where the project (after any `#subdirectory`) lives and the command runs;
    `commit` is the full git SHA when there is one; `dirty`/`diff`/`untracked` describe
    uncommitted changes of a local repository (`repo_root` is that repository's top).
    `cleanup` removes a per-run working copy (a no-op for directories run in place).
    """

    path: Path
    uri: str
    kind: str
    commit: str | None = None
    dirty: bool = False
    diff: str | None = None
    subdirectory: str = ""
    version: str | None = None
    untracked: tuple[str, ...] = ()
    repo_root: Path | None = None
    archive_sha256: str | None = None
    resolved_offline: str | None = None  # when the mirror was last fetched (server down)
    cleanup: Callable[[], None] = _nothing

    def to_record(self) -> dict[str, Any]:
        """The `source` section of the run record (the URI is already redacted)."""
        record: dict[str, Any] = {
            "kind": self.kind,
            "uri": self.uri,
            "path": str(self.path),
            "commit": self.commit,
            "dirty": self.dirty,
            "subdirectory": self.subdirectory,
            "version": self.version,
        }
        if self.diff or self.untracked:
            record["uncommitted"] = "source"  # artifact dir holding uncommitted.diff, untracked/
        if self.untracked:
            record["untracked"] = list(self.untracked)
        if self.archive_sha256:
            record["archive_sha256"] = self.archive_sha256
        if self.resolved_offline:
            record["resolved_offline"] = self.resolved_offline
        return record
