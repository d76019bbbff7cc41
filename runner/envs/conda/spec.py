"""A project's conda environment file (`conda.yaml`, MLflow's `conda_env`) read and checked.

Every file it names (the env file, `-r`/`-c` files and local paths in its `pip:` section, a
shipped `conda-lock.yml`) must stay inside the project after symlinks are resolved: a
manifest cannot make the runner read `../../etc/passwd` into an environment.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.envs.conda import channels
from runner.errors import ManifestError, UsageError
from runner.project import yamlsafe
from runner.project.manifest import EnvSpec

KEYS = ("name", "channels", "dependencies", "variables", "prefix")
# Looked for, in this order, when `--env-manager conda` runs a project that declares none.
DEFAULT_FILES = ("conda.yaml", "conda.yml", "environment.yml", "environment.yaml")
LOCK_NAME = "conda-lock.yml"
# Bump when a change in how environments are built changes what a build produces.
KIND_VERSION = "1"
# conda's name for this platform (its subdir)
_OS = {"linux": "linux", "darwin": "osx", "win32": "win"}.get(sys.platform, sys.platform)
_ARCH = {"x86_64": "64", "AMD64": "64", "arm64": "arm64", "aarch64": "aarch64"}
PLATFORM = f"{_OS}-{_ARCH.get(platform.machine(), platform.machine())}"
_FILE_OPTIONS = ("-r", "--requirement", "-c", "--constraint", "-e", "--editable")
_BAD = re.compile(r"[\x00\n\r]")
_ARCHIVES = (".whl", ".tar.gz", ".zip")


@dataclass(frozen=True)
class CondaSpec:
    """What the environment file asks for."""

    source: Path
    channels: tuple[str, ...]
    specs: tuple[str, ...]
    pip: tuple[str, ...]
    variables: tuple[tuple[str, str], ...]
    #: Files the pip section names, with their sha256 (they decide the environment too).
    pip_files: tuple[tuple[str, str], ...]
    #: A shipped conda-lock.yml: installed exactly, with no solve.
    lock: Path | None


def load(spec: EnvSpec, project: Path) -> CondaSpec:
    """Find and read the project's conda environment file."""
    source = _find(spec, project)
    doc = yamlsafe.load_file(source, "conda environment file")
    data = doc.value
    if not isinstance(data, dict):
        raise ManifestError(
            f"{source}:1: a conda environment file must be a mapping",
            "write `channels:` and `dependencies:` keys",
        )
    for key in data:
        if key not in KEYS:
            close = difflib.get_close_matches(str(key), KEYS, n=1)
            raise ManifestError(
                f"{doc.where((key,))}: unknown key {key!r} in conda environment file",
                f"did you mean `{close[0]}`?" if close else "allowed keys: " + ", ".join(KEYS),
            )
    channels = _strings(data.get("channels") or [], doc, "channels")
    specs, pip = _dependencies(data.get("dependencies") or [], doc)
    variables = _variables(data.get("variables") or {}, doc)
    pip_files = _pip_files(pip, source.parent, project, doc)
    lock = _lock_file(source, project)
    if spec.lock_file is not None and spec.lock_file.name == LOCK_NAME:
        lock = spec.lock_file  # a rerun installs the recorded lock exactly (rerun.py)
    return CondaSpec(source, channels, specs, pip, variables, pip_files, lock)


def _find(spec: EnvSpec, project: Path) -> Path:
    if spec.kind == "conda" and spec.file:
        return inside(project, spec.file, "conda_env")
    for name in DEFAULT_FILES:
        if (project / name).is_file():
            return inside(project, name, "conda environment file")
    raise UsageError(
        f"--env-manager conda, but {project} declares no conda_env and has no "
        + " / ".join(DEFAULT_FILES),
        "add `conda_env: conda.yaml` to MLproject and write that file",
    )


def inside(project: Path, name: str, what: str, directory_ok: bool = False) -> Path:
    """`project/name`, refused if it is absolute or leaves the project (symlinks resolved)."""
    real_root = os.path.realpath(project)
    real = os.path.realpath(os.path.join(real_root, name))
    if os.path.isabs(name) or os.path.commonpath([real, real_root]) != real_root:
        raise ManifestError(
            f"{what} {name!r} is outside the project {project}",
            "name a file inside the project directory (no absolute path, `..` or outbound link)",
        )
    if not (os.path.isfile(real) or (directory_ok and os.path.isdir(real))):
        raise ManifestError(f"{what} {name!r} does not exist in {project}", "check the path")
    return Path(real)


