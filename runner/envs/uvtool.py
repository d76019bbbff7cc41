"""Running uv: found from the `uv` PyPI package (or PATH), its output turned into progress,
its failures into EnvErrors that carry the installer's own message."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from runner.errors import EnvError
from runner.pids import die_with_parent
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
    env = dict(os.environ, UV_NO_PROGRESS="1", NO_COLOR="1")
    proc = subprocess.Popen(
        [uv_bin(), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent(signal.SIGKILL),
    )
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    err: list[str] = []
    try:
        for line in proc.stderr:  # type: ignore[union-attr]
            err.append(line)
            if line.strip().startswith(_INTERESTING) or line.startswith(_INTERESTING):
                progress.update(line.strip()[:120])
        code = proc.wait()
    except BaseException:
        _stop(proc)
        raise
    reader.join()
    if code != 0:
        raise EnvError(f"{what} failed:\n{_message(err)}", _hint(err))
    return "".join(out)


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
    with contextlib.suppress(OSError):
        proc.send_signal(signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)
