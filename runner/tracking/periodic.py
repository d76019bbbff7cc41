"""One periodic thread: the run's heartbeat and its live event ingestion are the same loop."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def every(
    interval: float,
    tick: Callable[[], object],
    *,
    name: str,
    join_seconds: float,
    done: Callable[[], object] | None = None,
) -> Iterator[None]:
    """Call `tick` every `interval` seconds on a daemon thread while the block runs.

    The first call comes one interval after entry, none after exit. `done` runs on the
    thread when it stops (closing the thread's own store connection). The exit waits at
    most `join_seconds`: a store that hangs must not keep run-project from ending, and a
    daemon thread does not keep the process alive.
    """
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.wait(interval):
                tick()
        finally:
            if done is not None:
                done()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=join_seconds)
