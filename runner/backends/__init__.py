"""The registry of backends, and `--backend-config` parsing.

Adding a backend: one module with a class satisfying `base.Backend`, one entry in `BACKENDS`.
Modules are imported only when chosen, so a local run pays nothing for Ray or Slurm.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.backends.base import Backend, drive
from runner.errors import BackendError, UsageError
from runner.registry import Registry

if TYPE_CHECKING:
    from runner.backends.local import LocalBackend
    from runner.backends.ray.backend import RayBackend
    from runner.backends.slurm import SlurmBackend

    # mypy checks every backend against the Protocol, as an eagerly built dict would.
    _CHECKED: dict[str, Callable[[dict[str, Any]], Backend]] = {
        "local": LocalBackend,
        "ray": RayBackend,
        "slurm": SlurmBackend,
    }

__all__ = ["BACKENDS", "Backend", "drive", "load_config", "redacted", "select"]

# name → "module:Class" (the same style as env kinds); a module is imported when chosen.
BACKENDS: Registry[Callable[[dict[str, Any]], Backend]] = Registry({
    "local": "runner.backends.local:LocalBackend",
    "ray": "runner.backends.ray.backend:RayBackend",
    "slurm": "runner.backends.slurm:SlurmBackend",
})  # fmt: skip


def load_config(raw: str | None) -> dict[str, Any]:
    """`--backend-config`: a JSON object, or the path of a file holding one."""
    if raw is None or not raw.strip():
        return {}
    text, source = raw, "--backend-config"
    if not raw.lstrip().startswith("{"):
        path = Path(raw).expanduser()
        try:
            text, source = path.read_text(), f"backend config file {path}"
        except OSError as exc:
            raise UsageError(
                f"--backend-config {raw!r} is neither a JSON object nor a readable file ({exc})",
                'pass JSON such as \'{"address": "http://HOST:8265"}\' or a file holding it',
            ) from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source} is not valid JSON: {exc}", "fix the JSON") from exc
    if not isinstance(value, dict):
        raise UsageError(f"{source} must be a JSON object", 'write {"key": value, ...}')
    return value


def select(name: str, config: dict[str, Any]) -> Backend:
    """The backend called `name`, configured (its constructor checks the config)."""
    if name not in BACKENDS:
        raise UsageError(f"unknown --backend {name!r}", "choose one of: " + ", ".join(BACKENDS))
    try:
        return BACKENDS[name](config)
    except BackendError as exc:  # a constructor only checks -b's --backend-config: usage
        raise UsageError(exc.message, exc.hint) from exc


def redacted(config: dict[str, Any]) -> dict[str, Any]:
    """The config as the run record keeps it: header values and URL credentials removed."""
    clean = dict(config)
    if isinstance(clean.get("headers"), dict):
        clean["headers"] = {name: "<redacted>" for name in clean["headers"]}
    if isinstance(clean.get("address"), str):
        clean["address"] = re.sub(r"//[^/@]*@", "//<redacted>@", clean["address"])
    return clean
