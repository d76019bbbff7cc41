"""Conda channel names → URLs through a configurable channel alias (a mirror).

`conda-forge` means `<alias>/conda-forge/`; the alias defaults to anaconda.org's and is set by
`--channel-alias`, `RUN_PROJECT_CHANNEL_ALIAS` or `channel-alias` in run-project.toml. Full
URLs under the default alias are sent to the configured alias too, so a team behind a mirror
(and the test suite) never reaches the public one by accident.

Lock files and records always name packages under the *default* alias: a lock made behind a
mirror installs anywhere, and the mirror's address (and any credentials in it) is never stored.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from urllib.parse import urlsplit

from runner import settings
from runner.errors import EnvError

DEFAULT_ALIAS = "https://conda.anaconda.org/"
# conda's `defaults` has no single URL; MLflow projects rarely need it and anaconda's terms
# restrict it, so it is read as conda-forge (said in the README).
RENAMED = {"defaults": "conda-forge"}
_CREDENTIALS = re.compile(r"(://)[^/@\s]+@")
# --channel-alias of the run being built: set by the conda kind around its key() and
# build() (`flagged`), so the functions below need no extra argument on every call.
_FLAG: ContextVar[str | None] = ContextVar("channel_alias_flag", default=None)


@contextlib.contextmanager
def flagged(value: str | None) -> Iterator[None]:
    """Within the block, `value` (--channel-alias) outranks the variable and the toml."""
    token = _FLAG.set(value)
    try:
        yield
    finally:
        _FLAG.reset(token)


def alias(project_dir: Path | None = None) -> str:
    """The configured channel alias, ending in `/`: flag > variable > toml > default."""
    value = settings.get("channel_alias", _FLAG.get(), project_dir) or DEFAULT_ALIAS
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https", "file") or not (parts.netloc or parts.path):
        raise EnvError(
            f"channel alias {redact(value)!r} is not an http(s) or file URL",
            "set --channel-alias / RUN_PROJECT_CHANNEL_ALIAS to e.g. https://mirror.example/conda/",
        )
    return value.rstrip("/") + "/"


def resolve(channel: str, project_dir: Path | None = None) -> str:
    """The URL (ending in `/`) to fetch `channel` from: a name, or a URL kept as it is."""
    channel = channel.strip()
    if not channel or any(c.isspace() for c in channel) or ".." in channel.split("/"):
        raise EnvError(
            f"conda channel {channel!r} is not a channel name or URL",
            "write a name like conda-forge or a URL like https://host/channel",
        )
    if "://" in channel:
        return to_mirror(channel.rstrip("/") + "/", project_dir)
    return alias(project_dir) + RENAMED.get(channel, channel).strip("/") + "/"


def to_mirror(url: str, project_dir: Path | None = None) -> str:
    """A URL under the default alias, moved under the configured one."""
    if url.startswith(DEFAULT_ALIAS):
        return alias(project_dir) + url[len(DEFAULT_ALIAS) :]
    return url


def canonical(url: str, project_dir: Path | None = None) -> str:
    """A fetched URL as a lock file names it: under the default alias if under the mirror."""
    mirror = alias(project_dir)
    if url.startswith(mirror):
        return DEFAULT_ALIAS + url[len(mirror) :]
    return redact(url)


def short_name(url: str) -> str:
    """`https://conda.anaconda.org/conda-forge/` → `conda-forge` (other URLs kept, redacted)."""
    if url.startswith(DEFAULT_ALIAS):
        return url[len(DEFAULT_ALIAS) :].strip("/")
    return redact(url).rstrip("/")


def redact(text: str) -> str:
    """Hide `user:token@` in any URL within `text`."""
    return _CREDENTIALS.sub(r"\1***@", text)
