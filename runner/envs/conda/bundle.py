"""`pack --with-deps` for conda projects: every package a conda-lock.yml installs on the
target platform (conda archives and the `pip:` section's wheels), downloaded into the bundle
and checked against the lock's hashes, and the lock rewritten so each `url` is a path relative
to the lock file. `conda_build._from_lock` turns such paths into `file://` URLs of the bundled
archives, and the worker still checks each hash, so the bundle installs with no network.

Downloads run in the runner (plain HTTP, as the worker would fetch them); py-rattler is not
needed for this step.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from runner.envs.base import EnvKind, Packed, PackInto
from runner.envs.conda import channels
from runner.envs.conda.lock import HEADER
from runner.envs.python.wheelhouse import download
from runner.errors import EnvError
from runner.progress import Progress
from runner.project.manifest import EnvSpec
from runner.sources.checkout import Checkout


def bundle_packages(
    lock_text: str, platform: str, into: Path, prefix: str, project: Path
) -> tuple[str, list[dict[str, str]]]:
    """Download the packages `lock_text` locks for `platform` into `into`; returns the
    rewritten lock and a list of {name, version, file, sha256}. `prefix` is `into` relative
    to the lock file; `project` decides the channel alias the lock's URLs are fetched through."""
    doc = yaml.safe_load(lock_text)  # our own lock (or the project's, already read safely)
    if not isinstance(doc, dict) or not isinstance(doc.get("package"), list):
        raise EnvError("the conda-lock.yml to bundle has no package list",
                       "regenerate the lock, or pack without --with-deps")  # fmt: skip
    kept: list[dict[str, str]] = []
    for item in doc["package"]:
        if not isinstance(item, dict) or item.get("platform") != platform:
            continue
        if "://" not in str(item.get("url")):
            continue  # a file of the project itself (a pip: wheel path): packed with it
        kept.append(_fetch(item, into, prefix, project))
    doc["package"] = [i for i in doc["package"] if isinstance(i, dict)
                      and i.get("platform") == platform]  # fmt: skip
    meta = doc.get("metadata")
    if isinstance(meta, dict):  # the bundle carries one platform's packages only
        meta["platforms"] = [platform]
    text = HEADER + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    return text, kept


def _fetch(item: dict[str, Any], into: Path, prefix: str, project: Path) -> dict[str, str]:
    name, url = str(item.get("name")), str(item.get("url"))
    hashes = item.get("hash") or {}
    algorithm = "sha256" if hashes.get("sha256") else "md5"
    digest = str(hashes.get(algorithm) or "")
    if not digest:
        raise EnvError(f"conda-lock.yml: package {name} has no hash, so it cannot be bundled",
                       "regenerate the lock file")  # fmt: skip
    file_name = url.rsplit("/", 1)[-1].split("#", 1)[0]
    folder = "conda" if item.get("manager") == "conda" else "wheels"
    target = into / folder / file_name
    if not target.exists():  # a package locked twice (e.g. categories) is fetched once
        download(channels.to_mirror(url, project), target, digest, name, algorithm)
    item["url"] = f"{prefix}/{folder}/{file_name}"
    sha256 = str(hashes.get("sha256") or "")
    if not sha256:
        from runner.tracking.hashing import sha256_file

        sha256 = sha256_file(target)
    return {"name": name, "version": str(item.get("version", "")),
            "file": f"{folder}/{file_name}", "sha256": sha256}  # fmt: skip


def local_url(url: str, lock: Path, project: Path) -> str | None:
    """A bundled lock's relative `url` as a `file://` URL inside the project (else None)."""
    if "://" in url:
        return None
    from runner.envs.conda import spec as conda_spec

    rel = os.path.relpath(lock.parent / url, os.path.realpath(project))
    return conda_spec.inside(project, rel, f"{lock.name} url").as_uri()


# What a solve for another platform assumes that machine has (conda's virtual packages):
# a current kernel and glibc 2.28 on Linux, macOS 11 on Macs.
_VIRTUAL = {
    "linux-64": [["__unix", "0", "0"], ["__linux", "5.10", "0"], ["__glibc", "2.28", "0"],
                 ["__archspec", "1", "x86_64"]],
    "linux-aarch64": [["__unix", "0", "0"], ["__linux", "5.10", "0"], ["__glibc", "2.28", "0"],
                      ["__archspec", "1", "aarch64"]],
    "osx-64": [["__unix", "0", "0"], ["__osx", "11.0", "0"], ["__archspec", "1", "x86_64"]],
    "osx-arm64": [["__unix", "0", "0"], ["__osx", "11.0", "0"], ["__archspec", "1", "arm64"]],
    "win-64": [["__win", "0", "0"], ["__archspec", "1", "x86_64"]],
}  # fmt: skip


