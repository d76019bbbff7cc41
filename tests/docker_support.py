"""A real dockerd for the tests, and a Python base image made offline (no image can be pulled).

The image holds this interpreter's prefix at the same path (its RUNPATH needs it), the shared
libraries `ldd` lists for it and its extension modules, the CA bundle and a static busybox
(sh, sleep, touch, ...). Only pip is kept of site-packages, so it stays small (~25 MB).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

BASE_TAG = "run-project-test/python:" + ".".join(map(str, sys.version_info[:2]))
BUSYBOX_APPLETS = ("sh", "sleep", "touch", "cat", "ls", "echo", "env", "rm", "mkdir", "true")
SKIP_DIRS = {"test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3"}
KEEP_SITE = re.compile(r"^(pip|pip-[^/]*\.dist-info)$")


def docker_ready() -> str | None:
    """None if a dockerd answers; otherwise why not (for skip/fail messages)."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed (apt-get install docker.io)"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return "dockerd is not running (start it as root: dockerd &): " + probe.stderr[-200:]
    return None


def ensure_base_image() -> str:
    """Make (once per content) the offline Python base image; returns its tag."""
    prefix = Path(sys.base_prefix)
    files = _image_files(prefix)
    digest = hashlib.sha256("\n".join(sorted(map(str, files))).encode()).hexdigest()[:12]
    tag = f"{BASE_TAG}-{digest}"
    found = subprocess.run(["docker", "image", "inspect", tag], capture_output=True)
    if found.returncode == 0:
        return tag
    data = _tar(files, prefix)
    changes = [f"ENV PATH={prefix}/bin:/usr/local/bin:/usr/bin:/bin", "ENV LANG=C.UTF-8"]
    args = ["docker", "import", *(a for c in changes for a in ("--change", c)), "-", tag]
    subprocess.run(args, input=data, check=True, capture_output=True)
    return tag


def _image_files(prefix: Path) -> list[Path]:
    """The prefix (pruned), plus every shared library the interpreter and its modules load."""
    files: list[Path] = []
    for root, dirs, names in os.walk(prefix):
        rel = Path(root).relative_to(prefix)
        dirs[:] = [d for d in dirs if _keep_dir(rel / d)]
        files.extend(Path(root) / n for n in names if _keep_file(rel, n))
    libs: set[Path] = set()
    binaries = [prefix / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"]
    binaries += sorted((prefix / "lib").glob("python3*/lib-dynload/*.so"))
    for binary in binaries:
        if "_tkinter" not in binary.name:
            libs |= {lib for lib in _ldd(binary) if prefix not in lib.parents}
    return files + sorted(libs)


def _keep_file(rel: Path, name: str) -> bool:
    if rel == Path("bin"):
        return name.startswith(("python", "pip"))
    return not (rel.parts[2:3] == ("site-packages",) and len(rel.parts) == 3)


def _keep_dir(rel: Path) -> bool:
    parts = rel.parts
    if len(parts) >= 3 and parts[0] == "lib" and (parts[2] in SKIP_DIRS or "config-" in parts[2]):
        return False
    if len(parts) == 4 and parts[2] == "site-packages":
        return bool(KEEP_SITE.match(parts[3]))
    return not (parts and parts[0] in ("include", "share"))


def _ldd(binary: Path) -> set[Path]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    found: set[Path] = set()
    for line in out.splitlines():
        match = re.search(r"(/\S+)\s+\(0x", line)
        if match:
            found.add(Path(match.group(1)))
    return found


def _tar(files: list[Path], prefix: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in files:
            if path.name.endswith(".pth") and "site-packages" in path.parts:
                continue  # host-only hooks (the sandbox's CA .pth) do not belong in the image
            _add_with_parents(tar, path, follow=not str(path).startswith(str(prefix)))
        _add_with_parents(tar, Path("/etc/ssl/certs/ca-certificates.crt"), follow=True)
        _add_file(tar, "bin/busybox", Path("/usr/bin/busybox"))
        for applet in BUSYBOX_APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        for name in ("tmp", "usr/bin"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
    return buf.getvalue()


def _add_with_parents(tar: tarfile.TarFile, path: Path, follow: bool) -> None:
    # Libraries are often symlinks (libssl.so.3 -> ...): store the real bytes under the
    # name the loader looks for; inside the prefix keep links as links.
    if follow:
        _add_file(tar, str(path).lstrip("/"), path.resolve())
    else:
        tar.add(str(path), arcname=str(path).lstrip("/"), recursive=False)


def _add_file(tar: tarfile.TarFile, arcname: str, source: Path) -> None:
    info = tar.gettarinfo(str(source), arcname=arcname)
    with open(source, "rb") as handle:
        tar.addfile(info, handle)
