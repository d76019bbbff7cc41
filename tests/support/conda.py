"""Conda projects for the tests, and the scripts that build and serve the test channel."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from support.projects import make_project

HERE = Path(__file__).resolve().parent
CHANNEL_BUILDER = HERE / "conda_channel.py"  # a script: py-rattler must not load into pytest
CHANNEL_SERVER = HERE / "conda_server.py"
PY_FULL = ".".join(map(str, sys.version_info[:3]))
SHOW = """\
import pathlib, sys
prefix = pathlib.Path(sys.prefix)
for name in ("alpha", "beta", "sloth"):
    f = prefix / "share" / name / "VERSION"
    if f.exists():
        print(name, f.read_text().strip())
try:
    import tinylib
    print("tinylib", tinylib.VERSION, tinylib.__file__)
except ImportError:
    pass
"""
MLPROJECT = "name: c\nconda_env: conda.yaml\nentry_points:\n  main:\n    command: python show.py\n"


def project(root: Path, deps: list[str], pip: list[str] | None = None,
            channels: tuple[str, ...] = ("conda-forge",),
            files: dict[str, str] | None = None) -> Path:  # fmt: skip
    """A project with conda.yaml listing `deps` (and a pip: section), show.py and `files`."""
    lines = ["name: t", "channels:", *[f"  - {c}" for c in channels], "dependencies:"]
    lines += [f"  - {d}" for d in deps]
    if pip is not None:
        lines += ["  - pip:", *[f"    - {p}" for p in pip]]
    return make_project(root, {"MLproject": MLPROJECT, "conda.yaml": "\n".join(lines) + "\n",
                               "show.py": SHOW, **(files or {})})  # fmt: skip


def lock_of(record: dict[str, Any]) -> Path:
    """The conda-lock.yml recorded with a run."""
    return Path(str(record["logs"]["stdout"])).parent.parent / "env" / "conda-lock.yml"
