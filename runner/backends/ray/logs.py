"""Following a Ray job's log so that each byte crosses the network once.

Ray's state API streams a job's log file (`GET /api/v0/logs/stream?submission_id=...`,
chunked HTTP, raw bytes from the start of the file, then new bytes every `interval` seconds
for as long as the connection stays open). A thread reads it; the backend's loop takes what
arrived and keeps polling the cheap job status. Without the stream (an older Ray, a proxy
that refuses it, an error mid-way) the follower polls the whole log as before and takes
only the part after what it already has.

Both sources must agree on the text: the Jobs API's `/logs` reads the file in Python's text
mode, so the stream's bytes are decoded the same way (UTF-8, universal newlines). Then a
switch from stream to polling, and the final fetch, continue at the same character.
"""

from __future__ import annotations

import codecs
import http.client
import io
import json
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.parse
from typing import Any

from runner.backends.ray.http import Dashboard, close_stream

STREAM_PATH = "/api/v0/logs/stream"
# Tests only: point the stream elsewhere (a 404) to check the fallback to polling.
STREAM_PATH_ENV = "RUN_PROJECT_TEST_RAY_LOG_STREAM"
# Tests only: a file that gets one JSON line per job with the bytes the dashboard sent us.
TRAFFIC_ENV = "RUN_PROJECT_TEST_RAY_HTTP_STATS"
CHUNK = 1 << 16


class LogFollower:
    """The new text of one job's log, from the stream while it works, else by polling."""

    def __init__(self, dashboard: Dashboard, job_id: str, interval: float, stream: bool) -> None:
        self.http, self.job_id, self.interval = dashboard, job_id, interval
        self.mode = "stream" if stream else "poll"
        self.taken = 0  # characters of the (decoded) log handed out so far
        self._chunks: queue.Queue[bytes | None] = queue.Queue()
        self._decoder = _decoder()
        self._reader: _StreamReader | None = None
        self._parts: list[str] = []

    @property
    def streaming(self) -> bool:
        """True while the stream is open and may still bring text."""
        return self.mode == "stream" and self._reader is not None

    def start(self, info: dict[str, Any]) -> None:
        """Open the stream once Ray says which node runs the job's driver."""
        if self.mode != "stream" or self._reader is not None:
            return
        if "driver_node_id" not in info:  # a Ray older than the stream API
            self._fall_back("Ray does not report the job's node")
            return
        if not info["driver_node_id"]:
            return  # not yet known: next time
        query = urllib.parse.urlencode({"submission_id": self.job_id,
            "node_id": info["driver_node_id"], "lines": -1, "interval": self.interval})  # fmt: skip
        path = os.environ.get(STREAM_PATH_ENV) or STREAM_PATH
        self._reader = _StreamReader(self.http, f"{path}?{query}", self._chunks)
        self._reader.start()

    def take(self) -> str:
        """What arrived since the last call (polling: one GET of the whole log)."""
        if self.mode == "poll":
            return self.rest()
        return self._drain(0)

    def wait_for(self, seconds: float) -> str:
        """Wait up to `seconds` for new text; returns as soon as some arrived."""
        if not self.streaming:
            time.sleep(seconds)
            return ""
        return self._drain(seconds)

    def rest(self) -> str:
        """The whole log once, minus what was already taken."""
        log = str(self.http.json("GET", f"/api/jobs/{self.job_id}/logs").get("logs") or "")
        text = log[self.taken :]
        self.taken = max(self.taken, len(log))
        return text

    def close(self) -> None:
        """Stop reading the stream (the job has ended)."""
        if self._reader is not None:
            self._reader.close()
        if TRAFFIC_ENV in os.environ:
            with open(os.environ[TRAFFIC_ENV], "a", encoding="utf-8") as out:
                out.write(json.dumps({"job": self.job_id, "received": self.http.received,
                                      "mode": self.mode, "chars": self.taken}) + "\n")  # fmt: skip

    def _drain(self, timeout: float) -> str:
        # Decoded text waits in self._parts: a Ctrl-C between two chunks loses none of it.
        parts = self._parts
        try:
            item = self._chunks.get(timeout=timeout) if timeout > 0 else self._chunks.get_nowait()
            while True:
                if item is None:  # the reader stopped before we closed it
                    assert self._reader is not None
                    self._fall_back(self._reader.error or "the stream ended")
                    break
                parts.append(self._decoder.decode(item))
                item = self._chunks.get_nowait()
        except queue.Empty:
            pass
        text, self._parts = "".join(parts), []
        self.taken += len(text)
        return text

    def _fall_back(self, reason: str) -> None:
        # Bytes still inside the decoder (half a character, a lone CR) are not counted in
        # `taken`: polling brings them again, already decoded.
        self.mode, self._decoder = "poll", _decoder()
        print(f"run-project: Ray's log stream is not available ({reason}); "
              "polling the whole log instead", file=sys.stderr, flush=True)  # fmt: skip


def _decoder() -> io.IncrementalNewlineDecoder:
    # As Python's text mode reads the file on the Ray side: UTF-8, "\r\n" and "\r" as "\n".
    return io.IncrementalNewlineDecoder(codecs.getincrementaldecoder("utf-8")("replace"), True)


class _StreamReader(threading.Thread):
    """Reads the stream into a queue; None at the end. A daemon: it never holds up exit."""

    def __init__(self, dashboard: Dashboard, path: str, out: queue.Queue[bytes | None]) -> None:
        super().__init__(name="ray-log-stream", daemon=True)
        self.http, self.path, self.out = dashboard, path, out
        self.error: str | None = None
        self._response: http.client.HTTPResponse | None = None
        self._closed = threading.Event()

    def run(self) -> None:
        try:
            with self.http.open_stream(self.path) as response:
                self._response = response
                if self._closed.is_set():
                    return
                while chunk := response.read1(CHUNK):
                    self.http.count(len(chunk))
                    self.out.put(chunk)
        except urllib.error.HTTPError as exc:
            self.error = f"HTTP {exc.code}"
        except (OSError, http.client.HTTPException) as exc:
            self.error = str(exc) or type(exc).__name__
        finally:
            self.out.put(None)

    def close(self) -> None:
        self._closed.set()
        if self._response is not None:
            close_stream(self._response)
