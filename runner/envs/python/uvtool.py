"""Running uv: found from the `uv` PyPI package (or PATH), its output turned into progress,
its failures into EnvErrors that carry the installer's own message."""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from runner import settings
from runner.cache import can_clone
from runner.errors import EnvError
from runner.pids import descendants, die_with_parent
from runner.progress import Progress

_INTERESTING = (
    "Resolved",
    "Prepared",
    "Installed",
    "Uninstalled",
    "Built",
    "Building",
    "Downloading",
    "Using",
    "Creating",
    " + ",
    "error",
    "warning",
)


@cache
def uv_bin() -> str:
    """The uv executable: the one the `uv` package ships, else `uv` on PATH."""
    try:
        import uv

        found: str | None = uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
    if not found:
        raise EnvError(
            "uv is not installed, so virtualenvs cannot be built",
            "pip install uv (in the environment that runs run-project)",
        )
    return found


@cache
def link_mode() -> str:
    """How uv puts package files into an environment: never `hardlink` or `symlink` (uv's
    default hardlinks its cache's files into every venv, so a run writing to its own `six.py`
    would change every other venv and the cache). `clone` where uv's cache and ours can
    share blocks copy-on-write, else `copy`: uv's own `clone` falls back to hardlinks.
    The user's UV_LINK_MODE is overridden for the same reason."""
    out = subprocess.run([uv_bin(), "cache", "dir"], capture_output=True, text=True, check=False)
    uv_cache = Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None
    if uv_cache is not None and can_clone(uv_cache, settings.cache_dir()):
        return "clone"
    return "copy"


@cache
def uv_version() -> str:
    """`uv --version`, e.g. 'uv 0.13.9'."""
    out = subprocess.run([uv_bin(), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def run(args: Sequence[str], progress: Progress, cwd: Path, what: str) -> str:
    """Run `uv ARGS` in `cwd`; its stderr lines become progress; returns stdout.

    On failure the EnvError holds uv's own message (what the user needs to fix the input).
    An interrupt kills uv before it propagates, so nothing keeps writing into a build
    directory that the cache is about to remove.
    """
    return start(args, cwd).wait(progress, what)


def start(args: Sequence[str], cwd: Path) -> Running:
    """Start `uv ARGS` in `cwd` and return at once, so independent steps run side by side.

    Call this from the main thread: the child's parent-death signal fires when the thread
    that started it ends. Its output is collected by reader threads until `wait`.
    """
    env = dict(os.environ, UV_NO_PROGRESS="1", NO_COLOR="1", UV_LINK_MODE=link_mode())
    proc = subprocess.Popen(
        [uv_bin(), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0,  # uv and the build backends it starts: stopped as one group
        preexec_fn=die_with_parent(signal.SIGKILL),
    )
    return Running(proc)


class Running:
    """A started uv process: its stderr lines queued for progress, its stdout collected."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._out: list[str] = []
        self._readers = [
            threading.Thread(target=self._pump_err, daemon=True),
            threading.Thread(target=lambda: self._out.append(proc.stdout.read()), daemon=True),  # type: ignore[union-attr]
        ]
        for reader in self._readers:
            reader.start()

    def _pump_err(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self._lines.put(line)
        self._lines.put(None)

    def finish(self, progress: Progress) -> tuple[int, str, list[str]]:
        """Wait for the end: (exit code, stdout, stderr lines); the interesting stderr lines
        are shown as progress as they come. An interrupt kills uv first."""
        err: list[str] = []
        try:
            while (line := self._lines.get()) is not None:
                err.append(line)
                if line.strip().startswith(_INTERESTING) or line.startswith(_INTERESTING):
                    progress.update(line.strip()[:120])
            code = self.proc.wait()
        except BaseException:
            self.stop()
            raise
        for reader in self._readers:
            reader.join()
        return code, "".join(self._out), err

    def wait(self, progress: Progress, what: str) -> str:
        """Wait for the end and return stdout; a failure is an EnvError with uv's message."""
        code, out, err = self.finish(progress)
        if code != 0:
            raise failure(what, err)
        return out

    def stop(self) -> None:
        """Kill uv if it still runs (a step beside it failed or was interrupted)."""
        if self.proc.poll() is None:
            _stop(self.proc)


def failure(what: str, err: list[str]) -> EnvError:
    """The EnvError for a failed uv step: uv's own message and a hint that fits it."""
    return EnvError(f"{what} failed:\n{_message(err)}", _hint(err))


def _message(lines: list[str]) -> str:
    """uv's error report, without its progress chatter (and at most 40 lines)."""
    text = [ln.rstrip() for ln in lines if ln.strip()]
    start = next((i for i, ln in enumerate(text) if ln.lstrip().startswith(("error", "\u00d7"))), 0)
    return "\n".join(text[start:][:40])


def _hint(lines: list[str]) -> str:
    joined = "".join(lines).lower()
    if "offline" in joined or "network" in joined or "connect" in joined:
        return "check the network or the package index; offline, only cached packages install"
    return (
        "fix the requirement named above (a typo, a version that does not exist, or a pin "
        "that conflicts), then run again"
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    """Kill uv and every process under it: a build backend (a `setup.py` that runs for
    minutes) must not keep running after Ctrl-C, nor write into a directory being removed."""
    tree = descendants(proc.pid)  # before uv dies: its children would move to the runner
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in tree:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)
