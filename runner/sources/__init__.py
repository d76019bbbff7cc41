"""Project locations → Checkout. Local directories now; git URLs and archives plug in here."""

from __future__ import annotations

from pathlib import Path

from runner.errors import SourceError
from runner.sources.checkout import Checkout
from runner.sources.local import resolve_directory


def resolve(uri: str, version: str | None = None) -> Checkout:
    """Resolve a project location (a directory path) to a Checkout."""
    if version is not None:
        raise SourceError(
            f"-v/--version {version!r} needs a git source; {uri!r} is a directory",
            "drop -v to run the directory as it is",
        )
    if "://" in uri or uri.startswith("git@"):
        raise SourceError(
            f"project {uri!r}: remote sources are not available in this version",
            "clone it and pass the directory",
        )
    return resolve_directory(Path(uri).expanduser(), uri)
