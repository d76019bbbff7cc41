"""PyPI's own cache policy, restored for uv when a mirror in between strips it.

PyPI tells clients that a simple-API page stays fresh for 10 minutes and that a file never
changes (`max-age=600` and `max-age=365000000, immutable`). Behind a mirror or proxy that drops
those headers, uv treats every cached page and wheel as stale and downloads them all again on
each resolution: a cold environment build then costs a second of network round trips for a
resolution uv already holds. When uv would use only its default index (PyPI) and no uv
configuration file is in play, uv is given a config file that states PyPI's policy, so a
resolution is at most 10 minutes older than the index, exactly as against PyPI itself.
Anything else (another index, a uv.toml anywhere uv would read one) is left to uv untouched.
"""

from __future__ import annotations

import os
from pathlib import Path

NAME = "uv-pypi.toml"
# Variables that name other indexes or replace uv's configuration files.
_NOT_DEFAULT = (
    "UV_INDEX",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_CONFIG_FILE",
    "UV_NO_CONFIG",
    "UV_OFFLINE",
)
CONFIG = """\
# Written by run-project: PyPI's own cache policy, for uv runs where PyPI is the only index.
[[index]]
url = "https://pypi.org/simple"
default = true
cache-control = { api = "max-age=600", files = "max-age=365000000, immutable" }
"""


def pypi_policy(project: Path, into: Path) -> list[str]:
    """uv arguments (`--config-file FILE`, written into `into`) that restore PyPI's cache
    policy, or none when uv would read another index or a configuration file of its own."""
    if not _default_index_only(project):
        return []
    path = into / NAME
    path.write_text(CONFIG)
    return ["--config-file", str(path)]


def _default_index_only(project: Path) -> bool:
    if any(os.environ.get(name) for name in _NOT_DEFAULT):
        return False
    return not any(path.is_file() for path in _user_configs()) and not _project_config(project)


def _user_configs() -> list[Path]:
    """uv's user and system configuration files (a `--config-file` would replace them)."""
    home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    dirs = (os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(os.pathsep)
    return [Path(home) / "uv" / "uv.toml", *(Path(d) / "uv" / "uv.toml" for d in dirs if d),
            Path("/etc/uv/uv.toml")]  # fmt: skip


def _project_config(project: Path) -> bool:
    """True when uv would find a uv.toml or a `[tool.uv]` table here or in a parent."""
    for directory in (project.resolve(), *project.resolve().parents):
        if (directory / "uv.toml").is_file():
            return True
        try:
            if b"tool.uv" in (directory / "pyproject.toml").read_bytes():
                return True
        except OSError:
            continue
    return False
