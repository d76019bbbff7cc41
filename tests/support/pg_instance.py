"""A PostgreSQL server of a test's own (initdb + pg_ctl on a free port), for tests that stop
and restart it: the shared server in RUN_PROJECT_TEST_PG_URL must never be stopped."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from support.services import require


class PgInstance:
    """initdb'd cluster in a temporary directory, run as the `postgres` user (not root)."""

    def __init__(self, data: Path, port: int) -> None:
        self.data = data
        self.port = port
        self.url = f"postgresql://rp@127.0.0.1:{port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.data}"
        _as_postgres("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                     str(self.data / "server.log"), "-w", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        _as_postgres("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")


def _as_postgres(*argv: str) -> None:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    program = _binary(argv[0]) or argv[0]
    proc = subprocess.run([*prefix, program, *argv[1:]], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:1])} failed: {proc.stdout}{proc.stderr}")


@contextlib.contextmanager
def own_postgres() -> Iterator[PgInstance]:
    """A running cluster of this test's own; stopped and removed afterwards."""
    if not _binary("initdb") or not _binary("pg_ctl"):
        require(
            "postgres-binaries", "initdb and pg_ctl are not on PATH (apt-get install postgresql)"
        )
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        require("postgres-binaries", "runuser is missing: cannot run initdb as postgres")
    base = Path(tempfile.mkdtemp(prefix="rp-pg-"))
    data = base / "data"
    data.mkdir()
    if os.geteuid() == 0:
        try:
            shutil.chown(base, "postgres")
            shutil.chown(data, "postgres")
        except (LookupError, OSError) as exc:
            require("postgres-binaries", f"no postgres user to run the server as: {exc}")
    _as_postgres("initdb", "-D", str(data), "-A", "trust", "-U", "rp", "--no-sync")
    instance = PgInstance(data, _free_port())
    instance.start()
    try:
        yield instance
    finally:
        with contextlib.suppress(RuntimeError):
            instance.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def _binary(name: str) -> str | None:
    """A PostgreSQL program: on PATH, else where Debian's postgresql package puts it."""
    found = shutil.which(name)
    if found:
        return found
    found_all = Path("/usr/lib/postgresql").glob(f"*/bin/{name}")
    versions = sorted(found_all, key=lambda p: float(p.parent.parent.name.split("-")[0] or 0))
    return str(versions[-1]) if versions else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
