"""The web server: `http.server` threads over a read-only store, one connection per thread.

Every answer carries a Content-Security-Policy that allows only this server's own script and
stylesheet (no inline code, nothing from the network), `nosniff`, and no referrer. A request
whose Host header names another site is refused, so a page elsewhere cannot reach the store
through DNS rebinding while the UI listens on 127.0.0.1 (docs/ui.md#safety).
"""

from __future__ import annotations

import mimetypes
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from runner.errors import NotFoundError, RunnerError
from runner.tracking.store import Store
from runner.ui import compare_page, files, lineage_page, run_page, runs_page
from runner.ui.markup import page

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")


class UIServer(ThreadingHTTPServer):
    """The server and what every handler shares: the store and the names it answers to."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: Store, any_host: bool) -> None:
        super().__init__(address, Handler)
        self.store = store
        self.any_host = any_host
        self.local = threading.local()

    def thread_store(self) -> Store:
        """This thread's own connection to the store."""
        store: Store | None = getattr(self.local, "store", None)
        if store is None:
            store = self.local.store = self.store.reopen()
        return store


class Handler(BaseHTTPRequestHandler):
    """GET only: the pages, a run's files and logs, the static files."""

    server: UIServer
    server_version = "run-project-ui"

    started = (0.0, 0.0)

    def do_GET(self) -> None:
        self.started = (time.perf_counter(), time.process_time())
        if not self._host_allowed():
            self._send(421, b"unknown host\n", "text/plain")
            return
        url = urlsplit(self.path)
        q = parse_qs(url.query, keep_blank_values=True)
        try:
            self._route(unquote(url.path), q)
        except NotFoundError as exc:
            self._send(404, page("not found", runs_page.error_box(exc)))
        except RunnerError as exc:
            self._send(400, page("cannot show this", runs_page.error_box(exc)))

    def do_HEAD(self) -> None:
        self.do_GET()

    def _route(self, path: str, q: dict[str, list[str]]) -> None:
        store = self.server.thread_store()
        parts = path.strip("/").split("/", 3)
        if path == "/":
            self._send(*runs_page.render(store, q))
        elif parts[0] == "runs" and len(parts) == 2:
            self._send(200, run_page.render(store, parts[1]))
        elif parts[0] == "runs" and len(parts) >= 3 and parts[2] == "files":
            self._files(store, parts[1], parts[3] if len(parts) == 4 else "")
        elif parts[0] == "runs" and len(parts) == 4 and parts[2] == "log":
            self._log(store, parts[1], parts[3], q)
        elif path == "/compare":
            self._send(200, compare_page.render(store, q))
        elif path == "/lineage":
            self._send(200, lineage_page.render(store, q))
        elif parts[0] == "static" and len(parts) == 2 and parts[1] in STATIC:
            data = resources.files("runner.ui").joinpath("static", parts[1]).read_bytes()
            self._send(200, data, STATIC[parts[1]], cache=True)
        else:
            raise NotFoundError(f"no page {path!r}", "start from the runs table at /")

    def _files(self, store: Store, run_id: str, name: str) -> None:
        target, body = run_page.render_files(store, run_id, name)
        if target is None:
            self._send(200, body)
            return
        self._send_file(target)

    def _log(self, store: Store, run_id: str, stream: str, q: dict[str, list[str]]) -> None:
        """New log text from `offset`, for the page's live follow; the next offset in a header."""
        if stream not in ("stdout", "stderr"):
            raise NotFoundError(f"no log {stream!r}", "the logs are stdout and stderr")
        record = run_page.get_run(store, run_id)
        try:
            offset = int(q.get("offset", ["0"])[-1])
        except ValueError:
            offset = 0
        path = store.artifact_dir(record["id"]) / "logs" / f"{stream}.log"
        text, end = files.tail(path, offset)
        headers = {"X-Next-Offset": str(end), "X-Run-Status": record["status"]}
        self._send(200, text.encode(), "text/plain; charset=utf-8", headers=headers)

    def _send_file(self, path: Path) -> None:
        """A download: sent as an attachment, never rendered as a page of this site."""
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        inline = kind.startswith("image/") and kind != "image/svg+xml"
        disposition = "inline" if inline else "attachment"
        headers = {
            "Content-Disposition": f"{disposition}; filename*=UTF-8''" + _quote_header(path.name)
        }
        self._send(
            200, path.read_bytes(), kind if inline else "application/octet-stream", headers=headers
        )

    def _host_allowed(self) -> bool:
        if self.server.any_host:
            return True
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        return host in LOCAL_NAMES

    def _send(
        self,
        status: int,
        body: bytes,
        kind: str = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
        cache: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "max-age=300" if cache else "no-store")
        # Wall and CPU time of this answer (the process's CPU: exact while one request runs),
        # read by benchmarks/ui_bench.py.
        wall = (time.perf_counter() - self.started[0]) * 1000
        cpu = (time.process_time() - self.started[1]) * 1000
        self.send_header("Server-Timing", f"app;dur={wall:.1f}, cpu;dur={cpu:.1f}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """One line per request on stderr (the terminal that started the UI)."""
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def _quote_header(name: str) -> str:
    return quote(name, safe="")


def serve(
    store: Store,
    host: str,
    port: int,
    ready: Callable[[str], None],
) -> None:
    """Serve until interrupted; `ready` gets the URL once the socket listens."""
    any_host = host not in ("127.0.0.1", "localhost", "::1")
    server = UIServer((host, port), store, any_host)
    try:
        ready(f"http://{host}:{server.server_address[1]}/")
        server.serve_forever()
    finally:
        server.server_close()
