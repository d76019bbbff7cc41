"""The `pip:` section of a conda environment, installed with uv into the conda prefix.

uv resolves the section to a PEP 751 `pylock.toml` (URLs and hashes), which becomes the pip
entries of conda-lock.yml; the prefix is then filled from exactly those entries with
`--require-hashes --no-deps`, the same path a shipped lock file takes.
"""

from __future__ import annotations

import os
import platform
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from runner.envs.conda.lock import Locked
from runner.envs.python import uvtool
from runner.errors import EnvError
from runner.progress import Progress

_PATH_OPTIONS = ("-r", "--requirement", "-c", "--constraint", "-e", "--editable",
                 "-f", "--find-links")  # fmt: skip


def resolve(
    lines: tuple[str, ...], base: Path, python: Path, work: Path, progress: Progress
) -> list[Locked]:
    """Resolve the pip lines (paths relative to `base`) for `python`; one entry a package."""
    text = "".join(f"{_absolute(line, base)}\n" for line in lines)
    (work / "requirements.txt").write_text(text)
    out = work / "pylock.toml"
    args = ["pip", "compile", str(work / "requirements.txt"), "--format", "pylock.toml",
            "-o", str(out), "--python", str(python)]  # fmt: skip
    uvtool.run(args, progress, base, "resolving the pip: section with uv")
    lock = tomllib.loads(out.read_text())
    return [_entry(pkg, work, base, _python_tag(python)) for pkg in lock.get("packages", [])]


def _absolute(line: str, base: Path) -> str:
    """Relative paths in a pip line made absolute: the requirements file uv reads lives in a
    scratch directory, but the project wrote them relative to its environment file."""
    words = line.split()
    for i, word in enumerate(words):
        after_option = i > 0 and words[i - 1] in _PATH_OPTIONS
        looks_local = i == 0 and word.startswith(("./", "../"))
        if (after_option or looks_local) and "://" not in word and not os.path.isabs(word):
            words[i] = str(base / word)
    return " ".join(words)


def install(
    entries: list[Locked], base: Path, python: Path, work: Path, progress: Progress
) -> None:
    """Install exactly `entries` (hash-checked, no dependency resolution) for `python`."""
    if not entries:
        return
    lines = []
    for e in entries:
        url = e.url if urlsplit(e.url).scheme else (base / e.url).resolve().as_uri()
        lines.append(f"{e.name} @ {url} --hash=sha256:{e.sha256}\n")
    (work / "install.txt").write_text("".join(lines))
    args = ["pip", "install", "--python", str(python), "--no-deps", "--require-hashes",
            "-r", str(work / "install.txt")]  # fmt: skip
    uvtool.run(args, progress, base, "installing the pip: section with uv")


def fix_shebangs(prefix: Path, staging: Path, final: Path) -> None:
    """uv writes script headers for the staging path (`#!<python>`, or a `/bin/sh` trampoline
    when the path is long); point them at the path the environment will have."""
    old, new = bytes(staging) + b"/", bytes(final) + b"/"
    bindir = prefix / "bin"
    for path in bindir.iterdir() if bindir.is_dir() else ():
        if path.is_symlink() or not path.is_file():
            continue
        with open(path, "rb") as handle:
            head = handle.read(1024)
        if head.startswith(b"#!") and old in head:
            data = path.read_bytes()
            path.write_bytes(head.replace(old, new) + data[len(head) :])


def _python_tag(python: Path) -> tuple[str, str]:
    out = subprocess.run(
        [str(python), "-c", "import sys; print('%d%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return out.stdout.strip() or "3", platform.machine()


def _entry(pkg: dict[str, Any], work: Path, base: Path, tag: tuple[str, str]) -> Locked:
    name, version = str(pkg["name"]), str(pkg.get("version", ""))
    files = [w for w in pkg.get("wheels", []) if _compatible(_file_name(w), tag)]
    files += [pkg[k] for k in ("archive", "sdist") if k in pkg]
    if not files:
        raise EnvError(
            f"uv found no wheel of {name} {version} for this Python and platform",
            "pin a version of it that ships a wheel for this platform",
        )
    chosen = files[0]
    url = chosen.get("url")
    if url is None:  # a local file: keep it relative to the environment file's directory
        url = os.path.relpath((work / chosen["path"]).resolve(), base)
    sha256 = (chosen.get("hashes") or {}).get("sha256")
    return Locked("pip", name, version, str(url), sha256)


def _file_name(wheel: dict[str, Any]) -> str:
    return str(wheel.get("name") or (wheel.get("url") or wheel.get("path") or "").rsplit("/")[-1])


def _compatible(filename: str, tag: tuple[str, str]) -> bool:
    """A wheel's tags against this Python (`cpXY`/`py3`/`abi3`) and machine, roughly as pip."""
    parts = filename.removesuffix(".whl").split("-")
    if len(parts) < 5:
        return False
    pys, abis, plats = (set(p.split(".")) for p in parts[-3:])
    version, machine = tag
    py_ok = bool(pys & {"py3", f"py{version}", f"cp{version}"})
    abi_ok = bool(abis & {"none", "abi3", f"cp{version}"})
    plat_ok = "any" in plats or any("linux" in p and p.endswith(machine) for p in plats)
    return py_ok and abi_ok and plat_ok
