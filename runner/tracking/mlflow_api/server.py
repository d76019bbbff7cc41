"""The HTTP side: token check, JSON routes, and mlflow-artifacts upload/list/download.

Listens on 127.0.0.1 only. Every request must carry `Authorization: Bearer <token>` (MLflow's
client sends it from `MLFLOW_TRACKING_TOKEN`); without it, 401. Artifact paths are checked
part by part after one URL-decoding ('..', '.', empty parts, backslashes and control
characters are refused) and files are written beneath the run's `logged/` directory only,
never through a symlink (tests/test_mlflow_endpoint.py, docs/security.md#mlflow-endpoint).
"""

from __future__ import annotations

import hmac
import itertools
import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from . import routes
from .errors import ApiError, invalid, missing
from .state import State

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

API = ("/api/2.0/mlflow/", "/api/3.0/mlflow/", "/ajax-api/2.0/mlflow/")
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
MAX_JSON_BYTES = 16 << 20
CHUNK = 1 << 20


class Endpoint:
    """One run's endpoint: state, token, the `logged/` root, and the server thread."""

    def __init__(
        self, state: State, token: str, logged: str, listener: socket.socket | None = None
    ) -> None:
        """Serve on `listener` when given (a socket the wrapper bound before this module was
        imported, so the command could start meanwhile), else on a new 127.0.0.1 port."""
        self.state = state
        self.token = token
        self.logged = os.path.realpath(logged)
        os.makedirs(self.logged, exist_ok=True)
        handler = type("Handler", (_Handler,), {"endpoint": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler, bind_and_activate=False)
        if listener is None:
            self.server.server_bind()
            self.server.server_activate()
        else:
            self.server.socket.close()
            self.server.socket = listener
            self.server.server_address = listener.getsockname()
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="mlflow-endpoint")

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        self.thread.daemon = True
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- artifacts ------------------------------------------------------------------------
    def local_path(self, mlflow_path: str) -> str:
        """Where an artifact path of the run, a nested run or a logged model lives."""
        parts = _safe_parts(mlflow_path)
        state = self.state
        if len(parts) >= 3 and parts[2] == "artifacts" and parts[1] in state.runs:
            rest = parts[3:]
            prefix = [] if parts[1] == state.run_id else ["runs", parts[1]]
        elif len(parts) >= 4 and parts[1] == "models" and parts[3] == "artifacts":
            rest = parts[4:]
            prefix = state.model(parts[2]).path.split("/")
        else:
            raise invalid(f"artifact path {mlflow_path!r} is not under a run or logged model "
                          "of this run-project run")  # fmt: skip
        return os.path.join(self.logged, *prefix, *rest)

    def mlflow_name(self, local: str) -> str:
        return "logged/" + os.path.relpath(local, self.logged).replace(os.sep, "/")


def _safe_parts(path: str) -> list[str]:
    parts = path.strip("/").split("/") if path.strip("/") else []
    for part in parts:
        bad = part in ("", ".", "..") or "\\" in part or any(ord(c) < 32 for c in part)
        if bad:
            raise invalid(f"Invalid artifact path: {path!r} (no '..', '.', empty parts or "
                          "backslashes)")  # fmt: skip
    return parts


