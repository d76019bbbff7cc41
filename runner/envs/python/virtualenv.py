"""The `virtualenv` kind (MLflow's `python_env`; `--env-manager virtualenv` or `uv`).

One code path, built with uv: `uv venv --relocatable` (uv's virtualenv) into the cache's
staging directory, the requirements resolved by `uv pip compile --format pylock.toml` (or a
project's own pylock.toml / uv.lock taken as is), then `uv pip sync` of that lock: what is
installed is exactly what is recorded with the run. The build's steps (run side by side
where they can) are in venv_build.py. Locking, re-checking, staging, the completion marker
and the atomic rename belong to cache.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.envs.base import EnvLock, KindDefaults, Launch, Packed, PackInto
from runner.envs.python import inputs as python_inputs
from runner.envs.python import interpreters
from runner.envs.python.interpreters import Interpreter
from runner.envs.python.layout import LOCK_NAME, venv_problems, venv_python
from runner.envs.python.requested import PythonInputs
from runner.progress import Progress
from runner.project.manifest import EnvSpec
from runner.sources.checkout import Checkout

KEY_VERSION = 1  # bump when the layout of a built env changes
# uv settings that change what a resolution picks (values are hashed, never recorded).
INDEX_VARIABLES = (
    "UV_INDEX",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_INDEX_STRATEGY",
    "UV_PRERELEASE",
    "UV_RESOLUTION",
    "UV_EXCLUDE_NEWER",
    "UV_CONSTRAINT",
    "UV_OVERRIDE",
    "UV_NO_BINARY",
    "UV_NO_BUILD",
    "UV_TORCH_BACKEND",
)
Resolved = tuple[PythonInputs, Interpreter, str | None]


class VirtualenvEnv(KindDefaults):
    """A venv per distinct (interpreter, platform, requirement files, lock, index settings)."""

    name = "virtualenv"
    builds = True
    relocatable = True

    def __init__(self) -> None:
        self._resolved: dict[tuple[EnvSpec, Path], Resolved] = {}

    def key(self, spec: EnvSpec, checkout: Checkout) -> str:
        """sha256 of everything that decides the env; independent of where the project is."""
        inputs, interp, _ = self._resolve(spec, checkout.path)
        root = os.path.realpath(checkout.path)
        payload = {
            "v": KEY_VERSION,
            "kind": self.name,
            "interpreter": interp.identity(),
            "platform": [sys.platform, platform.machine(), _libc()],
            "source": inputs.source,
            "requirements": [line.replace(root, "<project>") for line in inputs.requirements],
            "lock": inputs.lock.name if inputs.lock else None,
            "files": {n: hashlib.sha256(b).hexdigest() for n, b in sorted(inputs.files.items())},
            "index": _index_settings(),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]

    def build(self, spec: EnvSpec, checkout: Checkout, into: Path, progress: Progress) -> EnvLock:
        """Create the venv in `into`, resolve and install; the lock is what was installed."""
        from runner.envs.python import venv_build  # only a build needs it; a warm run never does

        inputs, interp, note = self._resolve(spec, checkout.path)
        warnings = [*inputs.warnings, *([note] if note else [])]
        for warning in warnings:
            progress.warn(warning)
        progress.step(f"building virtualenv: Python {interp.version}, {inputs.source}")
        built = venv_build.build(inputs, interp, into, checkout.path, progress)
        progress.done(f"virtualenv ready: {len(built.packages)} packages, Python {interp.version}")
        facts: dict[str, Any] = {
            "python": interp.version,
            "interpreter": str(interp.path),
            "inputs": inputs.source,
            "files": sorted(inputs.files),
            "packages": built.packages,  # name → version: what `runs compare` shows
            "installer": built.installer,
            "warnings": warnings,
        }
        return EnvLock(LOCK_NAME, built.lock_text, facts)

    def healthy(self, env_dir: Path) -> bool:
        """Cheap file checks (no process): the venv's python resolves, its config is there,
        and the base interpreter's stdlib (site.py) still exists."""
        return not venv_problems(env_dir)

    def command(
        self, env_dir: Path | None, argv: tuple[str, ...], env: Mapping[str, str]
    ) -> Launch:
        """The venv's bin first on PATH, as `activate` would do (no shell involved)."""
        assert env_dir is not None
        new = dict(env)
        new.pop("PYTHONHOME", None)
        new["VIRTUAL_ENV"] = str(env_dir)
        new["PATH"] = os.pathsep.join([str(env_dir / "bin"), env.get("PATH", os.defpath)])
        if argv and argv[0] in ("python", "python3"):
            argv = (str(venv_python(env_dir)), *argv[1:])
        return Launch(argv=argv, env=new)

    def pack_lock(
        self, spec: EnvSpec, checkout: Checkout, into: PackInto, progress: Progress
    ) -> Packed:
        """The pylock.toml of the environment built here (and its wheels)."""
        from runner.envs.python import pack

        return pack.pack_built(self, spec, checkout, into, progress)

    def foreign_lock(
        self, spec: EnvSpec, checkout: Checkout, into: PackInto, platform: str, progress: Progress
    ) -> Packed:
        """A pylock.toml resolved for `platform` by uv, nothing built here."""
        from runner.envs.python import pack

        return pack.pack_foreign(spec, checkout, into, platform, progress)

    def _resolve(self, spec: EnvSpec, project: Path) -> Resolved:
        cached = self._resolved.get((spec, project))
        if cached is None:
            inputs = python_inputs.detect(spec, project)
            interp, note = interpreters.find(inputs.python, inputs.python_from)
            cached = self._resolved[(spec, project)] = (inputs, interp, note)
        return cached


def _libc() -> str:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return ""


def _index_settings() -> dict[str, str]:
    """Index-related uv variables and uv config files, hashed (they may hold credentials)."""
    found = {v: os.environ[v] for v in INDEX_VARIABLES if os.environ.get(v)}
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    for path in (config / "uv" / "uv.toml", Path("/etc/uv/uv.toml")):
        if path.is_file():
            found[str(path)] = path.read_text(errors="replace")
    return {k: hashlib.sha256(v.encode()).hexdigest() for k, v in found.items()}
