"""`pack --with-deps`: the wheels a pylock.toml installs on this platform, downloaded and
checked against the lock's sha256, and the lock rewritten so each wheel is a `path` next to
it (PEP 751 allows that). uv then installs from the bundle with no index and no network.

Which of a package's wheels is "the one for this platform" is read from the environment the
lock was just installed into: its `*.dist-info/WHEEL` names the tags of the wheel installed.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
import urllib.request
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from runner.errors import EnvError

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def bundle_wheels(
    lock_text: str, env_dir: Path | None, into: Path, prefix: str
) -> tuple[str, list[dict[str, str]]]:
    """Download the installed wheels into `into`; returns the rewritten lock and a list of
    {name, version, file, sha256}. `prefix` is `into` relative to the lock file. With no
    `env_dir` the lock was resolved for another platform (uv lists only that platform's
    wheels), and each package's first wheel is taken."""
    data = tomllib.loads(lock_text)
    installed = _installed_tags(env_dir) if env_dir is not None else None
    kept: list[dict[str, str]] = []
    for package in data.get("packages") or []:
        name, version = str(package.get("name")), str(package.get("version"))
        tags = None if installed is None else installed.get(_canonical(name))
        if installed is not None and tags is None:
            continue  # not installed here (a marker excluded it): left as the lock says
        wheel = _choose(package, tags)
        file = into / str(wheel["name"])
        digest = str(wheel.get("hashes", {}).get("sha256", ""))
        download(str(wheel["url"]), file, digest, name)
        for key in ("sdist", "wheels", "archive", "directory", "vcs"):
            package.pop(key, None)
        package["wheels"] = [{"name": file.name, "path": f"{prefix}/{file.name}",
                              "hashes": {"sha256": digest}}]  # fmt: skip
        kept.append({"name": name, "version": version, "file": file.name, "sha256": digest})
    return dumps(data), kept


def _installed_tags(env_dir: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for wheel in env_dir.glob("lib/python*/site-packages/*.dist-info/WHEEL"):
        name = wheel.parent.name.removesuffix(".dist-info").rsplit("-", 1)[0]
        tags = {line.split(":", 1)[1].strip() for line in wheel.read_text().splitlines()
                if line.startswith("Tag:")}  # fmt: skip
        found[_canonical(name)] = tags
    return found


def _choose(package: dict[str, Any], tags: set[str] | None) -> dict[str, Any]:
    wheels = [w for w in package.get("wheels") or [] if isinstance(w, dict) and w.get("url")]
    for wheel in wheels:
        name = str(wheel.get("name") or str(wheel["url"]).rsplit("/", 1)[-1])
        wheel["name"] = name
        if tags is None or _wheel_tags(name) & tags:
            return wheel
    raise EnvError(
        f"package {package.get('name')} {package.get('version')} has no wheel in the lock for "
        "the target platform, so it cannot be bundled",
        "pack without --with-deps, or depend on a version that publishes wheels",
    )


def _wheel_tags(filename: str) -> set[str]:
    """`pkg-1.0-py2.py3-none-any.whl` → {py2-none-any, py3-none-any}."""
    parts = filename[: -len(".whl")].split("-")
    if len(parts) < 5:
        return set()
    pythons, abis, plats = (p.split(".") for p in parts[-3:])
    return {f"{p}-{a}-{s}" for p in pythons for a in abis for s in plats}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def download(url: str, target: Path, digest: str, name: str, algorithm: str = "sha256") -> None:
    """Fetch one wheel (or conda package: `algorithm` may be md5 for old conda locks),
    checked against `digest`; proxies from the environment, as pip and uv use them."""
    if not url.startswith("https://") and not url.startswith("http://"):
        raise EnvError(f"package {name}: URL {url!r} is not http(s)", "pack without --with-deps")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    sha = hashlib.new(algorithm)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                sha.update(block)
                out.write(block)
    except OSError as exc:
        raise EnvError(
            f"downloading {name} from {url} failed: {exc}",
            "check the network or the package index, then pack again",
        ) from exc
    if digest and sha.hexdigest() != digest:
        partial.unlink()
        raise EnvError(f"the download of {name} does not match its {algorithm} in the lock",
                       "the index served another file; pack again or check the index")  # fmt: skip
    partial.replace(target)


def dumps(data: dict[str, Any]) -> str:
    """A TOML document of a pylock's shape: top-level keys, then `[[packages]]` tables."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if k != "packages"]
    for package in data.get("packages") or []:
        lines += ["", "[[packages]]"]
        lines += [f"{_key(k)} = {_value(v)}" for k, v in package.items()]
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))  # JSON's escapes are valid in TOML basic strings
