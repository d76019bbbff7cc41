"""Finding a Python interpreter of a requested version on this machine.

No version requested: the interpreter running run-project (MLflow uses the current version).
Else looked for, in order: `pythonX.Y` on PATH, the interpreter running run-project, pyenv's
versions (`$PYENV_ROOT/versions/*`), uv's managed Pythons, then plain `python3`/`python` on
PATH. Interpreters named by their directory (pyenv, uv) are not started to learn their
version, which keeps a warm run fast; the ones on PATH are probed once per process.
Nothing is downloaded: `uv python install` cannot reach its servers on offline machines, so
a missing version is a clear error listing what was found.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from runner.errors import EnvError

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
# sys.version's first word is what platform.python_version() returns, without importing it.
_PROBE = "import sys; print(sys.version.split()[0], sys.implementation.name)"


@dataclass(frozen=True)
class Interpreter:
    """A Python interpreter: its resolved executable, full version and implementation."""

    path: Path
    version: str
    implementation: str = "cpython"

    def identity(self) -> dict[str, object]:
        """What distinguishes this interpreter in a cache key (a reinstall changes it)."""
        try:
            st = self.path.stat()
            stamp: list[int] = [st.st_size, st.st_mtime_ns]
        except OSError:
            stamp = []
        return {
            "path": str(self.path),
            "version": self.version,
            "implementation": self.implementation,
            "stat": stamp,
        }


def matches(version: str, requested: str) -> bool:
    """'3.10' matches 3.10.x; '3.10.13' matches only itself."""
    want = requested.split(".")
    return version.split(".")[: len(want)] == want


def find(requested: str | None, asked_by: str) -> tuple[Interpreter, str | None]:
    """The interpreter for `requested` (None: the one running run-project), and a warning
    when only the same minor version was found for an exact `X.Y.Z` request."""
    if requested is None:
        return _current(), None
    requested = _normalise(requested, asked_by)
    for interp in _candidates(requested):
        if matches(interp.version, requested):
            return interp, None
    minor = ".".join(requested.split(".")[:2])
    if minor != requested:
        for interp in _candidates(minor):
            if matches(interp.version, minor):
                note = (
                    f"Python {requested} ({asked_by}) is not on this machine; "
                    f"using {interp.version} ({interp.path}), the same minor version"
                )
                return interp, note
    raise _not_found(requested, asked_by)


def available() -> list[Interpreter]:
    """Every interpreter found, deduplicated by executable (probes everything on PATH)."""
    seen: dict[Path, Interpreter] = {}
    for interp in _candidates(None):
        seen.setdefault(interp.path, interp)
    return sorted(seen.values(), key=lambda i: _sort_key(i.version))


def _normalise(requested: str, asked_by: str) -> str:
    match = _VERSION.fullmatch(requested.strip())
    if match is None:
        raise EnvError(
            f"Python version {requested!r} ({asked_by}) is not a version like 3.11 or 3.11.7",
            'write `python: "3.11"` (quoted, so YAML keeps it a string)',
        )
    return requested.strip()


def _not_found(requested: str, asked_by: str) -> EnvError:
    found = available()
    listing = ", ".join(f"{i.version} ({i.path})" for i in found) or "none"
    return EnvError(
        f"Python {requested} ({asked_by}) was not found on this machine; found: {listing}",
        f"install Python {requested} (e.g. `pyenv install {requested}` or "
        f"`uv python install {requested}`), or ask for one of the versions found",
    )


def _current() -> Interpreter:
    # In a venv, the base interpreter is what a new venv is really made from.
    base = getattr(sys, "_base_executable", None) or sys.executable
    version = ".".join(map(str, sys.version_info[:3]))
    return Interpreter(Path(os.path.realpath(base)), version, sys.implementation.name)


def _candidates(requested: str | None) -> Iterator[Interpreter]:
    minor = ".".join(requested.split(".")[:2]) if requested else None
    for exe in _on_path(f"python{minor}" if minor else None):
        if (interp := _probe(exe)) is not None:
            yield interp
    yield _current()
    yield from _named_dirs(_pyenv_root() / "versions", r"(\d+\.\d+\.\d+)$")
    yield from _named_dirs(_uv_python_dir(), r"^cpython-(\d+\.\d+\.\d+)-")
    for exe in _on_path("python3") + _on_path("python"):
        if (interp := _probe(exe)) is not None:
            yield interp


def _on_path(name: str | None) -> list[Path]:
    """Executables called `name` (or any pythonX.Y when None) on PATH, pyenv shims skipped
    (they are bash scripts that pick a version themselves; pyenv is searched directly)."""
    found: list[Path] = []
    pattern = re.compile(r"python\d+\.\d+$" if name is None else re.escape(name) + "$")
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if not entry or "shims" in Path(entry).parts:
            continue
        try:
            names = sorted(os.listdir(entry))
        except OSError:
            continue
        for candidate in names:
            if not pattern.match(candidate):  # most of PATH: no Path object, no stat
                continue
            path = Path(entry) / candidate
            if os.access(path, os.X_OK) and path.is_file():
                found.append(path)
    return found


def _named_dirs(root: Path, pattern: str) -> Iterator[Interpreter]:
    try:
        names = sorted(os.listdir(root), key=_sort_key, reverse=True)
    except OSError:
        return
    for name in names:
        match = re.search(pattern, name)
        if match is None:
            continue
        version = match.group(1)
        minor = ".".join(version.split(".")[:2])
        exe = root / name / "bin" / f"python{minor}"
        if exe.is_file():
            yield Interpreter(Path(os.path.realpath(exe)), version)


@functools.cache
def _probe(exe: Path) -> Interpreter | None:
    from runner.envs.python import probe_cache

    stamp, known = probe_cache.lookup(exe)
    if known is not None:  # this very binary was probed before: no process to start
        return Interpreter(Path(os.path.realpath(exe)), known[0], known[1])
    try:
        out = subprocess.run(
            [str(exe), "-I", "-S", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=20,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 2:
        return None
    probe_cache.remember(stamp, parts[0], parts[1])
    return Interpreter(Path(os.path.realpath(exe)), parts[0], parts[1])


def _pyenv_root() -> Path:
    return Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")


def _uv_python_dir() -> Path:
    if os.environ.get("UV_PYTHON_INSTALL_DIR"):
        return Path(os.environ["UV_PYTHON_INSTALL_DIR"])
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "uv" / "python"


def _sort_key(version: str) -> tuple[int, ...]:
    match = _VERSION.search(version)
    return tuple(int(g or 0) for g in match.groups()) if match else (0,)
