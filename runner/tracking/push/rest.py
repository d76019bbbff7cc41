"""An MLflow tracking server's REST API over HTTP, with the standard library only (importing
mlflow would cost seconds and hundreds of MB for a few JSON calls).

Credentials are read as MLflow's own client reads them: MLFLOW_TRACKING_TOKEN (a bearer
token), else MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (Basic auth); user:password
in the URL also works and is never printed. MLFLOW_TRACKING_INSECURE_TLS=true skips the
certificate check, MLFLOW_TRACKING_SERVER_CERT_PATH names a CA bundle.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO

from runner.errors import PushError, UsageError

API = "/api/2.0/mlflow/"
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts/"
TIMEOUT = 60


class MlflowServer:
    """One tracking server: JSON calls and artifact uploads, errors that say what to do."""

    def __init__(self, url: str) -> None:
        self.url, self.label, self.headers = _split(url)
        self.context = _tls_context()

    def call(self, endpoint: str, payload: dict[str, Any] | None = None,
             query: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
        """POST `payload` (or GET with `query`) to /api/2.0/mlflow/<endpoint>; the answer."""
        path = API + endpoint
        if query is not None:
            path += "?" + urllib.parse.urlencode(query)
        body = None if payload is None else json.dumps(payload, allow_nan=False).encode()
        status, data = self._request("GET" if body is None else "POST", path, body)
        answer = _decoded(data)
        if status != 200:
            raise ServerAnswer(status, endpoint, answer, self.label)
        return answer

    def upload(self, artifact_path: str, content: Path | bytes) -> None:
        """PUT one file (streamed from disk) to the server's artifact proxy, at
        mlflow-artifacts:/<artifact_path>."""
        quoted = urllib.parse.quote(artifact_path.lstrip("/"))
        if isinstance(content, bytes):
            status, data = self._request("PUT", ARTIFACTS_API + quoted, content)
        else:
            with open(content, "rb") as body:
                size = os.fstat(body.fileno()).st_size
                status, data = self._request("PUT", ARTIFACTS_API + quoted, body, size)
        if status != 200:
            raise ServerAnswer(status, f"artifact upload of {artifact_path}", _decoded(data),
                               self.label)  # fmt: skip

    def _request(self, method: str, path: str, body: bytes | BinaryIO | None,
                 size: int | None = None) -> tuple[int, bytes]:  # fmt: skip
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers=dict(self.headers))  # fmt: skip
        if method == "POST":
            request.add_header("Content-Type", "application/json")
        if size is not None:  # a file object is streamed; urllib needs its length given
            request.add_header("Content-Length", str(size))
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT, context=self.context) as answer:
                return int(answer.status), bytes(answer.read())
        except urllib.error.HTTPError as exc:
            status, data = int(exc.code), exc.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PushError(
                f"cannot reach the MLflow tracking server at {self.label}: {reason}",
                "check the URL given to --to (http://HOST:5000) and that `mlflow server` runs",
            ) from exc
        if status in (401, 403):
            raise PushError(
                f"the MLflow tracking server at {self.label} refused the credentials "
                f"(HTTP {status} on {path.split('?')[0]})",
                "set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD, to an account allowed to write there",
            )
        return status, data


class ServerAnswer(PushError):
    """The server answered a call with an error (its error_code is kept for the caller)."""

    def __init__(self, status: int, what: str, answer: dict[str, Any], label: str) -> None:
        self.status = status
        self.error_code = str(answer.get("error_code") or "")
        text = str(answer.get("message") or answer.get("raw") or "")[:2000]
        super().__init__(
            f"MLflow server {label}: {what} failed with HTTP {status} {self.error_code}: {text}",
            "check that the URL is an MLflow tracking server (`mlflow server`, 2.x or 3.x) "
            "serving artifacts (its default; not --no-serve-artifacts)",
        )


def _decoded(data: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(data or b"{}")
    except ValueError:
        return {"raw": data.decode(errors="replace").strip()}
    return answer if isinstance(answer, dict) else {"raw": str(answer)}


def _split(url: str) -> tuple[str, str, dict[str, str]]:
    """(base URL without credentials, a label to print, auth headers)."""
    parts = urllib.parse.urlsplit(url.strip().rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"--to {url!r} is not an http(s) URL of an MLflow tracking server",
            "give the server's address, e.g. --to http://127.0.0.1:5000",
        )
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    if ":" in parts.hostname:  # an IPv6 literal
        netloc = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
    base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    headers: dict[str, str] = {"User-Agent": "run-project"}
    user = parts.username or os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = parts.password or os.environ.get("MLFLOW_TRACKING_PASSWORD")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif user and password:
        pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    return base, base, headers


def _tls_context() -> ssl.SSLContext | None:
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    bundle = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
    return ssl.create_default_context(cafile=bundle) if bundle else None
