"""A real dockerd for the tests, and a Python base image made offline (no image can be pulled).

The image holds this interpreter and its stdlib at the same paths (a pyenv build's RUNPATH
needs that), the shared libraries `ldd` lists for it and its extension modules, pip (under
/opt/pip), the CA bundle and a static busybox (sh, sleep, touch, ...): about 60 MB.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

BASE_TAG = "run-project-test/python:" + ".".join(map(str, sys.version_info[:2]))
BUSYBOX_APPLETS = ("sh", "sleep", "touch", "cat", "ls", "echo", "env", "rm", "mkdir", "true")
SKIP_DIRS = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3",
             "site-packages", "dist-packages"}  # fmt: skip
# Debian marks its python as externally managed; the image's pip must install freely.
SKIP_FILES = {"EXTERNALLY-MANAGED"}


def docker_ready() -> str | None:
    """None if a dockerd answers; otherwise why not (for skip/fail messages)."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed (apt-get install docker.io)"
    if shutil.which("busybox") is None:
        return "busybox is not installed (apt-get install busybox-static)"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return "dockerd is not running (start it as root: dockerd &): " + probe.stderr[-200:]
    return None


def ensure_base_image() -> str:
    """Make (once per content) the offline Python base image; returns its tag."""
    entries = _image_entries()
    listing = "\n".join(f"{src}>{arc}" for src, arc, _ in sorted(entries))
    tag = f"{BASE_TAG}-{hashlib.sha256(listing.encode()).hexdigest()[:12]}"
    found = subprocess.run(["docker", "image", "inspect", tag], capture_output=True)
    if found.returncode == 0:
        return tag
    python = Path(os.path.realpath(sys.executable))
    changes = [
        f"ENV PATH=/usr/local/bin:{python.parent}:/usr/bin:/bin",
        "ENV PYTHONPATH=/opt/pip",  # pip lives outside the stdlib, wherever the host had it
        "ENV LANG=C.UTF-8",
    ]
    args = ["docker", "import", *(a for c in changes for a in ("--change", c)), "-", tag]
    subprocess.run(args, input=_tar(entries, python), check=True, capture_output=True)
    return tag


Entry = tuple[Path, str, bool]  # host path, name in the image, follow symlinks


def _image_entries() -> list[Entry]:
    """The interpreter, its stdlib (pruned), the libraries it loads, pip and the CA bundle,
    for a pyenv/python.org build as for Debian's python3 (also seen through a venv)."""
    python = Path(os.path.realpath(sys.executable))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    entries: list[Entry] = [(python, _arc(python), True)]
    for root, dirs, names in os.walk(stdlib):
        rel = Path(root).relative_to(stdlib)
        dirs[:] = sorted(d for d in dirs if not _skip(rel / d))
        entries += [(Path(root, n), _arc(Path(root, n)), False) for n in sorted(names)
                    if n not in SKIP_FILES]  # fmt: skip
    libs: set[Path] = set()
    for binary in [python, *sorted(stdlib.glob("lib-dynload/*.so"))]:
        if "_tkinter" not in binary.name:
            libs |= _ldd(binary)
    entries += [(lib, _arc(lib), True) for lib in sorted(libs)]
    import pip  # the image's installer: the one this interpreter has

    pip_dir = Path(pip.__file__).parent
    for root, dirs, names in os.walk(pip_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            path = Path(root, name)
            entries.append((path, f"opt/pip/pip/{path.relative_to(pip_dir)}", False))
    ca = Path("/etc/ssl/certs/ca-certificates.crt")
    entries.append((ca, _arc(ca), True))
    return entries


def _arc(path: Path) -> str:
    return str(path).lstrip("/")


def _skip(rel: Path) -> bool:
    name = rel.parts[0] if rel.parts else ""
    return name in SKIP_DIRS or name.startswith("config-") or rel.name == "__pycache__"


def _ldd(binary: Path) -> set[Path]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    found: set[Path] = set()
    for line in out.splitlines():
        match = re.search(r"(/\S+)\s+\(0x", line)
        if match:
            found.add(Path(match.group(1)))
    return found


def _tar(entries: list[Entry], python: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for source, arcname, follow in entries:
            if follow:  # libraries are often symlinks: store the bytes under the loaded name
                _add_file(tar, arcname, source.resolve())
            else:
                tar.add(str(source), arcname=arcname, recursive=False)
        _add_file(tar, "bin/busybox", Path("/usr/bin/busybox"))
        links = {f"bin/{applet}": "busybox" for applet in BUSYBOX_APPLETS}
        links |= {"usr/local/bin/python": str(python), "usr/local/bin/python3": str(python)}
        for name, target in links.items():
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, target
            tar.addfile(link)
        info = tarfile.TarInfo("tmp")
        info.type, info.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(info)
    return buf.getvalue()


def _add_file(tar: tarfile.TarFile, arcname: str, source: Path) -> None:
    info = tar.gettarinfo(str(source), arcname=arcname)
    with open(source, "rb") as handle:
        tar.addfile(info, handle)
