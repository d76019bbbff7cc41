"""Processes on this machine: is one alive, a child that dies with the runner, and a run's
whole process tree (found, stopped, recorded) so that no process outlives its run."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path


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


# -- a run's whole process tree -------------------------------------------------------------
# The runner is a child subreaper, so what a command leaves behind (a `setsid` double fork, a
# daemon) is re-parented to the runner instead of init, and is stopped when the run ends. A
# runner killed with -9 cannot do that: every process of a run carries RUN_PROJECT_RUN_ID in
# its environment, and the next `runs` or `envs gc` that finds the run LOST stops the
# processes that carry its id (docs/security.md, processes outlive their run).

RUN_TAG = "RUN_PROJECT_RUN_ID"
SESSION_FILE = "processes.json"
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make orphaned descendants children of this process (Linux ≥ 3.4); False elsewhere."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    return bool(prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def _stat(pid: int | str) -> list[str] | None:
    """/proc/PID/stat's fields after the command name: [state, ppid, pgrp, session, ...]."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_ticks(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot): a reused pid has another start."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def descendants(root: int) -> list[int]:
    """Living (not zombie) descendants of `root`, from /proc."""
    parent_of: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        fields = _stat(entry) if entry.isdigit() else None
        if fields is not None and fields[0] != "Z":
            parent_of[int(entry)] = int(fields[1])
    found: list[int] = []
    frontier = {root}
    while frontier:
        children = [pid for pid, ppid in parent_of.items() if ppid in frontier]
        found += children
        frontier = set(children)
    return found


def has_children() -> bool:
    """Whether this process has a living child; dead ones (orphans re-parented to us, a
    subreaper) are reaped on the way. Two system calls, no /proc scan: with no child left,
    no descendant is left either, since orphans come back to us."""
    while True:
        try:
            dead = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        if dead is None:
            return True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(dead.si_pid, os.WNOHANG)


def run_descendants() -> list[int]:
    """This runner's living descendants (every one belongs to its run: a runner runs one)."""
    return descendants(os.getpid()) if has_children() else []


def stop_all(find: Callable[[], list[int]], grace_seconds: float) -> int:
    """SIGTERM what `find()` returns (again for any that appear), SIGKILL what is left after
    the grace period; returns at once when nothing is left. Returns how many were found."""
    import signal
    import time

    signalled: set[int] = set()
    deadline = time.monotonic() + grace_seconds
    while (alive := find()) and time.monotonic() < deadline:
        for pid in alive:
            if pid not in signalled:
                _signal(pid, signal.SIGTERM)
                signalled.add(pid)
        time.sleep(0.05)
    for pid in alive:
        _signal(pid, signal.SIGKILL)
    for _ in range(40):  # SIGKILL is not instant; give it up to 2 s to take effect
        if not find():
            break
        time.sleep(0.05)
    return len(signalled | set(alive))


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def tagged(run_id: str) -> list[int]:
    """Living processes of this user whose environment holds RUN_PROJECT_RUN_ID=`run_id`
    (checked in /proc/PID/environ: a reused pid does not carry another run's id)."""
    wanted = f"{RUN_TAG}={run_id}".encode()
    spared = _self_and_ancestors()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in spared:
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != os.getuid():
                continue
            with open(f"/proc/{entry}/environ", "rb") as environ:
                variables = environ.read().split(b"\0")
        except OSError:
            continue
        if wanted in variables and pid_alive(int(entry)) and _same_pid_namespace(entry):
            found.append(int(entry))
    return found


def _same_pid_namespace(pid: str) -> bool:
    """A container's processes are the docker kind's to stop (`envs gc` removes the
    container, and a dry run must not touch it)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid")
    except OSError:
        return False


def _self_and_ancestors() -> set[int]:
    """This command and its parents: never stopped, even when started from a lost run."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        fields = _stat(pid)
        pid = int(fields[1]) if fields else 0
    return pids


def write_session(path: Path, run_id: str, command_pid: int | None = None) -> None:
    """Record the runner's (and the command's) pid, process group and session in `path`."""
    import json

    def ids(pid: int) -> dict[str, int | None]:
        return {"pid": pid, "pgid": os.getpgid(pid), "sid": os.getsid(pid),
                "start_ticks": start_ticks(pid)}  # fmt: skip

    session: dict[str, object] = {"run_id": run_id, "host": os.uname().nodename,
                                  "runner": ids(os.getpid())}  # fmt: skip
    if command_pid is not None:
        session["command"] = ids(command_pid)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(session, indent=2))
    os.replace(tmp, path)


def stop_lost_run(path: Path, run_id: str, grace_seconds: float = 5.0) -> int:
    """Stop what a run whose runner died left running here (its session file names the
    runner; a live runner still supervises its own). Returns how many were stopped."""
    import json

    try:
        session = json.loads(path.read_text())
        runner = session["runner"]
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    if session.get("host") != os.uname().nodename or session.get("run_id") != run_id:
        return 0
    if pid_alive(runner["pid"]) and start_ticks(runner["pid"]) == runner.get("start_ticks"):
        return 0
    return stop_all(lambda: tagged(run_id), grace_seconds)