def foreign_lock(spec: EnvSpec, project: Path, platform: str, progress: Progress) -> str:
    """The conda-lock.yml of `spec` for another platform: the project's own (if it covers
    that platform), else a solve for that subdir in the worker, installing nothing."""
    from runner.envs.conda import lock as conda_lock
    from runner.envs.conda import spec as conda_spec
    from runner.envs.conda.rattler import run_worker

    conda = conda_spec.load(spec, project)
    if conda.lock is not None:
        conda_lock.read(conda.lock, platform)  # refuses a lock without that platform
        return conda.lock.read_text()
    if conda.pip:
        raise EnvError(
            f"{conda.source.name} has a pip: section, which cannot be resolved for "
            f"{platform} here yet",
            "pack on a machine of that platform, or ship a conda-lock.yml covering it",
        )
    urls = conda_spec.channel_urls(conda, project)
    progress.step(f"solving conda environment {conda.source.name} for {platform}")
    request = {"mode": "lock", "channels": urls, "specs": list(conda.specs),
               "platform": platform, "virtual": _VIRTUAL[platform]}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="run-project-solve-") as tmp:
        work = Path(tmp)
        records = run_worker(request, work / "prefix", work / "prefix", work, progress)
    locked = [conda_lock.Locked("conda", r["name"], r["version"],
                                channels.canonical(r["url"], project), r["sha256"], r["md5"],
                                conda_lock.dependencies(r["depends"]))
              for r in records]  # fmt: skip
    return conda_lock.write(
        locked, platform, [channels.short_name(channels.canonical(u, project)) for u in urls],
        [os.path.relpath(conda.source, os.path.realpath(project))],
        conda_spec.key(conda, project),
    )  # fmt: skip


def lock_place(spec: EnvSpec, project: Path, top: Path) -> Path:
    """Where in the bundle tree `top` (a copy of `project`) the conda-lock.yml goes so the
    run finds it: over the project's own lock (next to conda.yaml or at the top), else at
    the top."""
    from runner.envs.conda import spec as conda_spec

    shipped = conda_spec.load(spec, project).lock
    if shipped is None:
        return top / conda_spec.LOCK_NAME
    return top / os.path.relpath(shipped, os.path.realpath(project))


def pack_built(
    kind: EnvKind, spec: EnvSpec, checkout: Checkout, into: PackInto, progress: Progress
) -> Packed:
    """`pack`: build (or reuse) the environment here, write its conda-lock.yml where the run
    finds it and, with --with-deps, bundle the packages it installs."""
    from runner.envs import prepared
    from runner.envs.conda.spec import PLATFORM

    with prepared(kind, spec, checkout, progress) as env:  # in use until packed
        name, text = env.lock.lock_name, env.lock.lock_text
        if name is None or text is None:
            return Packed()
        if name != "conda-lock.yml":  # not a lock this module knows how to place or bundle
            if into.with_deps:
                raise EnvError(
                    f"--with-deps cannot bundle the packages of {name} yet",
                    "pack without --with-deps (the lock is still included)",
                )
            (into.top / name).write_text(text)
            return Packed(name)
        step = "downloading the conda packages and wheels of " + name
        return _write_lock(text, spec, checkout, into, PLATFORM, step, progress)


def pack_foreign(
    spec: EnvSpec, checkout: Checkout, into: PackInto, platform: str, progress: Progress
) -> Packed:
    """`pack --platform`: solve for `platform` (nothing installed), write the lock where the
    run will find it; with --with-deps, bundle that platform's packages."""
    text = foreign_lock(spec, checkout.path, platform, progress)
    step = f"downloading the {platform} conda packages of conda-lock.yml"
    return _write_lock(text, spec, checkout, into, platform, step, progress)


def _write_lock(
    text: str,
    spec: EnvSpec,
    checkout: Checkout,
    into: PackInto,
    platform: str,
    step: str,
    progress: Progress,
) -> Packed:
    """Write conda-lock.yml where the run finds it; with --with-deps, bundle the packages
    it locks for `platform` and point the lock at them."""
    where = lock_place(spec, checkout.path, into.top)
    packages: list[dict[str, str]] = []
    if into.with_deps:
        progress.step(step)
        prefix = os.path.relpath(into.files, where.parent)
        text, packages = bundle_packages(text, platform, into.files, prefix, checkout.path)
    where.write_text(text)
    return Packed("conda-lock.yml", tuple(packages))