def _strings(value: Any, doc: yamlsafe.Document, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ManifestError(f"{doc.where((key,))}: `{key}` must be a list", f"write `{key}: [...]`")
    for i, item in enumerate(value):
        if not isinstance(item, str | int | float) or _BAD.search(str(item)) or not str(item):
            raise ManifestError(
                f"{doc.where((key, i))}: `{key}` item {item!r} must be one line of text",
                "write each entry as a plain string",
            )
    return tuple(str(v).strip() for v in value)


def _dependencies(value: Any, doc: yamlsafe.Document) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if not isinstance(value, list):
        raise ManifestError(
            f"{doc.where(('dependencies',))}: `dependencies` must be a list",
            "list conda packages, and optionally `- pip: [...]`",
        )
    specs: list[str] = []
    pip: tuple[str, ...] = ()
    for i, item in enumerate(value):
        if isinstance(item, dict) and set(item) == {"pip"}:
            pip += _strings(item["pip"] or [], doc, "dependencies")
        elif isinstance(item, dict):
            raise ManifestError(
                f"{doc.where(('dependencies', i))}: only a `pip:` list may appear in dependencies",
                "write conda packages as strings and pip packages under `- pip:`",
            )
        else:
            specs.extend(_strings([item], doc, "dependencies"))
    return tuple(specs), pip


def _variables(value: Any, doc: yamlsafe.Document) -> tuple[tuple[str, str], ...]:
    ok = isinstance(value, dict) and all(
        re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k)) and not _BAD.search(str(v))
        for k, v in value.items()
    )
    if not ok:
        raise ManifestError(
            f"{doc.where(('variables',))}: `variables` must map NAME: value (one line each)",
            "write e.g. `variables: {OMP_NUM_THREADS: '1'}`",
        )
    return tuple(sorted((str(k), str(v)) for k, v in value.items()))


def _pip_files(
    lines: tuple[str, ...], base: Path, project: Path, doc: yamlsafe.Document
) -> tuple[tuple[str, str], ...]:
    """Files named in the pip section (and in the `-r`/`-c` files it names, recursively):
    checked to be inside the project, hashed for the key."""
    found: dict[str, str] = {}
    _scan(list(lines), base, base, project, f"{doc.path.name} pip entry", found, depth=0)
    return tuple(found.items())


def _scan(
    lines: list[str], here: Path, cwd: Path, project: Path, what: str,
    found: dict[str, str], depth: int,
) -> None:  # fmt: skip
    """As pip and uv read them: `-r`/`-c` paths are relative to the file that names them
    (`here`), other paths to the directory the installer runs in (`cwd`)."""
    for line in lines:
        words = line.split()
        name = None
        if words and words[0] in _FILE_OPTIONS and len(words) > 1:
            name = words[1]
        elif words and (words[0].startswith(("./", "../", "/")) or words[0].endswith(_ARCHIVES)):
            name = words[0]
        if name is None or "://" in name:
            continue
        base = here if words[0] in _FILE_OPTIONS[:4] else cwd
        rel = os.path.relpath(os.path.join(base, name), os.path.realpath(project))
        path = inside(project, rel, what, directory_ok=True)
        if path.is_dir() or rel in found:  # a local project dir: installed as it is then
            continue
        found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        if words[0] in _FILE_OPTIONS[:4] and depth < 10:  # -r / -c files name more files
            nested = [ln.split(" #")[0].strip() for ln in path.read_text().splitlines()]
            nested = [ln for ln in nested if ln and not ln.startswith("#")]
            _scan(nested, path.parent, cwd, project, f"{rel} entry", found, depth + 1)


def _lock_file(source: Path, project: Path) -> Path | None:
    for folder in (source.parent, Path(os.path.realpath(project))):
        if (folder / LOCK_NAME).exists():
            rel = os.path.relpath(folder / LOCK_NAME, os.path.realpath(project))
            return inside(project, rel, LOCK_NAME)
    return None


def key(conda: CondaSpec, project: Path) -> str:
    """Hash of the resolved channels, specs, pip lines and files, or of the shipped lock."""
    material: dict[str, Any] = {"kind_version": KIND_VERSION, "platform": PLATFORM}
    if conda.lock is not None:
        material["lock"] = hashlib.sha256(conda.lock.read_bytes()).hexdigest()
        material["alias"] = channels.alias(project)  # lock URLs are fetched through it
    else:
        material["channels"] = channel_urls(conda, project)
        material["specs"] = list(conda.specs)
    material.update(pip=list(conda.pip), pip_files=list(conda.pip_files),
                    variables=list(conda.variables))  # fmt: skip
    blob = json.dumps(material, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def channel_urls(conda: CondaSpec, project: Path) -> list[str]:
    """The URLs of the channels to solve from, in order, once each; conda-forge when none
    are named (conda's own default is `defaults`: see channels.RENAMED)."""
    names = conda.channels or ("conda-forge",)
    return list(dict.fromkeys(channels.resolve(c, project) for c in names))
