"""The test conda channel's http server: `python conda_server.py ROOT PORTFILE`.

Serves ROOT on 127.0.0.1 (port written to PORTFILE). While the file ROOT/.slow exists,
package files of the `rp-slow` channel are answered only after it is removed (at most 60 s),
and ROOT/.slow-hit is created when such a request arrives: a test then knows a build is
in the middle of its downloads and can interrupt it there.
"""

from __future__ import annotations

import functools
import sys
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Handler(SimpleHTTPRequestHandler):
    """Static files, with the slow channel held back on request."""

    root: Path

    def do_GET(self) -> None:
        if "/rp-slow/" in self.path and self.path.endswith(".tar.bz2"):
            (self.root / ".slow-hit").touch()
            deadline = time.monotonic() + 60
            while (self.root / ".slow").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    """Quiet about clients that hang up (tests kill builds in the middle of downloads)."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def main() -> None:
    root, port_file = Path(sys.argv[1]), Path(sys.argv[2])
    Handler.root = root
    server = Server(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(server.server_address[1]))
    tmp.rename(port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
