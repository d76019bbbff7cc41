"""The layout of a built virtualenv: where its interpreter and run-project's notes are, and
whether it is still whole. Shared by the kind (virtualenv.py) and its builder (venv_build.py)."""

from __future__ import annotations

import os
from pathlib import Path

LOCK_NAME = "pylock.toml"
META = ".run-project"  # inside the env: the requirements given to uv and the lock it made


def venv_problems(env_dir: Path) -> list[str]:
    """What is missing from the venv at `env_dir` (empty when it is whole)."""
    cfg = read_pyvenv_cfg(env_dir / "pyvenv.cfg")
    if cfg is None or "home" not in cfg or "version_info" not in cfg:
        return [f"{env_dir / 'pyvenv.cfg'} is missing or incomplete"]
    minor = ".".join(cfg["version_info"].split(".")[:2])
    python = venv_python(env_dir)
    problems = []
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        problems.append(f"its interpreter {os.path.realpath(python)} is missing")
    if not (env_dir / "lib" / f"python{minor}" / "site-packages").is_dir():
        problems.append("its site-packages directory is missing")
    site = Path(cfg["home"]).parent / "lib" / f"python{minor}" / "site.py"
    if not site.is_file():
        problems.append(f"the standard library file {site} is missing")
    return problems


def venv_python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def read_pyvenv_cfg(path: Path) -> dict[str, str] | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    pairs = (line.partition("=") for line in lines)
    return {k.strip(): v.strip() for k, sep, v in pairs if sep}
