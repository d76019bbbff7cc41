"""Following a Ray job's log in pieces: the incremental LogSplitter, the stream's decoding, and
the switch to polling when the stream breaks mid-way (tests/test_backend_ray.py runs the whole
thing against a real Ray head)."""

from __future__ import annotations

import base64
import http.server
import io
import json
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.backends import results
from runner.backends.ray import logs as ray_logs
from runner.backends.ray.http import Dashboard
from support.cli import cli
from support.projects import make_project

USER = "epoch 1\n@@ looks like ours\n@@run-project:other:begin@@\nno newline"
BLOCK = base64.b64encode(b"the results archive" * 20).decode()
BLOCK_LOG = (
    f"{USER}\n@@run-project:t0k:begin@@\n{BLOCK[:40]}\n{BLOCK[40:]}\n@@run-project:t0k:end@@\n"
)


def _feed(splitter: results.LogSplitter, chunks: list[str]) -> str:
    shown = [splitter.feed(c) for c in chunks[:-1]]
    return "".join(shown) + splitter.feed(chunks[-1], final=True)


def _shown_ok(shown: str, user: str) -> bool:
    # The newline that opens the marker is the wrapper's own: shown only when a piece ended
    # right after it (a complete line is shown at once), as the polling splitter did.
    return shown in (user, user + "\n")


def test_the_marker_is_found_whatever_two_cuts_split_the_log() -> None:
    for i in range(len(BLOCK_LOG) + 1):
        for j in range(i, len(BLOCK_LOG) + 1, 7):
            splitter = results.LogSplitter("t0k")
            shown = _feed(splitter, [BLOCK_LOG[:i], BLOCK_LOG[i:j], BLOCK_LOG[j:]])
            assert _shown_ok(shown, USER), (i, j, shown)
            assert splitter.complete and splitter.block is not None, (i, j)
            assert results.decode_block(splitter.block) == b"the results archive" * 20


def test_a_log_fed_one_character_at_a_time_hides_the_block_and_shows_the_rest() -> None:
    splitter = results.LogSplitter("t0k")
    shown = _feed(splitter, [*BLOCK_LOG, "printed after the results: ignored\n"])
    assert _shown_ok(shown, USER)
    assert splitter.block is not None
    assert results.decode_block(splitter.block) == b"the results archive" * 20


def test_the_results_file_notice_is_found_at_every_cut() -> None:
    log = f"{USER}\n@@run-project:t0k:file@@\n"
    for i in range(len(log) + 1):
        splitter = results.LogSplitter("t0k")
        assert _shown_ok(_feed(splitter, [log[:i], log[i:]]), USER), i
        assert splitter.results_file and splitter.block is None


def test_a_user_line_that_starts_like_the_marker_is_held_then_shown() -> None:
    splitter = results.LogSplitter("t0k")
    assert splitter.feed("step\n@@run-pro") == "step"  # could be ours: held back
    assert splitter.feed("ject:t0") == ""  # still could be
    assert splitter.feed("x: not ours\n") == "\n@@run-project:t0x: not ours\n"
    assert splitter.feed("@@run-project:t0k") == ""  # after a shown newline: held again
    assert splitter.feed(" is a user line\n") == "@@run-project:t0k is a user line\n"
    assert splitter.feed("last\n@@run", final=True) == "last\n@@run"  # the end: all shown
    assert not splitter.complete


def test_a_marker_prefix_in_every_position_is_shown_in_full_without_a_marker() -> None:
    log = "a\n@@run-project:t0\n@@run-project:t0k\n@@\nb\n@@run-project:t0"
    for i in range(len(log) + 1):
        for j in range(i, len(log) + 1):
            assert _feed(results.LogSplitter("t0k"), [log[:i], log[i:j], log[j:]]) == log


def test_a_long_log_keeps_only_a_bounded_tail_in_memory() -> None:
    splitter = results.LogSplitter("t0k")
    chunk = "x" * 1023 + "\n" + "y" * 1024 * 63 + "\n@@run-project:t0"  # ends like our marker
    tracemalloc.start()
    try:
        for _ in range(300):  # ~19 MB of user text
            splitter.feed(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # a few chunk-sized strings, never the log so far


def test_the_stream_is_decoded_as_ray_reads_the_log_file() -> None:
    # /api/jobs/ID/logs reads the file in Python's text mode; the stream gives bytes. Cut
    # anywhere (inside "é", between "\r" and "\n"), both must give the same characters.
    data = "é1\r\n2\r3\n\r\n€4\r".encode()
    expected = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline=None).read()
    for i in range(len(data) + 1):
        decoder = ray_logs._decoder()
        text = decoder.decode(data[:i]) + decoder.decode(data[i:]) + decoder.decode(b"", True)
        assert text == expected, i


# A Ray whose log stream breaks mid-way cannot be made on purpose: this small server answers
# the two endpoints the follower uses, the stream cut off after part of the log.
LOG = "".join(f"line {i} é\r\n" for i in range(5000))


class _BreakingRay(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.startswith("/api/v0/logs/stream"):
            data = LOG.encode()[:30001]  # cut inside a line, inside a character
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            self.close_connection = True  # no last chunk: the client sees a broken stream
            return
        body = json.dumps({"logs": LOG.replace("\r\n", "\n")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def breaking_ray() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BreakingRay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_stream_that_breaks_mid_way_falls_back_to_polling_without_loss_or_repeat(
    breaking_ray: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dashboard = Dashboard({"address": breaking_ray})
    follower = ray_logs.LogFollower(dashboard, "job-1", 0.1, stream=True)
    follower.start({"status": "RUNNING", "driver_node_id": "abc"})
    text = ""
    while follower.streaming:
        text += follower.wait_for(0.5)
    assert 0 < len(text) < len(LOG)  # part came through the stream
    text += follower.take()  # polling now: the rest, once
    follower.close()
    assert text == LOG.replace("\r\n", "\n")
    assert "polling the whole log instead" in capsys.readouterr().err


def test_log_stream_must_be_a_boolean(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "p",
        {"MLproject": "name: p\nentry_points:\n  main:\n    command: python -c pass\n"},
    )
    config = json.dumps({"address": "http://127.0.0.1:9", "log_stream": "no"})
    result = cli(str(project), "-b", "ray", "--backend-config", config)
    assert result.code == 2
    assert "log_stream must be true or false" in result.err and "Traceback" not in result.err
