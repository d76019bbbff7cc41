"""The child process: its own process group, logs teed live, signals forwarded, no orphans.

Ctrl-C or SIGTERM to the runner sends SIGTERM to the child's whole process group (so
`sleep 1000 &` inside the entry point dies too), then SIGKILL after a grace period. When the
child exits by itself, anything it left running in its group is stopped the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, NamedTuple

from runner.pids import die_with_parent


class Outcome(NamedTuple):
    """How the child ended: status FINISHED/FAILED/KILLED, exit code, and why."""

    status: str
    exit_code: int
    reason: str | None = None


class Interrupted(Exception):
    """The runner got SIGINT/SIGTERM outside the child's run (e.g. during a build)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_on_signals() -> None:
    """Turn SIGTERM (and SIGINT) into `Interrupted`, so every step can close its record."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_child(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    log_dir: Path,
    grace_seconds: float,
) -> Outcome:
    """Run argv to completion, teeing its output into `log_dir/{stdout,stderr}.log`."""
    with contextlib.suppress(OSError):  # a full disk: the tee reports the logs it cannot write
        log_dir.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
    except FileNotFoundError:
        return Outcome("FAILED", 127, f"command not found: {argv[0]}")
    except PermissionError:
        return Outcome("FAILED", 126, f"command not executable: {argv[0]}")
    tees = [
        _tee(proc.stdout, log_dir / "stdout.log", sys.stdout),
        _tee(proc.stderr, log_dir / "stderr.log", sys.stderr),
    ]
    watcher = _Watcher(proc, grace_seconds)
    with watcher.forwarding_signals():
        returncode = proc.wait()  # signals run the handler, then the wait resumes (PEP 475)
    watcher.cancel_timer()
    _stop_group(proc.pid, grace_seconds)
    for tee in tees:
        tee.join(timeout=5)
    return _outcome(returncode, watcher.received)


def _tee(pipe: IO[bytes] | None, path: Path, terminal: IO[str]) -> threading.Thread:
    """Copy the child's output to the terminal and the log file. The terminal never waits
    on the log: a log that cannot be written is reported once and dropped."""

    def copy() -> None:
        assert pipe is not None
        out = terminal.buffer if hasattr(terminal, "buffer") else None
        log = _LogFile(path)
        try:
            while chunk := pipe.read1(65536):  # type: ignore[attr-defined]
                if out is not None:
                    try:
                        out.write(chunk)
                        out.flush()
                    except (OSError, ValueError):
                        out = None  # the terminal went away; keep logging to the file
                log.write(chunk)
        except (OSError, ValueError):
            pass  # the pipe itself broke: the child is gone
        finally:
            log.close()
            pipe.close()

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread


class _LogFile:
    """A log file that reports its first failure (disk full, removed) once, then is dropped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: IO[bytes] | None = None
        try:
            self.handle = open(path, "wb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            self._failed(exc)

    def write(self, chunk: bytes) -> None:
        if self.handle is None:
            return
        try:
            self.handle.write(chunk)
            self.handle.flush()
        except OSError as exc:
            self._failed(exc)

    def close(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.handle.close()

    def _failed(self, exc: OSError) -> None:
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.handle.close()
        self.handle = None
        reason = exc.strerror or str(exc)
        print(
            f"run-project: cannot write the log {self.path} ({reason}); the command's output "
            "still reaches this terminal",
            file=sys.stderr,
            flush=True,
        )


class _Watcher:
    """On SIGINT/SIGTERM stops the child's group: TERM now, KILL after the grace period."""

    def __init__(self, proc: subprocess.Popen[bytes], grace_seconds: float) -> None:
        self.proc = proc
        self.grace = grace_seconds
        self.received: int | None = None
        self.timer: threading.Timer | None = None

    def forwarding_signals(self) -> _SignalScope:
        return _SignalScope(self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:  # a second Ctrl-C: no more grace
            _signal_group(self.proc.pid, signal.SIGKILL)
            return
        self.received = signum
        _signal_group(self.proc.pid, signal.SIGTERM)
        self.timer = threading.Timer(self.grace, _signal_group, (self.proc.pid, signal.SIGKILL))
        self.timer.daemon = True
        self.timer.start()

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()


class _SignalScope:
    def __init__(self, handler: Callable[[int, FrameType | None], None]) -> None:
        self.handler = handler
        self.saved: dict[int, object] = {}

    def __enter__(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.saved[signum] = signal.signal(signum, self.handler)

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self.saved.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]


def _signal_group(pgid: int, signum: int) -> bool:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _stop_group(pgid: int, grace_seconds: float) -> None:
    """Stop whatever the child left running in its group: TERM, then KILL after the grace."""
    if not _signal_group(pgid, 0):
        return
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not _signal_group(pgid, 0):
            return
        time.sleep(0.05)
    _signal_group(pgid, signal.SIGKILL)


def _outcome(returncode: int, received: int | None) -> Outcome:
    if received is not None:
        name = signal.Signals(received).name
        return Outcome("KILLED", 128 + received, f"stopped by {name} sent to run-project")
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return Outcome("KILLED", 128 - returncode, f"the command was killed by {name}")
    if returncode != 0:
        return Outcome("FAILED", returncode, f"the command exited with code {returncode}")
    return Outcome("FINISHED", 0)
