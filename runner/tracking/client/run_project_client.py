"""Log metrics, params, tags and artifacts from inside a run-project run (stdlib only).

    import run_project_client as rp
    rp.log_metric("loss", 0.25, step=3)
    rp.log_param("layers", 3)
    rp.set_tag("stage", "tuning")
    rp.log_artifact("plots/loss.png")

run-project puts this module on the run's PYTHONPATH in every environment kind; nothing needs
installing. Each call appends one JSON line to the file named by $RUN_PROJECT_EVENTS, which
any other language can write the same way. Outside a run the calls do nothing.
"""

from __future__ import annotations

import _thread
import os
import sys
import time

# Every Python start of a run loads this module, so it imports only what that start needs:
# json when the first event is written, typing never (the thread primitives are threading's
# own, from _thread, without threading's import).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "install_audit_hook",
    "log_artifact",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "output_dir",
    "run_id",
    "set_tag",
]

_lock = _thread.allocate_lock()
_fd: int | None = None
_busy = _thread._local()
# Lines the events file refused (its disk full): written first once it takes lines again, or
# at exit, so the command goes on and a disk freed before the end loses nothing.
_backlog: list[bytes] = []
BACKLOG_LINES = 100_000  # beyond this, refused lines are dropped (and counted) not kept
_dropped = 0


def run_id() -> str | None:
    """The id of the current run, or None outside run-project."""
    return os.environ.get("RUN_PROJECT_RUN_ID")


def output_dir() -> str | None:
    """The directory whose files are kept as this run's outputs."""
    return os.environ.get("RUN_PROJECT_OUTPUT_DIR")


def _emit(event: dict[str, Any]) -> None:
    global _fd
    path = os.environ.get("RUN_PROJECT_EVENTS")
    if not path:
        return
    _busy.active = True  # the audit hook must not report our own writes (nor json's import)
    try:
        import json

        line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
        with _lock:
            try:
                if _fd is None:
                    _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                _write_backlog(_fd)
                os.write(_fd, line)  # one write per line: concurrent writers never interleave
            except OSError as exc:
                _keep(line, path, exc)
    finally:
        _busy.active = False


def _write_backlog(fd: int) -> None:
    while _backlog:
        os.write(fd, _backlog[0])
        _backlog.pop(0)


def _keep(line: bytes, path: str, exc: OSError) -> None:
    """A line the events file refused: kept for later, with one warning per process."""
    global _dropped
    if not _backlog and not _dropped:
        sys.stderr.write(
            f"run-project: cannot write to {path} ({exc.strerror or exc}); the command goes "
            "on and what it logs is kept in memory until the file takes it again\n"
        )
        import atexit

        atexit.register(_flush_at_exit, path)
    if len(_backlog) < BACKLOG_LINES:
        _backlog.append(line)
    else:
        _dropped += 1


def _flush_at_exit(path: str) -> None:
    global _fd
    with _lock:
        try:
            if _fd is None:
                _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            _write_backlog(_fd)
            if _dropped:
                sys.stderr.write(f"run-project: {_dropped} logged value(s) lost: over "
                                 f"{BACKLOG_LINES} lines waited for {path}\n")  # fmt: skip
        except OSError as exc:
            sys.stderr.write(
                f"run-project: {len(_backlog) + _dropped} logged value(s) lost: {path} still "
                f"refuses them ({exc.strerror or exc})\n"
            )


def log_metric(key: str, value: float, step: int | None = None) -> None:
    """Record one point of metric `key` (steps count up from 0 when not given)."""
    event: dict[str, Any] = {"type": "metric", "key": str(key), "value": float(value)}
    if step is not None:
        event["step"] = int(step)
    event["ts"] = time.time()
    _emit(event)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Record several metrics at once."""
    for key, value in metrics.items():
        log_metric(key, value, step)


def log_param(key: str, value: Any) -> None:
    """Record a parameter the code chose (the last value for a key wins)."""
    _emit({"type": "param", "key": str(key), "value": str(value)})


def log_params(params: dict[str, Any]) -> None:
    """Record several parameters."""
    for key, value in params.items():
        log_param(key, value)


def set_tag(key: str, value: Any) -> None:
    """Set a tag on the run."""
    _emit({"type": "tag", "key": str(key), "value": str(value)})


def log_artifact(path: str, name: str | None = None) -> None:
    """Keep the file at `path` with the run, as `name` (a relative path; default: its name)."""
    chosen = name if name is not None else os.path.basename(path)
    parts = chosen.split("/")
    if not chosen or chosen.startswith("/") or "\\" in chosen or ".." in parts or "" in parts:
        raise ValueError(f"artifact name {chosen!r}: use a relative path without '..'")
    _emit({"type": "artifact", "path": os.path.abspath(path), "name": chosen})


# -- where MLflow logged -------------------------------------------------------------------
def report_mlflow_uri() -> None:
    """At exit: if this process used MLflow and its tracking URI is not the run's endpoint (the
    project chose its own), say where its logging went, credentials removed."""
    mlflow = sys.modules.get("mlflow")
    served = os.environ.get("RUN_PROJECT_MLFLOW_URI")
    if mlflow is None or not os.environ.get("RUN_PROJECT_EVENTS"):
        return
    try:
        uri = str(mlflow.get_tracking_uri())
    except Exception:  # an MLflow too broken to answer: nothing to report
        return
    if uri == served:
        return
    scheme, sep, rest = uri.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    _emit({"type": "mlflow_uri", "uri": scheme + sep + rest if sep else uri})


# -- automatic file capture -------------------------------------------------------------------
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".so", ".pth", ".pyi")


def _ignored_roots() -> tuple[str, ...]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    roots.add(os.path.dirname(os.path.abspath(__file__)))
    events = os.environ.get("RUN_PROJECT_EVENTS")
    if events:
        roots.add(os.path.dirname(os.path.abspath(events)))
    return (*tuple(os.path.join(r, "") for r in roots if r), "/proc/", "/sys/", "/dev/")


def install_audit_hook() -> None:
    """Report files this process opens (outside Python and its packages) to run-project."""
    if not os.environ.get("RUN_PROJECT_EVENTS") or os.environ.get("RUN_PROJECT_AUDIT") == "0":
        return
    ignored = _ignored_roots()
    output = os.environ.get("RUN_PROJECT_OUTPUT_DIR", "")
    seen: set[tuple[str, str]] = set()

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event != "open" or getattr(_busy, "active", False):
            return
        path, mode, flags = ((*tuple(args), None, None, None))[:3]
        if not isinstance(path, (str, bytes)):
            return  # an fd, not a name
        _report(os.fsdecode(path), mode, flags)

    def _report(path: str, mode: object, flags: object) -> None:
        if path.endswith(_CODE_SUFFIXES) or "site-packages" in path or "dist-packages" in path:
            return
        writing = isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
        if isinstance(mode, str):
            writing = writing or any(c in mode for c in "wax+")
        full = os.path.abspath(path)
        kind = "w" if writing else "r"
        if (full, kind) in seen or full.startswith(ignored) or (output and full.startswith(output)):
            return
        seen.add((full, kind))
        # The events' disk full must not fail the command's own open(); no contextlib here:
        # this module loads into every Python the run starts.
        try:  # noqa: SIM105
            _emit({"type": "open", "path": full, "mode": kind})
        except OSError:
            pass

    sys.addaudithook(hook)
