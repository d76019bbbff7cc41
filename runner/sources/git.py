"""Hardened git: every call overrides what a hostile repository or URL could abuse.

The user's own configuration stays (credential helpers and ssh settings are how private
repositories work), but hooks, fsmonitor, `ext::`/`fd::` transports and submodule recursion
are switched off on the command line, and variables that relocate git are dropped.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from runner.errors import SourceError

SAFE_CONFIG = (
    "-c",
    "protocol.ext.allow=never",
    "-c",
    "protocol.fd.allow=never",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "submodule.recurse=false",
)
DROPPED_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_EXEC_PATH",
    "GIT_SSH_COMMAND_UNSAFE",
    "GIT_PROXY_COMMAND",
    "GIT_EXTERNAL_DIFF",
    "GIT_ALLOW_PROTOCOL",
)


def git_env() -> dict[str, str]:
    """This process's environment without variables that point git elsewhere."""
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env["GIT_TERMINAL_PROMPT"] = "0"  # never hang waiting for a password
    env["GIT_PROTOCOL_FROM_USER"] = "0"
    env.setdefault("LC_ALL", "C")  # messages we parse stay in English
    return env


def git(
    args: Sequence[str], cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `git <safe config> args` and return its output; failures raise SourceError."""
    argv = ["git", *SAFE_CONFIG, *args]
    try:
        result = subprocess.run(
            argv,
            cwd=cwd,
            env=git_env(),
            capture_output=True,
            text=True,
            errors="replace",
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise SourceError("git is not installed", "install git (apt-get install git)") from exc
    if check and result.returncode != 0:
        raise SourceError(
            f"git {args[0]} failed: {result.stderr.strip() or result.stdout.strip()}",
            "check the repository and revision",
        )
    return result


def repo_root(path: Path) -> Path | None:
    """The top of the git work tree containing `path`, or None if it is not in one."""
    result = git(["rev-parse", "--show-toplevel"], cwd=path, check=False)
    if result.returncode != 0:
        return None
    return Path(result.stdout.strip())
