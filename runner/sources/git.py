"""Hardened git: every call overrides what a hostile repository or URL could abuse.

The user's own configuration stays (credential helpers and ssh settings are how private
repositories work), but hooks, fsmonitor, `ext::`/`fd::` transports and submodule recursion
are switched off on the command line, and variables that relocate git are dropped.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

from runner.errors import RunnerError, SourceError
from runner.sources.uri import redact

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
    # A bare repository planted inside a project is never picked up by discovery; our own
    # mirrors are always named with --git-dir.
    "-c",
    "safe.bareRepository=explicit",
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
    env["LC_ALL"] = "C"  # messages we parse stay in English
    return env


def git(
    args: Sequence[str],
    cwd: Path | None = None,
    check: bool = True,
    extra_env: Mapping[str, str] | None = None,
    config: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run `git <safe config> args` and return its output; failures raise SourceError.

    `config` adds `-c` pairs for this call only; `extra_env` adds variables (such as a
    private GIT_INDEX_FILE) after the scrubbing.
    """
    argv = ["git", *SAFE_CONFIG, *config, *args]
    try:
        result = subprocess.run(
            argv,
            cwd=cwd,
            env={**git_env(), **(extra_env or {})},
            capture_output=True,
            text=True,
            errors="replace",
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise SourceError("git is not installed", "install git (apt-get install git)") from exc
    if check and result.returncode != 0:
        raise SourceError(
            f"git {args[0]} failed: {redact(result.stderr.strip() or result.stdout.strip())}",
            "check the repository and revision",
        )
    return result


def repo_root(path: Path) -> Path | None:
    """The top of the git work tree containing `path`, or None if it is not in one.

    Found by looking for `.git` upwards ourselves, so git later runs only at that root and
    never picks up a repository planted inside the project
    (tests/test_sources_hostile.py::test_nested_bare_repository_with_fsmonitor_never_runs).
    """
    candidate = nearest_git(path)
    if candidate is None:
        return None
    result = git(["rev-parse", "--show-toplevel"], cwd=candidate, check=False)
    return Path(result.stdout.strip()) if result.returncode == 0 else None


def nearest_git(path: Path) -> Path | None:
    """The nearest of `path` and its parents that holds a `.git` (no git process)."""
    for candidate in (path, *path.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


# Versions that fixed the submodule attacks run-project's tests exercise
# (tests/test_sources_hostile.py::test_old_git_gets_one_warning_line_unless_silenced).
FIXED_IN = (((2, 45, 1), "CVE-2024-32002"), ((2, 50, 1), "CVE-2025-48384"))
QUIET_VAR = "RUN_PROJECT_IGNORE_OLD_GIT"


@cache
def version() -> tuple[int, int, int]:
    """The installed git's version, (0, 0, 0) if it cannot be read."""
    stamp, remembered = _remembered_version()
    if remembered is not None:
        return remembered
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", git(["--version"], check=False).stdout)
    if not found:
        return (0, 0, 0)
    have = (int(found.group(1)), int(found.group(2)), int(found.group(3) or 0))
    if stamp is not None:  # a warm run then starts no `git --version` process
        with contextlib.suppress(OSError):
            stamp[1].parent.mkdir(parents=True, exist_ok=True)
            stamp[1].write_text(f"{stamp[0]} {'.'.join(map(str, have))}")
    return have


def _remembered_version() -> tuple[tuple[str, Path] | None, tuple[int, int, int] | None]:
    """The version recorded for this very git binary (same path, size, mtime, inode)."""
    from runner import settings

    try:
        exe = shutil.which("git")
        if exe is None:
            return None, None
        st = os.stat(exe)
        stamp = f"{os.path.realpath(exe)}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
        where = settings.cache_dir() / "git-version"
        key, _, text = where.read_text().partition(" ") if where.exists() else ("", "", "")
    except (OSError, RunnerError):
        return None, None
    if key == stamp and re.fullmatch(r"\d+\.\d+\.\d+", text):
        major, minor, patch = (int(x) for x in text.split("."))
        return (stamp, where), (major, minor, patch)
    return (stamp, where), None


WARNED_STAMP = "old-git-warned"  # in the cache; its mtime is when the warning was last given
WARN_EVERY = 86400.0  # seconds: once a day per cache is enough to be seen, not to be noise


def old_git_warning_due() -> str | None:
    """`old_git_warning()`, at most once a day per cache: the stamp is read first, so a warm
    run inside the day costs one stat and no `git --version`."""
    if os.environ.get(QUIET_VAR):
        return None
    stamp = _warned_stamp()
    if stamp is not None and _given_within_a_day(stamp):
        return None
    message = old_git_warning()
    if message and stamp is not None:
        with contextlib.suppress(OSError):  # a read-only cache warns every run, as before
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.touch()
    return message


def _warned_stamp() -> Path | None:
    from runner import settings

    try:
        return settings.cache_dir() / WARNED_STAMP
    except RunnerError:
        return None


def _given_within_a_day(stamp: Path) -> bool:
    import time

    try:
        return 0 <= time.time() - stamp.stat().st_mtime < WARN_EVERY
    except OSError:
        return False


def old_git_warning() -> str | None:
    """One line when git predates the CVE fixes above (None when current or silenced)."""
    if os.environ.get(QUIET_VAR):
        return None
    have = version()
    missing = [cve for fixed, cve in FIXED_IN if have < fixed]
    if not missing:
        return None
    shown = ".".join(map(str, have))
    return (
        f"git {shown} lacks the fixes for {', '.join(missing)}; run-project does not recurse "
        f"into submodules unless asked, but upgrade git (set {QUIET_VAR}=1 to silence this)"
    )
