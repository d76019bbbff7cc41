"""Results that come back from a job without a shared disk (see job_wrapper.py).

The job's log carries the user's output, then one block of base64 lines between two marker
lines holding a tar.gz: events.jsonl, outputs/..., logged/... (what the job's MLflow endpoint
stored), workdir/... and manifest.json. This module splits the log into what the user printed
and that block, and unpacks the archive into the run's directory. A member is taken only when
its name is a plain path in one of those areas (no `..`, `.` or empty part: a
`logged/../x` is refused and named, as the events reader refuses such a stored name), and
through tarfile's `data` filter (no absolute paths, no links out).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import BackendError


@dataclass
class LogSplitter:
    """Splits a job's log, fed in chunks as they arrive, into the user's text and the results.

    Only a bounded tail is kept (a possible start of the marker, at most its length); the
    results block itself is the one thing that grows. The marker is `\\n@@run-project:TOKEN:`;
    a last line that could be its start is held back until it is clearly not (a complete line
    is shown at once: readers wait for its newline), and the newline that opens the marker is
    the wrapper's own, never shown.
    """

    token: str
    block: str | None = None
    results_file: bool = False
    _begin: str = field(init=False)
    _end: str = field(init=False)
    _held: str = ""  # unshown text that may be the start of the marker ("\n" + a prefix)
    _newline_shown: bool = False  # the last character shown was "\n": a marker may open there
    _after: list[str] | None = None  # text after the marker: None until the marker is seen
    _kind: str | None = None  # "block" once "begin@@" followed the marker
    _tail: str = ""  # the block's last characters, where its end marker may have begun
    _done: bool = False  # the results (or a damaged marker) are taken: the rest is ignored

    def __post_init__(self) -> None:
        self._begin = f"\n@@run-project:{self.token}:"
        self._end = f"@@run-project:{self.token}:end@@"

    @property
    def complete(self) -> bool:
        """True once the results (block or file notice) have been read from the log."""
        return self._done

    def feed(self, chunk: str, final: bool = False) -> str:
        """Take the next piece of the log; returns the new user text to show."""
        if self._after is not None:
            self._take_block(chunk)
            return ""
        opened = "\n" if self._newline_shown else ""  # shown already; a marker may open there
        text = self._held + chunk
        found = (opened + text).find(self._begin)
        if found >= 0:
            visible = text[: max(found - len(opened), 0)]
            self._held, self._after = "", []
            self._take_block(text[found - len(opened) + len(self._begin) :])
        elif final:
            visible, self._held = text, ""
        else:
            keep = self._hold_from(text, opened)
            visible, self._held = text[:keep], text[keep:]
        if visible:
            self._newline_shown = visible.endswith("\n")
        return visible

    def _hold_from(self, text: str, opened: str) -> int:
        # Where the held-back tail starts: at the last newline when what follows it could
        # still become our marker; a newline already shown counts when text has none.
        newline = text.rfind("\n")
        tail = text[newline + 1 :] if newline >= 0 else (text if opened else "")
        if tail and self._begin[1:].startswith(tail):
            return max(newline, 0)
        return len(text)

    def _take_block(self, chunk: str) -> None:
        if self._done or self._after is None or not chunk:
            return
        if self._kind is None:  # "begin@@" or "file@@" follows the marker: wait to tell
            head = self._after[0] + chunk if self._after else chunk
            if head.startswith("file@@"):
                self.results_file = self._done = True
                return
            if len(head) < len("begin@@") and ("begin@@".startswith(head) or
                                               "file@@".startswith(head)):  # fmt: skip
                self._after = [head]
                return
            self._after = []
            if not head.startswith("begin@@"):
                self._done = True  # not a marker we wrote: nothing after it is shown, as before
                return
            self._kind, chunk = "block", head[len("begin@@") :]
        # Look for the end only in the new text and the few characters before it.
        window = self._tail + chunk
        end = window.find(self._end)
        if end < 0:
            self._after.append(chunk)
            self._tail = window[-(len(self._end) - 1) :]
            return
        whole = "".join(self._after)
        self.block = whole[: len(whole) - len(self._tail)] + window[:end]
        self._after, self._done = [], True


AREAS = ("outputs", "logged", "workdir")  # directories of the archive, moved into the run dir
SINGLE_FILES = ("events.jsonl", "manifest.json")


@dataclass(frozen=True)
class Returned:
    """What came back: the command's own exit code (if known), files, what was skipped (over
    the size limit), what was refused (a name that is not a plain path in its area), and the
    interpreter and argv that ran on the cluster (the job's report; {} when it sent none)."""

    exit_code: int | None
    signal: int | None
    files: list[str]
    skipped: list[str]
    refused: list[str] = field(default_factory=list)
    ran: dict[str, Any] = field(default_factory=dict)

    def note(self) -> str:
        """What did not come back, for the run's reason ("" when everything did)."""
        parts = []
        if self.skipped:
            parts.append(f"results over max_result_mb not returned: {', '.join(self.skipped)}")
        if self.refused:
            parts.append(f"results with unsafe names refused: {', '.join(self.refused)}")
        return "; ".join(parts)


def decode_block(block: str) -> bytes:
    """The archive bytes from the base64 lines of the block."""
    try:
        return base64.b64decode("".join(block.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BackendError(
            f"the job's results block in its log is damaged ({exc})",
            "check the job's log; a program that prints run-project's markers confuses it",
        ) from exc


def unpack(data: bytes, run_dir: Path, local_workdir: Path) -> Returned:
    """Unpack a results archive into run_dir: events.jsonl, outputs/, logged/, workdir/."""
    with tempfile.TemporaryDirectory(dir=run_dir, prefix=".returned-") as tmp:
        staging = Path(tmp)
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                members = tar.getmembers()
                refused = [m.name for m in members if not plain_member(m.name)]
                taken = [m for m in members if plain_member(m.name)]
                tar.extractall(staging, members=taken, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise BackendError(
                f"cannot unpack the results of the job ({exc})", "check the job's log"
            ) from exc
        manifest = _manifest(staging / "manifest.json")
        if (staging / "events.jsonl").is_file():
            _localise_events(staging / "events.jsonl", manifest, staging, local_workdir)
        files = _move_into(staging, run_dir)
    return Returned(
        exit_code=manifest.get("exit_code"),
        signal=manifest.get("signal"),
        files=files,
        skipped=list(manifest.get("skipped") or []),
        refused=refused,
        ran=_ran(manifest),
    )


def plain_member(name: str) -> bool:
    """A results member run-project wrote: one of the single files, or a plain relative path
    inside one of the areas."""
    if name in SINGLE_FILES:
        return True
    parts = name.split("/")
    return parts[0] in AREAS and len(parts) > 1 and not {"", ".", ".."} & set(parts[1:])


def _ran(manifest: dict[str, Any]) -> dict[str, Any]:
    """The job's report of what ran: argv (its program found on the job's PATH), the
    interpreter of the job wrapper, the host; only well-formed values are kept."""
    ran: dict[str, Any] = {}
    argv = manifest.get("argv")
    if isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv):
        ran["argv"] = argv
    for key in ("python", "host"):
        if isinstance(manifest.get(key), str):
            ran[key] = manifest[key]
    return ran


def _manifest(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _move_into(staging: Path, run_dir: Path) -> list[str]:
    files: list[str] = []
    for path in sorted(staging.rglob("*")):
        rel = path.relative_to(staging).as_posix()
        if path.is_dir() or rel == "manifest.json" or not plain_member(rel):
            continue
        target = run_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel == "events.jsonl" and target.exists():
            with open(target, "ab") as out, open(path, "rb") as src:
                shutil.copyfileobj(src, out)  # keep lines ingested so far, add the job's
        else:
            shutil.move(str(path), target)
        files.append(rel)
    return files


def _localise_events(path: Path, manifest: dict[str, Any], staging: Path, workdir: Path) -> None:
    """Paths in the job's events are the cluster's: map them to this side's copies.

    A file read in the cluster's working dir is the same file in the local checkout (it was
    shipped from there); a file written there or in the output dir came back under run_dir.
    A path elsewhere on the cluster has no copy here: its event keeps the cluster's path,
    which capture refuses and names in a warning (tracking/foreign.py), rather than let a
    different local file of the same name be hashed as the run's input.
    """
    remote = {"workdir": str(manifest.get("workdir") or ""),
              "outputs": str(manifest.get("outputs") or "")}  # fmt: skip
    run_dir = staging.parent  # files are moved next; name them where they will be
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            lines.append(line)  # the reader counts and reports malformed lines
            continue
        if isinstance(event, dict) and event.get("type") in ("open", "artifact"):
            local = _local_path(str(event.get("path", "")), remote, staging, run_dir, workdir)
            if local is not None:
                event["path"] = local
        lines.append(json.dumps(event))
    path.write_text("".join(line + "\n" for line in lines))


def _local_path(raw: str, remote: dict[str, str], staging: Path, run_dir: Path,
                workdir: Path) -> str | None:  # fmt: skip
    for area in ("outputs", "workdir"):
        root = remote[area]
        if not root or not raw.startswith(root.rstrip("/") + "/"):
            continue
        rel = raw[len(root.rstrip("/")) + 1 :]
        if (staging / area / rel).is_file():
            return str(run_dir / area / rel)
        return str(workdir / rel) if area == "workdir" else None
    if not raw.startswith("/"):
        return raw  # relative to the working dir: the reader resolves it
    return None