class _Handler(BaseHTTPRequestHandler):
    endpoint: Endpoint
    protocol_version = "HTTP/1.1"
    # A reply is two writes (headers, then body): with Nagle's algorithm the body waits for
    # the client's delayed ACK of the headers, 40 ms, on every call of a keep-alive client
    # (10,000 log_metric calls: benchmarks/RESULTS.md, MLflow logging).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return None  # the run's stderr is the user's

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        try:
            if not self._authorised():
                self._drain()
                raise ApiError("UNAUTHENTICATED", "run-project's MLflow endpoint needs this "
                               "run's MLFLOW_TRACKING_TOKEN")  # fmt: skip
            self.endpoint.state.first_call()
            self._route(method)
        except ApiError as exc:
            self._json(exc.status, {"error_code": exc.code, "message": exc.message})
        except Exception as exc:  # a bug must not take the endpoint down with the run
            self._json(500, {"error_code": "INTERNAL_ERROR", "message": repr(exc)[:500]})

    def _authorised(self) -> bool:
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.endpoint.token}".encode())

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path
        if path == ARTIFACTS or path.startswith(ARTIFACTS + "/"):
            self._artifacts(method, unquote(path[len(ARTIFACTS) :]), url.query)
            return
        prefix = next((p for p in API if path.startswith(p)), None)
        if prefix is None:
            self._not_served(method, path)
        route = path[len(prefix or "") :].rstrip("/")
        body = self._body(method, url.query)
        state = self.endpoint.state
        handler = routes.ROUTES.get((method, route))
        if route == "metrics/get-history" and handler is not None:
            self._json_list("metrics", routes.history_points(state, body))
        elif handler is not None:
            self._json(200, handler(state, body))
        elif route.startswith("logged-models/"):
            try:
                self._json(200, routes.model_route(state, body, method, route[14:]))
            except ApiError as exc:
                if exc.code != "ENDPOINT_NOT_FOUND":
                    raise
                self._not_served(method, path)
        else:
            self._not_served(method, path)

    def _not_served(self, method: str, path: str) -> None:
        message = f"run-project's endpoint does not implement {method} {path}"
        self.endpoint.state.warn(message)
        raise ApiError("ENDPOINT_NOT_FOUND", message)

    def _body(self, method: str, query: str) -> dict[str, Any]:
        if method in ("GET", "DELETE") and not self.headers.get("Content-Length"):
            return dict(parse_qsl(query))
        length = self._length()
        if length > MAX_JSON_BYTES:
            self._drain()
            raise invalid(f"request of {length} bytes is over the {MAX_JSON_BYTES} byte limit")
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise invalid("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise invalid("the request body is not a JSON object")
        body.update(dict(parse_qsl(query)))
        return body

    def _length(self) -> int:
        try:
            return max(0, int(self.headers.get("Content-Length") or 0))
        except ValueError:
            raise invalid("bad Content-Length") from None

    def _drain(self) -> None:
        left = self._length()
        while left > 0:
            got = self.rfile.read(min(CHUNK, left))
            if not got:
                break
            left -= len(got)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _json_list(self, field: str, items: Iterator[dict[str, Any]]) -> None:
        """`{field: [items]}` sent in chunks, so a long list is never whole in memory (a
        million-point metric history: benchmarks/RESULTS.md, MLflow logging)."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(f'{{"{field}": ['.encode())
        separator = ""
        while batch := list(itertools.islice(items, 10_000)):
            self._chunk((separator + ", ".join(json.dumps(item) for item in batch)).encode())
            separator = ", "
        self._chunk(b"]}")
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    # -- artifacts ------------------------------------------------------------------------
    def _artifacts(self, method: str, tail: str, query: str) -> None:
        endpoint = self.endpoint
        if method == "GET" and not tail.strip("/"):
            listed = dict(parse_qsl(query)).get("path", "")
            self._json(200, {"files": _listing(endpoint.local_path(listed))})
        elif method == "PUT":
            target = endpoint.local_path(tail)
            size = self._receive(target)
            endpoint.state.events.write(
                {"type": "stored", "name": endpoint.mlflow_name(target), "size": size}
            )
            self._json(200, {})
        elif method == "GET":
            self._send_file(endpoint.local_path(tail))
        else:
            self._drain()
            self._not_served(method, ARTIFACTS + tail)

    def _receive(self, target: str) -> int:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise invalid("chunked uploads are not supported: send Content-Length")
        _make_parents(self.endpoint.logged, target)
        tmp = f"{target}.upload-{threading.get_ident()}"
        left = size = self._length()
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(tmp, flags, 0o644)
        try:
            while left > 0:
                chunk = self.rfile.read(min(CHUNK, left))
                if not chunk:
                    raise invalid("the upload ended early")
                os.write(fd, chunk)
                left -= len(chunk)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        if os.path.islink(target):
            os.unlink(target)
        os.replace(tmp, target)
        return size

    def _send_file(self, path: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            raise missing("artifact not found") from None
        with os.fdopen(fd, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            while chunk := handle.read(CHUNK):
                self.wfile.write(chunk)


def _make_parents(root: str, target: str) -> None:
    """Create the directories from `root` down to `target`'s parent, none of them a link."""
    current = root
    for part in os.path.relpath(os.path.dirname(target), root).split(os.sep):
        if part in ("", "."):
            continue
        current = os.path.join(current, part)
        if os.path.islink(current):
            raise invalid("artifact path goes through a symbolic link")
        os.makedirs(current, exist_ok=True)


def _listing(directory: str) -> list[dict[str, Any]]:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    files = []
    for entry in entries:
        if ".upload-" in entry.name or entry.is_symlink():
            continue
        if entry.is_dir():
            files.append({"path": entry.name, "is_dir": True})
        else:
            files.append({"path": entry.name, "is_dir": False,
                          "file_size": entry.stat().st_size})  # fmt: skip
    return files
