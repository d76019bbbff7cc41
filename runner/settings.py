"""Where settings come from: flag, then `RUN_PROJECT_*` variable, then `run-project.toml`
(project directory, then user config directory), then the default.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

from runner.errors import RunnerError

CONFIG_NAME = "run-project.toml"

# name -> (environment variable, default, help). `runs --help` and the README list these.
SETTINGS: dict[str, tuple[str, str | None, str]] = {
    "store": (
        "RUN_PROJECT_STORE",
        "./runs",
        "run store: a directory (SQLite) or postgresql:// URL",
    ),
    "cache": ("RUN_PROJECT_CACHE", None, "machine-wide cache directory"),
    "grace_seconds": ("RUN_PROJECT_GRACE_SECONDS", "10", "seconds between SIGTERM and SIGKILL"),
    "heartbeat_seconds": ("RUN_PROJECT_HEARTBEAT_SECONDS", "5", "heartbeat interval of a run"),
    "channel_alias": (
        "RUN_PROJECT_CHANNEL_ALIAS",
        "https://conda.anaconda.org/",
        "conda channel alias or mirror URL: channel names resolve under it",
    ),
    "docker_image": (
        "RUN_PROJECT_DOCKER_IMAGE",
        None,
        "base image for --env-manager docker when the project has no docker_env",
    ),
    "docker_wheelhouse": (
        "RUN_PROJECT_DOCKER_WHEELHOUSE",
        None,
        "directory of wheels: docker builds install from it with no network",
    ),
    "artifacts": (
        "RUN_PROJECT_ARTIFACTS",
        None,
        "artifact directory (default: beside a SQLite store; ./runs/artifacts for PostgreSQL)",
    ),
    "artifact_limit": (
        "RUN_PROJECT_ARTIFACT_LIMIT",
        "10GB",
        "most bytes of outputs one run may store (e.g. 500MB, 2GiB)",
    ),
    "store_group": (
        "RUN_PROJECT_STORE_GROUP",
        None,
        "group sharing the store (name or id): its directories 2770, files 0660; "
        "unset: private to you (0700, 0600)",
    ),
    "store_retry_seconds": (
        "RUN_PROJECT_STORE_RETRY_SECONDS",
        "300",
        "how long a run waits for a PostgreSQL store that went away before failing",
    ),
    "journal_limit": (
        "RUN_PROJECT_JOURNAL_LIMIT",
        "256MiB",
        "most bytes of one run's journal; metric points past it are not journaled",
    ),
}


def get(name: str, flag: str | None = None, project_dir: Path | None = None) -> str | None:
    """The value of setting `name`, from the first source that has it."""
    if flag is not None:
        return flag
    env_var, default, _ = SETTINGS[name]
    if os.environ.get(env_var):
        return os.environ[env_var]
    for config in _config_files(project_dir):
        value = _read_config(config).get(name.replace("_", "-"), _read_config(config).get(name))
        if value is not None:
            return str(value)
    return default


def get_float(name: str, project_dir: Path | None = None) -> float:
    """A numeric setting; a malformed value is an error naming its source variable."""
    raw = get(name, project_dir=project_dir)
    try:
        return float(raw or 0)
    except ValueError as exc:
        raise RunnerError(
            f"setting {name} = {raw!r} is not a number", f"set {SETTINGS[name][0]} to a number"
        ) from exc


def cache_dir() -> Path:
    """The machine-wide cache: $RUN_PROJECT_CACHE, else $XDG_CACHE_HOME/run-project, else ~."""
    explicit = get("cache")
    if explicit:
        return Path(explicit).expanduser().resolve()
    if os.environ.get("RUN_PROJECT_FORBID_HOME_CACHE"):
        # Set by the test suite so no test can touch (or depend on) the real user cache.
        raise RunnerError("the home cache is forbidden here", "set RUN_PROJECT_CACHE")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "run-project"


def _config_files(project_dir: Path | None) -> list[Path]:
    user = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "run-project"
    dirs = [d for d in (project_dir, user) if d is not None]
    return [d / CONFIG_NAME for d in dirs if (d / CONFIG_NAME).is_file()]


@cache
def _read_config(path: Path) -> dict[str, Any]:
    import tomllib  # only when a settings file exists

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RunnerError(f"cannot read settings file {path}: {exc}", "fix or remove it") from exc
    _check_keys(path, data)
    return data


def _check_keys(path: Path, data: dict[str, Any]) -> None:
    """A key no setting has (`stroe = ...`) is a typo that would be ignored without a word."""
    known = [spelling for name in SETTINGS for spelling in (name.replace("_", "-"), name)]
    for key in data:
        if key not in known:
            import difflib

            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            names = ", ".join(name.replace("_", "-") for name in SETTINGS)
            raise RunnerError(
                f"unknown setting '{key}' in settings file {path}",
                (f"did you mean `{close[0]}`? " if close else "") + f"settings: {names}",
            )
