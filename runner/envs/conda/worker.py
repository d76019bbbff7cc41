"""The py-rattler half of the conda kind, run as a child process:

    python -m runner.envs.conda.worker REQUEST.json RESULT.json

It solves (or fetches locked packages) and installs into a staging prefix. It runs apart from
the runner because py-rattler can crash while the interpreter exits (SIGABRT/SIGSEGV after
its last `asyncio.run`): here that can only cost a worker whose result file is already
written, never the user's exit code. It also keeps py-rattler's import (and its threads) out
of every run that finds its environment cached.

Progress goes to stdout as JSON lines (`{"step": ...}`); the result (records, or an error
class and message) goes to RESULT.json, written atomically before exit.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

# rattler exception class name → what went wrong, as the runner reports it
ERROR_KINDS = {
    "SolverError": "unsatisfiable",
    "InvalidMatchSpecError": "spec",
    "InvalidPackageNameError": "spec",
    "InvalidVersionSpecError": "spec",
    "InvalidVersionError": "spec",
    "InvalidChannelError": "channel",
    "FetchRepoDataError": "fetch",
    "GatewayError": "fetch",
    "InstallerError": "install",
    "LinkError": "install",
}


class BadSpec(Exception):
    """A dependency line that is not a conda match spec (named in the message)."""


class HashMismatch(Exception):
    """A locked package's download does not have the hash the lock names."""


def _step(message: str) -> None:
    print(json.dumps({"step": message}), flush=True)


def _reporter(total: int) -> Any:
    """Per-package progress lines (`{"update": ...}`); the runner shows them on a terminal."""
    from rattler import InstallerReporter

    class Reporter(InstallerReporter):
        linked = 0

        def on_populate_cache_start(self, operation: int, package_name: str) -> int:
            print(json.dumps({"update": f"fetching {package_name}"}), flush=True)
            return operation

        def on_link_start(self, operation: int, package_name: str) -> int:
            self.linked += 1
            message = f"linking {package_name} ({self.linked}/{total})"
            print(json.dumps({"update": message}), flush=True)
            return operation

    return Reporter()  # type: ignore[abstract]  # the Protocol's other methods are no-ops


def _exit_with_parent() -> None:
    """A `kill -9` of the runner must not leave us installing into a prefix nobody owns."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.2)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


async def _solve(req: dict[str, Any]) -> list[Any]:
    from rattler import Channel, Gateway, MatchSpec, VirtualPackage, solve

    for spec in req["specs"]:
        try:
            MatchSpec(spec)
        except Exception as exc:  # rattler's parse errors share no useful base class
            raise BadSpec(f"dependency {spec!r}: {exc}") from exc
    channels = [Channel(url) for url in req["channels"]]
    gateway = Gateway(cache_dir=req["repodata_dir"])
    _step(f"solving {len(req['specs'])} conda specs from {len(channels)} channel(s)")
    return await solve(
        channels,
        req["specs"],
        gateway=gateway,
        platforms=[req["platform"], "noarch"],
        virtual_packages=_virtual(req) if req.get("virtual") else VirtualPackage.detect(),
    )


def _virtual(req: dict[str, Any]) -> list[Any]:
    """The virtual packages of another platform (`pack --platform`), as the runner names
    them: [[name, version, build], ...]."""
    from rattler import BuildString, GenericVirtualPackage, PackageName, Version

    return [
        GenericVirtualPackage(PackageName(n), Version(v), BuildString(b))
        for n, v, b in req["virtual"]
    ]


async def _locked(req: dict[str, Any], downloads: Path) -> list[Any]:
    """Records for the lock's exact packages: downloaded, hash-checked, then read."""
    from rattler import Client, RepoDataRecord
    from rattler.package_streaming import download_to_path

    client = Client.default_client()
    _step(f"fetching {len(req['locked'])} locked conda packages (no solve)")
    records = []
    for item in req["locked"]:
        dest = downloads / item["url"].rsplit("/", 1)[-1]
        if item["url"].startswith("file://"):  # a packed bundle's archive: no network
            shutil.copyfile(_file_path(item["url"]), dest)
        else:
            await download_to_path(client, item["url"], dest)
        algorithm = "sha256" if item.get("sha256") else "md5"
        digest = hashlib.new(algorithm, dest.read_bytes()).hexdigest()
        if digest != item[algorithm]:
            raise HashMismatch(
                f"{item['url']}: {algorithm} is {digest}, the lock file says {item[algorithm]}"
            )
        record = await RepoDataRecord.from_package_archive(dest)
        record.url = dest.as_uri()  # installed from the verified file, not fetched twice
        records.append(record)
    return records


