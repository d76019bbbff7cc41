"""A small real conda channel for the tests, made by hand: `.tar.bz2` packages with
`info/index.json`, `info/paths.json` and their payload, indexed by py-rattler.

What is in it (channel `conda-forge`, so example projects written for the real one resolve here
through the channel alias):
- `alpha` 1.0 (needs `beta <2`) and 2.0 (needs `beta >=2`), `beta` 1.0 / 2.0 / 3.0: plain
  noarch packages whose versions the solver must choose between; each installs
  `share/<name>/VERSION`.
- `pip` 24.0: a stand-in (MLflow's conda.yaml files list it).
- `tinylib` 1.0: a pure-Python wheel wrapped as a `noarch: python` package (with an entry point).
- `python` 3.X.Y: venv-shaped, wrapping the interpreter that runs the tests (`bin/python` is a
  symlink to it; `pyvenv.cfg` makes the prefix its `sys.prefix`). A real conda `python` cannot
  be downloaded here; everything else about the channel is real.
Channel `rp-broken`: `tampered` 1.0, whose archive is replaced after indexing (hash mismatch).
Channel `rp-slow`: `sloth` 1.0, which the test server sends slowly while asked to (so a test can
interrupt a build in the middle of its install).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import sys
import tarfile
import time
import zipfile
from pathlib import Path

SUBDIR = "linux-64"  # the only platform these tests run on
PY = f"{sys.version_info.major}.{sys.version_info.minor}"
PY_FULL = ".".join(str(v) for v in sys.version_info[:3])


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes | None, link: str | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 1_700_000_000
    if link is not None:
        info.type = tarfile.SYMTYPE
        info.linkname = link
        tar.addfile(info)
        return
    assert data is not None
    info.size = len(data)
    info.mode = 0o755 if name.startswith("bin/") else 0o644
    tar.addfile(info, io.BytesIO(data))


def write_package(
    channel: Path,
    subdir: str,
    index: dict[str, object],
    files: dict[str, bytes],
    links: dict[str, str] | None = None,
    extra_info: dict[str, bytes] | None = None,
) -> Path:
    """Write `<channel>/<subdir>/<name>-<version>-<build>.tar.bz2`; returns its path."""
    links = links or {}
    index = {"build_number": 0, "depends": [], "license": "MIT", "subdir": subdir,
             "timestamp": 1_700_000_000_000, **index}  # fmt: skip
    paths: list[dict[str, object]] = [
        {
            "_path": p,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(d).hexdigest(),
            "size_in_bytes": len(d),
        }
        for p, d in sorted(files.items())
    ]
    paths += [{"_path": p, "path_type": "softlink", "size_in_bytes": 0} for p in sorted(links)]
    info = {
        "info/index.json": json.dumps(index, indent=2).encode(),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}).encode(),
        "info/files": "".join(f"{p}\n" for p in sorted([*files, *links])).encode(),
        **(extra_info or {}),
    }
    out = channel / subdir / f"{index['name']}-{index['version']}-{index['build']}.tar.bz2"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:bz2") as tar:
        for name, data in {**info, **files}.items():
            _tar_add(tar, name, data)
        for name, target in links.items():
            _tar_add(tar, name, None, link=target)
    return out


def make_wheel(dest: Path) -> Path:
    """A pure-Python wheel `tinylib-1.0` (also used as a pip: requirement)."""
    files = {
        "tinylib/__init__.py": b"VERSION = '1.0'\n\ndef main():\n    print('tinylib', VERSION)\n",
        "tinylib-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinylib\nVersion: 1.0\n",
        "tinylib-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
        "tinylib-1.0.dist-info/entry_points.txt": b"[console_scripts]\ntinylib = tinylib:main\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("tinylib-1.0.dist-info/RECORD,,")
    files["tinylib-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = dest / "tinylib-1.0-py3-none-any.whl"
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return wheel


def _wheel_as_noarch_python(channel: Path, wheel: Path) -> None:
    """Wrap the wheel's files under `site-packages/` as conda's noarch: python does."""
    with zipfile.ZipFile(wheel) as zf:
        files = {
            f"site-packages/{n}": zf.read(n)
            for n in zf.namelist()
            if not n.endswith(("RECORD", "entry_points.txt"))
        }
    files["site-packages/tinylib-1.0.dist-info/INSTALLER"] = b"conda\n"
    link = {"noarch": {"type": "python", "entry_points": ["tinylib = tinylib:main"]},
            "package_metadata_version": 1}  # fmt: skip
    write_package(
        channel, "noarch",
        {"name": "tinylib", "version": "1.0", "build": "py_0", "noarch": "python",
         "subdir": "noarch", "depends": ["python >=3.8", "alpha"]},
        files, extra_info={"info/link.json": json.dumps(link).encode()},
    )  # fmt: skip


def _python_package(channel: Path) -> None:
    """A venv-shaped `python` wrapping the interpreter running the tests."""
    base = Path(sys.base_prefix)
    real = base / "bin" / f"python{PY}"
    pyvenv = f"home = {base / 'bin'}\ninclude-system-site-packages = false\nversion = {PY_FULL}\n"
    write_package(
        channel, SUBDIR,
        {"name": "python", "version": PY_FULL, "build": "rp_0", "subdir": SUBDIR,
         "arch": "x86_64", "platform": "linux"},
        {"pyvenv.cfg": pyvenv.encode(),
         f"lib/python{PY}/site-packages/_rp_python_package.py": b"# site-packages exists\n"},
        links={"bin/python": str(real), "bin/python3": str(real), f"bin/python{PY}": str(real)},
    )  # fmt: skip


def _generic(channel: Path, name: str, version: str, depends: list[str]) -> None:
    write_package(
        channel, "noarch",
        {"name": name, "version": version, "build": "0", "noarch": "generic",
         "subdir": "noarch", "depends": depends},
        {f"share/{name}/VERSION": f"{version}\n".encode()},
    )  # fmt: skip


def build(root: Path) -> Path:
    """Build and index the channels under `root` (served as the channel alias)."""
    from rattler.index import index_fs

    main = root / "conda-forge"
    _generic(main, "alpha", "1.0", ["beta <2"])
    _generic(main, "alpha", "2.0", ["beta >=2"])
    for version in ("1.0", "2.0", "3.0"):
        _generic(main, "beta", version, [])
    _wheel_as_noarch_python(main, make_wheel(root / "wheels"))
    write_package(  # MLflow's conda.yaml files always list `pip`; a stand-in is enough here
        main, "noarch",
        {"name": "pip", "version": "24.0", "build": "py_0", "noarch": "python",
         "subdir": "noarch", "depends": ["python >=3.8"]},
        {"site-packages/pip/__init__.py": b"__version__ = '24.0'  # test stand-in\n"},
        extra_info={"info/link.json": b'{"noarch": {"type": "python"}, "package_metadata_version": 1}'},
    )  # fmt: skip
    _python_package(main)
    broken = root / "rp-broken"
    _generic(broken, "tampered", "1.0", [])
    slow = root / "rp-slow"
    _generic(slow, "sloth", "1.0", [])
    for channel in (main, broken, slow):
        (channel / SUBDIR).mkdir(parents=True, exist_ok=True)
        asyncio.run(index_fs(channel, write_shards=False, write_zst=False))
    time.sleep(0.05)  # py-rattler can crash at exit right after asyncio.run (see DESIGN)
    # Replace the archive after indexing with a valid one of other content: only the sha256
    # in repodata can tell (what a compromised or corrupting mirror would serve).
    write_package(
        broken, "noarch",
        {"name": "tampered", "version": "1.0", "build": "0", "noarch": "generic",
         "subdir": "noarch"},
        {"share/tampered/VERSION": b"evil\n", "share/tampered/CANARY": b"planted\n"},
    )  # fmt: skip
    return root


if __name__ == "__main__":
    # Run as a child: py-rattler must not run inside the pytest process (exit crash).
    build(Path(sys.argv[1]))
