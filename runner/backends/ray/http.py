"""HTTP to a Ray dashboard (Jobs and packages API) with the standard library only.

A cluster that was reached once and then stops answering for a moment (a busy or restarting
dashboard) is retried for `retry_seconds` (default 30) on requests that are safe to repeat;
the first contact fails at once, so a wrong address is reported without delay.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from runner.errors import BackendError

SAFE_TO_REPEAT = ("GET", "PUT")  # PUT of a content-named package is idempotent


class Dashboard:
    """The dashboard at `address` (credentials in the URL become a Basic auth header)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.address, self.headers = _split_credentials(_address(config))
        self.headers.update({str(k): str(v) for k, v in (config.get("headers") or {}).items()})
        self.retry_seconds = float(config.get("retry_seconds", 30))
        self.reached = False
        self.received = 0  # body bytes received, all requests and streams: the traffic we cost
        self._counting = threading.Lock()  # a log stream counts from its own thread

    def count(self, size: int) -> None:
        """Add `size` body bytes to what this dashboard has sent us."""
        with self._counting:
            self.received += size

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json") -> tuple[int, bytes]:  # fmt: skip
        """(HTTP status, body); a connection failure is a BackendError naming the address."""
        deadline = time.monotonic() + (self.retry_seconds if self.reached else 0)
        while True:
            try:
                status, data = self._once(method, path, body, content_type)
                self.reached = True
                return status, data
            except (urllib.error.URLError, OSError) as exc:
                refused = isinstance(getattr(exc, "reason", exc), ConnectionRefusedError)
                retry = method in SAFE_TO_REPEAT or refused  # refused: nothing was received
                if not retry or time.monotonic() >= deadline:
                    raise BackendError(
                        f"cannot reach the Ray dashboard at {self.address}: {exc}",
                        "check --backend-config address (http://HOST:8265) and that the "
                        "cluster is up",
                    ) from exc
                time.sleep(1)

    def _once(self, method: str, path: str, body: bytes | None,
              content_type: str) -> tuple[int, bytes]:  # fmt: skip
        request = urllib.request.Request(
            self.address + path, data=body, method=method,
            headers={**self.headers, "Content-Type": content_type},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                data = bytes(response.read())
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            data, status = exc.read(), int(exc.code)
        self.count(len(data))
        return status, data

    def open_stream(self, path: str) -> http.client.HTTPResponse:
        """GET a streamed answer; read it with read1(). Non-200 raises urllib's HTTPError.

        No read timeout: a log stream is silent while the job prints nothing. The caller reads
        it in a thread of its own and ends it with `close_stream()`.
        """
        request = urllib.request.Request(self.address + path, headers=self.headers)
        response = urllib.request.urlopen(request)
        assert isinstance(response, http.client.HTTPResponse)
        return response

    def json(self, method: str, path: str, payload: Any = None) -> Any:
        """The decoded JSON answer; anything but HTTP 200 is a BackendError."""
        body = None if payload is None else json.dumps(payload).encode()
        status, data = self.request(method, path, body)
        if status != 200:
            text = data.decode(errors="replace").strip()[-2000:]
            raise BackendError(
                f"Ray {method} {path} failed with HTTP {status}: {text}",
                "check the job and the cluster's dashboard",
            )
        return json.loads(data or b"null")


def close_stream(response: http.client.HTTPResponse) -> None:
    """End a stream another thread may be blocked reading: shut its socket down.

    close() alone does not wake a thread blocked in recv(); shutdown() does (it reads EOF).
    """
    with contextlib.suppress(OSError, ValueError, AttributeError):  # already closed
        sock = socket.socket(fileno=os.dup(response.fileno()))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


def _address(config: dict[str, Any]) -> str:
    address = str(
        config.get("address")
        or os.environ.get("RAY_API_SERVER_ADDRESS")
        or os.environ.get("RAY_ADDRESS")
        or ""
    )
    if not address.startswith(("http://", "https://")):
        raise BackendError(
            f"the Ray backend needs the dashboard's http address, got {address or 'none'!r}",
            'pass --backend-config \'{"address": "http://HOST:8265"}\'',
        )
    return address.rstrip("/")


def _split_credentials(address: str) -> tuple[str, dict[str, str]]:
    # urllib cannot send user:pass@ itself; it becomes a Basic header, and the address that
    # is shown and recorded no longer carries it.
    parts = urllib.parse.urlsplit(address)
    if parts.username is None:
        return address, {}
    secret = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
    host = parts.netloc.rsplit("@", 1)[1]
    clean = urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/")
    return clean, {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}
