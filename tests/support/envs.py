"""Helpers for environment tests: a package whose build waits (to catch a build in the act)
and a copy of this Python whose files a test may break without harming the real one."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

# A PEP 517 backend with no dependencies: its build waits while the file `hold` exists, so a
# test can interrupt, kill or pile up runs while a build is certainly in progress.
HOLD_BACKEND = """
import base64, hashlib, os, time, zipfile
HERE = os.path.dirname(os.path.abspath(__file__))
NAME, VERSION = "holdpkg", "0.1"
DIST = NAME + "-" + VERSION + ".dist-info"
METADATA = "Metadata-Version: 2.1\\nName: holdpkg\\nVersion: 0.1\\n"

def _wait():
    with open(os.path.join(HERE, "started"), "a") as f:
        f.write("x\\n")
    deadline = time.time() + 120
    while os.path.exists(os.path.join(HERE, "hold")) and time.time() < deadline:
        time.sleep(0.05)

def get_requires_for_build_wheel(config_settings=None):
    return []

def prepare_metadata_for_build_wheel(directory, config_settings=None):
    _wait()
    os.makedirs(os.path.join(directory, DIST))
    with open(os.path.join(directory, DIST, "METADATA"), "w") as f:
        f.write(METADATA)
    return DIST

def build_wheel(directory, config_settings=None, metadata_directory=None):
    _wait()
    files = {"holdpkg.py": "VALUE = 42\\n", DIST + "/METADATA": METADATA,
             DIST + "/WHEEL": "Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}
    record = []
    name = NAME + "-" + VERSION + "-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, name), "w") as zf:
        for path, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(path + ",sha256=" + digest.decode() + "," + str(len(data)))
            zf.writestr(path, data)
        record.append(DIST + "/RECORD,,")
        zf.writestr(DIST + "/RECORD", "\\n".join(record) + "\\n")
    return name
"""

HOLD_PYPROJECT = """\
[build-system]
requires = []
build-backend = "holdback"
backend-path = ["."]

[project]
name = "holdpkg"
version = "0.1"
"""


def hold_package(project: Path) -> Path:
    """Write `holdpkg/` into `project` with its build held; remove `<pkg>/hold` to release."""
    pkg = project / "holdpkg"
    pkg.mkdir(parents=True)
    (pkg / "holdback.py").write_text(textwrap.dedent(HOLD_BACKEND))
    (pkg / "pyproject.toml").write_text(HOLD_PYPROJECT)
    (pkg / "hold").write_text("")
    return pkg


def wait_for(predicate: object, timeout: float = 60.0, what: str = "condition") -> None:
    """Poll `predicate()` until true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def fake_python(root: Path) -> Path:
    """A private copy of this Python (binary copied, stdlib linked, site.py copied), so a test
    can delete its site.py. Returns its bin directory (holding `pythonX.Y`)."""
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    base = Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    stdlib = Path(sysconfig.get_path("stdlib"))
    (root / "bin").mkdir(parents=True)
    lib = root / "lib" / f"python{minor}"
    lib.mkdir(parents=True)
    shutil.copy2(base, root / "bin" / f"python{minor}")
    for shared in (Path(sys.base_prefix) / "lib").glob("libpython*"):
        (root / "lib" / shared.name).symlink_to(shared)
    for item in stdlib.iterdir():
        if item.name != "site.py":
            (lib / item.name).symlink_to(item)
    shutil.copy2(stdlib / "site.py", lib / "site.py")
    return root / "bin"
