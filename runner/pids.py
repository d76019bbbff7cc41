"""Is a process (on this machine) still alive? Used to spot work left by dead runners."""

from __future__ import annotations

import os


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
