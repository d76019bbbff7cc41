"""conda-lock's `conda-lock.yml` (version 1), written for each solved environment and read
when a project ships one.

Written so conda-lock's own parser accepts it (a test checks that). Read with the same safe
YAML loader as manifests, taking only what an exact install needs: for each package of this
platform its URL and hashes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner.errors import EnvError
from runner.project import yamlsafe

HEADER = """\
# This lock file was written by run-project in conda-lock's format (version 1).
# It lists every package of the environment with its URL and hashes; run-project
# installs it exactly, with no solve, when a project ships it as conda-lock.yml.
# `conda-lock install` reads it too.
"""
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class Locked:
    """One locked package (manager `conda` or `pip`)."""

    manager: str
    name: str
    version: str
    url: str
    sha256: str | None
    md5: str | None = None
    dependencies: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LockContents:
    """The packages of one platform, and the lock's content hash for it."""

    conda: tuple[Locked, ...]
    pip: tuple[Locked, ...]
    content_hash: str | None


def dependencies(depends: list[str]) -> dict[str, str]:
    """`["beta >=2", "python"]` → `{"beta": ">=2", "python": ""}` (conda-lock's shape)."""
    result: dict[str, str] = {}
    for spec in depends:
        name, _, rest = spec.strip().partition(" ")
        result[name] = " ".join(filter(None, [result.get(name, ""), rest.strip()]))
    return result


def write(
    packages: list[Locked],
    platform: str,
    channels: list[str],
    sources: list[str],
    content_hash: str,
) -> str:
    """The conda-lock.yml text for `packages` (conda first, then pip, each sorted by name)."""
    entries = [_entry(p, platform) for p in sorted(packages, key=lambda p: (p.manager, p.name))]
    doc = {
        "version": 1,
        "metadata": {
            "content_hash": {platform: content_hash},
            "channels": [{"url": c, "used_env_vars": []} for c in channels],
            "platforms": [platform],
            "sources": sources,
        },
        "package": entries,
    }
    return HEADER + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def _entry(p: Locked, platform: str) -> dict[str, Any]:
    hashes = {k: v for k, v in (("md5", p.md5), ("sha256", p.sha256)) if v}
    return {"name": p.name, "version": p.version, "manager": p.manager, "platform": platform,
            "dependencies": p.dependencies, "url": p.url, "hash": hashes,
            "category": "main", "optional": False}  # fmt: skip


def read(path: Path, platform: str) -> LockContents:
    """The packages `path` locks for `platform`; every package must carry a hash."""
    doc = yamlsafe.load_file(path, "conda-lock file").value
    if not isinstance(doc, dict) or doc.get("version") != 1:
        raise EnvError(
            f"{path} is not a conda-lock.yml of version 1",
            "regenerate it with `conda-lock -f conda.yaml -p " + platform + "`, or delete it",
        )
    meta = doc.get("metadata") or {}
    if platform not in (meta.get("platforms") or []):
        raise EnvError(
            f"{path} has no packages for this platform ({platform})",
            f"add it: `conda-lock -f conda.yaml -p {platform}`, or delete the lock to solve here",
        )
    conda: list[Locked] = []
    pip: list[Locked] = []
    for i, item in enumerate(doc.get("package") or []):
        if not isinstance(item, dict) or item.get("platform") != platform:
            continue
        if item.get("optional") or item.get("category", "main") != "main":
            continue
        locked = _locked(item, path, i)
        (conda if locked.manager == "conda" else pip).append(locked)
    content_hash = (meta.get("content_hash") or {}).get(platform)
    return LockContents(tuple(conda), tuple(pip), content_hash)


def _locked(item: dict[str, Any], path: Path, index: int) -> Locked:
    hashes = item.get("hash") or {}
    manager = item.get("manager")
    name, url, sha256 = item.get("name"), item.get("url"), hashes.get("sha256")
    md5 = hashes.get("md5")
    ok = manager in ("conda", "pip") and isinstance(name, str) and isinstance(url, str)
    ok = ok and all(h is None or (isinstance(h, str) and _HEX.fullmatch(h)) for h in (sha256, md5))
    # conda packages may carry only md5 (older locks); pip ones need sha256 (--require-hashes)
    if not ok or not (sha256 or (md5 and manager == "conda")):
        raise EnvError(
            f"{path}: package #{index + 1} ({name!r}) lacks a name, url or hash",
            "regenerate the lock file; run-project installs only packages it can verify",
        )
    deps = item.get("dependencies") or {}
    return Locked(str(manager), str(name), str(item.get("version", "")), str(url), sha256, md5,
                  {str(k): str(v) for k, v in deps.items()})  # fmt: skip
