"""The Checkout: what every source (directory, git URL, archive) resolves to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Checkout:
    """A directory holding the project at a known revision.

    `path` is where the project (after any `#subdirectory`) lives and the command runs;
    `commit` is the full git SHA when there is one; `dirty`/`diff` describe uncommitted
    changes of a local repository.
    """

    path: Path
    uri: str
    kind: str
    commit: str | None = None
    dirty: bool = False
    diff: str | None = None
    subdirectory: str = ""
    version: str | None = None

    def to_record(self) -> dict[str, Any]:
        """The `source` section of the run record (the URI is already redacted)."""
        return {
            "kind": self.kind,
            "uri": self.uri,
            "path": str(self.path),
            "commit": self.commit,
            "dirty": self.dirty,
            "subdirectory": self.subdirectory,
            "version": self.version,
        }
