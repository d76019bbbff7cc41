"""The CLI as a user runs it: `python -m runner ARGS` in a real subprocess, and its records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
EXAMPLES = REPO / "example_projects"


@dataclass
class Result:
    """A finished CLI call."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 120) -> Result:  # fmt: skip
    """Run `python -m runner ARGS` as a real subprocess."""
    # pytest-xdist's workers have COLUMNS=80: a table would be fitted to it only under xdist.
    inherited = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    full_env = dict(inherited, **(env or {}))
    # This checkout's code, whatever is installed (worktrees test their own tree).
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "runner", *args], cwd=cwd, env=full_env,
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout, proc.stderr)


def ok(result: Result) -> Result:
    """`result`, asserted to have succeeded."""
    assert result.code == 0, result.text
    return result


def records(store: Path | None = None) -> list[dict[str, Any]]:
    """All run records in the store, newest first (through the CLI, as a user sees them)."""
    args = ["runs", "list", "--json", "--limit", "100000"]
    if store is not None:
        args += ["--store", str(store)]
    result = cli(*args)
    assert result.code == 0, result.text
    data: list[dict[str, Any]] = json.loads(result.out)
    return data


def last_record(store: Path | None = None) -> dict[str, Any]:
    """The newest run record."""
    found = records(store)
    assert found, "no run was recorded"
    return found[0]
