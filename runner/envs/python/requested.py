"""What a virtualenv build is asked for, whichever file it was read from (inputs.py reads
requirements, pyproject and python_env files; conda_yaml.py reads a conda.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class PythonInputs:
    """Everything a virtualenv build reads: requested Python, requirement lines, lock file."""

    source: str  # what the requirements came from, for messages and the record
    python: str | None = None
    python_from: str = "run-project's own Python"
    requirements: list[str] = field(default_factory=list)  # -r/-c paths made absolute
    pyproject: Path | None = None
    lock: Path | None = None  # a project's own pylock.toml or uv.lock
    files: dict[str, bytes] = field(default_factory=dict)  # project-relative path -> bytes
    warnings: list[str] = field(default_factory=list)
