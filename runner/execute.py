"""The child process: its own process group, logs teed live, signals forwarded, no orphans.

Ctrl-C or SIGTERM to the runner sends SIGTERM to the child's whole process group (so
`sleep 1000 &` inside the entry point dies too) and to every other process the child started,
then SIGKILL after a grace period. When the child exits by itself, anything it left running
is stopped the same way. The runner is a child subreaper (pids.become_subreaper), so even a
`setsid` double fork that left the child's group and session stays the runner's descendant
and is found in /proc.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, NamedTuple

from runner import pids
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
    started: Callable[[int], None] | None = None,
) -> Outcome:
    """Run argv to completion, teeing its output into `log_dir/{stdout,stderr}.log`;
    `started(pid)` is called once the child runs. Nothing the child started outlives it."""
    with contextlib.suppress(OSError):  # a full disk: the tee reports the logs it cannot write
        log_dir.mkdir(parents=True, exist_ok=True)
    pids.become_subreaper()
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
    # The signal handler never reaps: the child's exit status is its Popen's to read.
    watcher = _Watcher(proc, grace_seconds, lambda: pids.descendants(os.getpid()))
    with watcher.forwarding_signals():
        if started is not None:
            started(proc.pid)
        returncode = proc.wait()  # signals run the handler, then the wait resumes (PEP 475)
    watcher.cancel_timer()
    # Leftovers hold the log pipes open: stop them before waiting for the tees to drain.
    pids.stop_all(pids.run_descendants, grace_seconds)
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
    """On SIGINT/SIGTERM stops the child's group and every process of the run: TERM now,
    KILL after the grace period."""

    def __init__(
        self, proc: subprocess.Popen[bytes], grace_seconds: float, find: Callable[[], list[int]]
    ) -> None:
        self.proc = proc
        self.find = find
        self.grace = grace_seconds
        self.received: int | None = None
        self.timer: threading.Timer | None = None

    def forwarding_signals(self) -> _SignalScope:
        return _SignalScope(self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:  # a second Ctrl-C: no more grace
            self._signal_all(signal.SIGKILL)
            return
        self.received = signum
        self._signal_all(signal.SIGTERM)
        self.timer = threading.Timer(self.grace, self._signal_all, (signal.SIGKILL,))
        self.timer.daemon = True
        self.timer.start()

    def _signal_all(self, signum: int) -> None:
        _signal_group(self.proc.pid, signum)
        for pid in self.find():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)

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
