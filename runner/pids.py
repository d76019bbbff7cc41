"""Is a process (on this machine) still alive? Used to spot work left by dead runners."""

from __future__ import annotations

import os
from collections.abc import Callable


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (dead, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def die_with_parent(signum: int) -> Callable[[], None]:
    """A `preexec_fn` that makes the child receive `signum` when the runner dies, even by
    `kill -9`, so builders and commands never run on unsupervised (Linux prctl).

    ctypes is loaded here, in the parent: importing inside a freshly forked child can
    deadlock on an import lock another thread held at fork time.
    """
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return lambda: None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signum)

    return preexec


_PR_SET_PDEATHSIG = 1