def _file_path(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(url).path)


async def _main(req: dict[str, Any]) -> list[dict[str, Any]]:
    from rattler import install

    downloads = Path(req["pkgs_dir"]) / f".downloads-{uuid.uuid4().hex[:8]}"
    downloads.mkdir(parents=True, exist_ok=True)
    if req["mode"] == "lock":  # solve for some platform, install nothing (pack --platform)
        shutil.rmtree(downloads, ignore_errors=True)
        return [_describe(r, {}) for r in await _solve(req)]
    try:
        records = await (_solve(req) if req["mode"] == "solve" else _locked(req, downloads))
        _step(f"installing {len(records)} conda packages")
        await install(
            records,
            target_prefix=req["prefix"],
            cache_dir=req["pkgs_dir"],
            alternative_target_prefix=req["final"],
            show_progress=False,
            reporter=_reporter(len(records)),
            execute_link_scripts=False,  # link scripts are arbitrary code from the channel
        )
    finally:
        shutil.rmtree(downloads, ignore_errors=True)
    urls = {item["url"].rsplit("/", 1)[-1]: item["url"] for item in req.get("locked", [])}
    if urls:
        _restore_urls(Path(req["prefix"]) / "conda-meta", urls)
    return [_describe(r, urls) for r in records]


def _restore_urls(meta: Path, urls: dict[str, str]) -> None:
    """conda-meta names the verified download we installed from; name the lock's URL instead
    (the download is gone, and the URL is where the package really comes from)."""
    for path in meta.glob("*.json"):
        data = json.loads(path.read_text())
        url = urls.get(str(data.get("fn")))
        if url is not None:
            data.update(url=url, channel=url.rsplit("/", 2)[0])
            path.write_text(json.dumps(data, indent=2))


def _describe(record: Any, urls: dict[str, str]) -> dict[str, Any]:
    return {
        "name": record.name.normalized,
        "version": str(record.version),
        "build": str(record.build),
        "url": urls.get(str(record.file_name), str(record.url)),
        "channel": str(record.channel or ""),
        "sha256": record.sha256.hex() if record.sha256 else None,
        "md5": record.md5.hex() if record.md5 else None,
        "depends": [str(d) for d in record.depends],
        "subdir": str(record.subdir),
    }


def main(argv: list[str]) -> int:
    """Run one request; the exit code says only whether the result file was written."""
    request_path, result_path = Path(argv[0]), Path(argv[1])
    _exit_with_parent()
    req = json.loads(request_path.read_text())
    try:
        result: dict[str, Any] = {"ok": True, "records": asyncio.run(_main(req))}
    except HashMismatch as exc:
        result = {"ok": False, "error": "hash", "message": str(exc)}
    except BadSpec as exc:
        result = {"ok": False, "error": "spec", "message": str(exc)}
    except Exception as exc:
        kind = ERROR_KINDS.get(type(exc).__name__, "internal")
        if kind == "install" and "hash mismatch" in str(exc):  # the channel served other bytes
            kind = "hash"
        result = {"ok": False, "error": kind, "message": f"{exc}", "type": type(exc).__name__}
    tmp = result_path.with_name(result_path.name + ".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, result_path)
    time.sleep(0.05)  # lets py-rattler's runtime threads wind down before the interpreter exits
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
