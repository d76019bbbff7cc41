"""`run-project ui`: serve the run store as a web page, read-only (docs/ui.md)."""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence

from runner import settings
from runner.errors import RunnerError, StoreError
from runner.tracking.store import open_current

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def main(args: Sequence[str]) -> int:
    """Parse, open the store, serve until Ctrl-C."""
    ns = _ui_parser().parse_args(args)
    store = open_current(settings.get("store", ns.store), settings.get("artifacts"))
    if not store.exists():
        raise StoreError(f"no run store at {store.label}", "run a project first, or pass --store")
    store.connect(write=False)  # a wrong URL or password fails here, not on the first page
    if ns.host not in LOCAL_HOSTS:
        print(
            f"warning: listening on {ns.host}: anyone who can reach this machine can read "
            "every run, its logs and files (no authentication)",
            file=sys.stderr,
        )
    from runner.ui.server import serve  # the UI's modules load only for this verb

    try:
        serve(store, ns.host, ns.port, lambda url: print(f"run-project ui: {url}", flush=True))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise RunnerError(
                f"port {ns.port} on {ns.host} is in use",
                "pass --port N (or --port 0 for any free port)",
            ) from exc
        raise RunnerError(
            f"cannot listen on {ns.host}:{ns.port}: {exc.strerror}",
            "check --host (an address of this machine) and --port",
        ) from exc
    except KeyboardInterrupt:
        pass
    return 0


def _ui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run-project ui", description=__doc__)
    parser.add_argument("--store", help="run store: a directory (default ./runs) or postgresql://")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only); any other "
        "address shows the store to the network, without authentication",
    )
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000; 0: any)")
    return parser
