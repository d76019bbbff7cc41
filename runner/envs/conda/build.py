"""Building a conda environment: solve `conda.yaml` for this platform (or take a shipped
`conda-lock.yml` exactly, with no solve), install into the staging prefix that `cache.py` hands
us with `alternative_target_prefix` set to the final path (so the rename keeps every embedded
path right), install the `pip:` section with uv, and return the solution as a conda-lock.yml.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from runner import cache
from runner.envs.base import EnvLock
from runner.envs.conda import channels
from runner.envs.conda import lock as conda_lock
from runner.envs.conda import pip as conda_pip
from runner.envs.conda import spec as conda_spec
from runner.envs.conda.lock import Locked
from runner.envs.conda.rattler import run_worker
from runner.envs.conda.spec import PLATFORM, CondaSpec
from runner.errors import EnvError
from runner.progress import Progress
from runner.project.manifest import EnvSpec


def build(spec: EnvSpec, project: Path, into: Path, progress: Progress) -> EnvLock:
    """Build the environment in `into` (a staging dir renamed by cache.py afterwards)."""
    conda = conda_spec.load(spec, project)
    final = _final_path(into, conda_spec.key(conda, project))
    with tempfile.TemporaryDirectory(prefix=f"{into.name}-work-", dir=into.parent) as tmp:
        work = Path(tmp)
        if conda.lock is not None:
            return _from_lock(conda, project, into, final, work, progress)
        return _solved(conda, project, into, final, work, progress)


def _final_path(into: Path, key: str) -> Path:
    """Where `into` will be renamed to (cache.py's layout: `<area>/<key>`)."""
    return into.parent / key if into.name.startswith(cache.STAGING_PREFIX) else into


def _solved(
    conda: CondaSpec, project: Path, into: Path, final: Path, work: Path, progress: Progress
) -> EnvLock:
    if "defaults" in conda.channels:
        progress.warn(f"{conda.source.name}: channel `defaults` is read as conda-forge")
    urls = conda_spec.channel_urls(conda, project)
    shown = ", ".join(channels.short_name(channels.canonical(u, project)) for u in urls)
    progress.step(f"solving conda environment {conda.source.name} ({shown})")
    request = {"mode": "solve", "channels": urls, "specs": list(conda.specs), "platform": PLATFORM}
    records = run_worker(request, into, final, work, progress)
    pip: list[Locked] = []
    if conda.pip:
        python = _python(into, conda)
        progress.step(f"installing {len(conda.pip)} pip requirement(s) with uv")
        pip = conda_pip.resolve(conda.pip, conda.source.parent, python, work, progress)
        conda_pip.install(pip, conda.source.parent, python, work, progress)
        conda_pip.fix_shebangs(into, into, final)
    _write_state(into, conda)
    progress.done(f"conda environment built: {len(records)} conda, {len(pip)} pip packages")
    locked = [_locked_conda(r, project) for r in records]
    text = conda_lock.write(
        [*locked, *pip],
        PLATFORM,
        [channels.short_name(channels.canonical(u, project)) for u in urls],
        [os.path.relpath(conda.source, os.path.realpath(project))],
        conda_spec.key(conda, project),
    )
    return EnvLock("conda-lock.yml", text, _facts("solved", records, pip, shown))


def _from_lock(
    conda: CondaSpec, project: Path, into: Path, final: Path, work: Path, progress: Progress
) -> EnvLock:
    assert conda.lock is not None
    contents = conda_lock.read(conda.lock, PLATFORM)
    progress.step(f"installing exactly from {conda.lock.name} (no solve)")
    locked = [{"url": _conda_url(p.url, conda.lock, project), "sha256": p.sha256,
               "md5": p.md5} for p in contents.conda]  # fmt: skip
    request = {"mode": "locked", "locked": locked, "platform": PLATFORM}
    records = run_worker(request, into, final, work, progress)
    if contents.pip:
        for entry in contents.pip:  # a local file a lock names must be in the project too
            if "://" not in entry.url:
                rel = os.path.relpath(conda.lock.parent / entry.url, os.path.realpath(project))
                conda_spec.inside(project, rel, f"{conda.lock.name} pip url")
        progress.step(f"installing {len(contents.pip)} locked pip package(s) with uv")
        python = _python(into, conda)
        conda_pip.install(list(contents.pip), conda.lock.parent, python, work, progress)
        conda_pip.fix_shebangs(into, into, final)
    _write_state(into, conda)
    progress.done(f"conda environment built from {conda.lock.name}: {len(records)} packages")
    facts = _facts("conda-lock.yml", records, list(contents.pip), "from lock")
    return EnvLock("conda-lock.yml", conda.lock.read_text(), facts)


def _conda_url(url: str, lock: Path, project: Path) -> str:
    """A lock's URL as fetched: through the alias, or a packed bundle's own archive."""
    from runner.envs.conda.bundle import local_url

    return local_url(url, lock, project) or channels.to_mirror(url, project)


def _locked_conda(record: dict[str, Any], project: Path) -> Locked:
    return Locked(
        "conda", record["name"], record["version"], channels.canonical(record["url"], project),
        record["sha256"], record["md5"], conda_lock.dependencies(record["depends"]),
    )  # fmt: skip


def _python(prefix: Path, conda: CondaSpec) -> Path:
    python = prefix / "bin" / "python"
    if not python.exists():
        raise EnvError(
            f"{conda.source.name} has a pip: section but its environment has no python",
            "add `python` (e.g. `python=3.11`) to its dependencies",
        )
    return python


def _write_state(prefix: Path, conda: CondaSpec) -> None:
    """`variables:` go where conda keeps them (conda-meta/state), read back by `command`."""
    if conda.variables:
        state = {"env_vars": dict(conda.variables)}
        (prefix / "conda-meta" / "state").write_text(json.dumps(state, indent=2))


def _facts(
    source: str, records: list[dict[str, Any]], pip: list[Locked], shown: str
) -> dict[str, Any]:
    python = next((r["version"] for r in records if r["name"] == "python"), None)
    # `packages` (name → version) is what `runs compare` / `runs diff` show side by side.
    packages = {str(r["name"]): str(r["version"]) for r in records}
    packages.update({p.name: p.version for p in pip})
    return {"source": source, "platform": PLATFORM, "channels": shown, "python": python,
            "conda_packages": len(records), "pip_packages": len(pip),
            "packages": packages}  # fmt: skip
