"""Progress for slow steps: a live line with elapsed time on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Reports steps to stderr. `quiet` silences everything but warnings."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._step = ""

    def step(self, message: str) -> None:
        """A new step began (e.g. "resolving numpy, scikit-learn")."""
        self._step = message
        self.started = time.monotonic()
        self._write(f"run-project: {message}")

    def update(self, detail: str) -> None:
        """More detail on the current step; shown only on a terminal (it would spam logs)."""
        if self.tty and not self.quiet:
            elapsed = time.monotonic() - self.started
            self.stream.write(f"\r\x1b[2K  {self._step}: {detail} ({elapsed:.1f}s)")
            self.stream.flush()

    def done(self, message: str) -> None:
        """The current step finished."""
        elapsed = time.monotonic() - self.started
        if self.tty and not self.quiet:
            self.stream.write("\r\x1b[2K")
        self._write(f"run-project: {message} ({elapsed:.2f}s)")

    def warn(self, message: str) -> None:
        """Something the user should know; always shown."""
        self.stream.write(f"warning: {message}\n")
        self.stream.flush()

    def _write(self, line: str) -> None:
        if not self.quiet:
            if self.tty:
                self.stream.write("\r\x1b[2K")  # clear a live update line first
            self.stream.write(line + "\n")
            self.stream.flush()
