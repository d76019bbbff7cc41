"""A run's write-ahead journal: every change of its record is appended here before the store.

One file per run, `<state>/run-project/journals/<store key>/<run id>.jsonl`, outside the store
(`<state>` is $XDG_STATE_HOME, else ~/.local/state; the store key is a hash of the store's
location, so a replay only ever applies a store's own journals). One JSON object per line:

    {"seq": 3, "t": 1700000000.0, "op": "update", "changes": {"status": "RUNNING", ...}}

`op` is `create` (the whole record), `update` (top-level keys merged), `metrics` (points),
`pairs` (logged params or tags) or `files` (input/output rows). `seq` counts from 1; the
store keeps, per run, the last seq it applied (`runs.journal_seq`, written in the same
transaction as the entries), so each entry is applied exactly once whoever replays it.

Each line is one write followed by fsync: once a step returns, its change survives a crash of
the runner, the store or the machine. The runner holds an exclusive flock on its journal for
its whole life; a replayer skips a journal it cannot lock (its runner applies it itself).

Artifacts not yet copied (the artifacts' disk full or read-only at the end of the run) are
kept beside the journal: `<run id>.copies` lists them (one JSON line each: name, sha256,
size, the file to copy `from` and the run's artifacts `root`); `<run id>.files/` holds the
bytes of those that lived outside the run's directory (a working copy that is cleaned up, a
file the user may change). A replay stores them once the run's journal is applied
(`Store.store_pending`).

Bound: metric points stop being journaled once the file passes `journal_limit` (they still go
to the store when it answers, and they stay in the run's events.jsonl); state changes, params,
tags and files are always journaled. See docs/tracking.md, "Durability".
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from runner import settings
from runner.errors import RunnerError

SUFFIX = ".jsonl"
COPIES = ".copies"
DEFAULT_LIMIT = 256 * 2**20


def state_dir() -> Path:
    """$XDG_STATE_HOME/run-project, else ~/.local/state/run-project."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "run-project"


def journals_dir(store_label: str) -> Path:
    """Where the journals of runs of this store live (the label: its path or redacted URL)."""
    key = hashlib.sha256(store_label.encode()).hexdigest()[:16]
    return state_dir() / "journals" / key


def limit_bytes() -> int:
    """`journal_limit` (RUN_PROJECT_JOURNAL_LIMIT) in bytes; a bad value falls back to 256 MiB."""
    from runner.tracking.artifacts import parse_size

    raw = settings.get("journal_limit")
    try:
        return parse_size(raw) if raw else DEFAULT_LIMIT
    except ValueError:
        return DEFAULT_LIMIT


class Journal:
    """The open journal of a run this process owns (append-only, flocked until closed)."""

    def __init__(self, path: Path, fd: int, limit: int) -> None:
        self.path = path
        self._fd = fd
        self.limit = limit
        self._size = 0
        self.seq = 0
        self.dropped_points = 0  # metric points not journaled because of the bound

    @classmethod
    def start(cls, store_label: str, run_id: str) -> Journal:
        """Create the run's journal, locked before any other process can see its name."""
        folder = journals_dir(store_label)
        folder.mkdir(parents=True, exist_ok=True)
        staging = folder / f"{run_id}.new"
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = folder / (run_id + SUFFIX)
        os.rename(staging, path)  # replayers list *.jsonl: they never see it unlocked
        _sync_dir(folder)
        return cls(path, fd, limit_bytes())

    @classmethod
    def unbacked(cls, store_label: str, run_id: str) -> Journal:
        """A journal whose file could not be made: every append fails, so each entry goes
        to the store only (RunRecord says so once)."""
        return cls(journals_dir(store_label) / (run_id + SUFFIX), -1, DEFAULT_LIMIT)

    def append(self, op: str, body: dict[str, Any], *, points: int = 0) -> dict[str, Any]:
        """Write the next entry durably and return it. Metric points past the bound are not
        written (counted in `dropped_points`); the entry still goes to the store.

        Raises OSError when the journal's disk refuses (the file is cut back to its last
        whole line first, so the journal stays readable)."""
        if points and self._size >= self.limit:
            self.dropped_points += points
            return self.unwritten(op, body)
        entry = {"seq": self.seq + 1, "t": time.time(), "op": op, **body}
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        try:
            if self._fd < 0:
                raise OSError(f"{self.path} could not be created")
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(f"short write to {self.path}")
            os.fdatasync(self._fd)  # the data and the new size: all a replay reads
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise
        self._size += len(line)
        self.seq += 1
        return entry

    def unwritten(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        """The next entry, not written (the journal's disk refused): it goes to the store
        only, and keeps its place in the order."""
        self.seq += 1
        return {"seq": self.seq, "t": time.time(), "op": op, **body}

    def keep_copies(self, copies: list[dict[str, Any]], run_dir: Path) -> Path:
        """Keep the run's outputs the artifacts' disk refused until a replay stores them:
        their bytes in `<run id>.files/` (those outside `run_dir`, which stays), then the
        list, each fsynced, the list renamed into place last. Returns where they are kept.

        Raises OSError when the journal's disk refuses too (nothing is left half kept)."""
        import shutil

        if self._fd < 0:
            raise OSError(f"{self.path} could not be created")
        spool = self.path.with_suffix(".files")
        listing = self.path.with_suffix(COPIES)
        staging = listing.with_name(listing.name + ".new")
        inside = os.path.join(os.path.realpath(run_dir), "")
        try:
            kept = [
                copy if os.path.realpath(copy["from"]).startswith(inside) else _spooled(spool, copy)
                for copy in copies
            ]
            text = "".join(json.dumps(c, separators=(",", ":")) + "\n" for c in kept)
            with open(staging, "w") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.rename(staging, listing)
            _sync_dir(listing.parent)
        except OSError:
            shutil.rmtree(spool, ignore_errors=True)
            with contextlib.suppress(OSError):
                staging.unlink()
            raise
        return spool if spool.exists() else listing

    def remove(self) -> None:
        """Delete the journal (every entry is in the store), then let go of it."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                self.path.unlink()
        self.close()

    def close(self) -> None:
        """Let go of the journal (a replayer may take it from now on)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Applied(NamedTuple):
    """What one application of journal entries did: entries new to the store, and metric
    points among them."""

    entries: int
    points: int


class Target(Protocol):
    """The store, as a replay sees it (store.Store)."""

    label: str

    def apply_entries(self, run_id: str, entries: Iterable[dict[str, Any]]) -> Applied: ...

    def status_of(self, run_id: str) -> str | None: ...

    def store_pending(self, run_id: str, copies: list[dict[str, Any]]) -> tuple[int, int]: ...


class Replayed(NamedTuple):
    """One journal found by a replay, and what became of it."""

    run_id: str
    path: Path
    applied: Applied
    torn: int  # lines skipped: cut short by a crash
    busy: bool  # its runner is alive and applies it itself
    status: str | None  # the run's status in the store afterwards
    error: str | None = None  # why it could not be applied (it is kept)
    copies: tuple[int, int] | None = None  # pending artifacts: (stored now, changed or gone)

    def describe(self) -> str:
        """One line for `runs sync` and for the warnings of an implicit replay."""
        head = f"run {self.run_id[:8]}"
        if self.copies is not None and self.error:
            return f"{head}: pending artifacts not stored ({self.error}); kept in {self.path}"
        if self.copies is not None:
            stored, gone = self.copies
            text = f"{head}: stored {stored} pending artifact(s)"
            if gone:
                text += f"; {gone} changed or gone since the run, not stored (see `runs show`)"
            return text
        if self.busy:
            return f"{head}: its runner is still running and writes its own results"
        if self.error:
            return f"{head}: not applied ({self.error}); its journal is kept in {self.path}"
        text = (
            f"{head}: applied {self.applied.entries} journal entries "
            f"({self.applied.points} metric points); now {self.status}"
        )
        if self.torn:
            text += f"; {self.torn} torn line(s) skipped in {self.path} (a crash mid-write)"
        return text


def replay(store: Target) -> list[Replayed]:
    """Apply every journal of `store` no live runner holds; delete each once applied."""
    done = []
    names = _names(store.label)  # one directory listing for the journals, copies and spools
    for path in pending(store.label, names=names):
        with taken(path) as fd:
            if fd is not None:
                done.append(_replay_one(store, path))
            elif path.exists():  # not vanished: another process holds it
                done.append(Replayed(path.stem, path, Applied(0, 0), 0, True, None))
    for path in pending(store.label, COPIES, names):
        if path.with_suffix(SUFFIX).exists():
            continue  # the run's journal first: its record lists these outputs
        with taken(path) as fd:
            if fd is not None and path.exists():
                done.append(_store_copies(store, path))
    _drop_orphan_spools(store.label, names)
    return done


def _drop_orphan_spools(store_label: str, names: list[str]) -> None:
    """Kept bytes no list points to: a runner died between keeping an output's bytes and
    writing their list (`keep_copies` runs while the run's journal is still there, so a spool
    with neither journal nor list is nobody's)."""
    folder = journals_dir(store_label)
    for name in names:
        stem, suffix = os.path.splitext(name)
        if suffix != ".files":
            continue
        if (folder / (stem + SUFFIX)).exists() or (folder / (stem + COPIES)).exists():
            continue
        import shutil

        shutil.rmtree(folder / name, ignore_errors=True)


def _store_copies(store: Target, path: Path) -> Replayed:
    """Store one run's pending artifacts; their list and bytes are deleted once stored."""
    run_id, copies = path.stem, list(read_entries(path, key="name"))
    try:
        counts = store.store_pending(run_id, copies)
    except RunnerError as exc:
        why = exc.message.splitlines()[0] if exc.message else "refused"
        return Replayed(run_id, path, Applied(0, 0), 0, False, None, why, (0, 0))
    import shutil  # only a replay with pending artifacts pays for it

    path.unlink()  # first: a crash now leaves only bytes nothing points to
    shutil.rmtree(path.with_suffix(".files"), ignore_errors=True)
    return Replayed(run_id, path, Applied(0, 0), 0, False, None, None, counts)


def _replay_one(store: Target, path: Path) -> Replayed:
    """Apply one locked journal; deleted once every entry is in the store."""
    run_id, torn = path.stem, _Torn()
    try:
        applied = store.apply_entries(run_id, read_entries(path, torn))
    except RunnerError as exc:
        why = exc.message.splitlines()[0] if exc.message else "refused"
        return Replayed(run_id, path, Applied(0, 0), torn.count, False, None, why)
    path.unlink()
    return Replayed(run_id, path, applied, torn.count, False, store.status_of(run_id))


class _Torn:
    count = 0


def read_entries(
    path: Path, torn: _Torn | None = None, key: str = "seq"
) -> Iterator[dict[str, Any]]:
    """Every whole entry of a journal (or a list of pending copies: `key` "name"), in
    order; a torn line (a crash mid-write) is counted in `torn` and skipped."""
    with open(path, "rb") as handle:
        for raw in handle:
            try:
                if not raw.endswith(b"\n"):
                    raise ValueError("no newline")
                entry = json.loads(raw)
                wanted = int if key == "seq" else str
                if not isinstance(entry, dict) or not isinstance(entry.get(key), wanted):
                    raise ValueError("not an entry")
            except ValueError:
                if torn is not None:
                    torn.count += 1
                continue
            yield entry


@contextlib.contextmanager
def taken(path: Path) -> Iterator[int | None]:
    """The journal's file locked for this process, or None if another process holds it (its
    live runner, or a replay) or it is gone (a replay applied it just now)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield fd
    finally:
        os.close(fd)


def pending(store_label: str, suffix: str = SUFFIX, names: list[str] | None = None) -> list[Path]:
    """The journals (or lists of pending copies) waiting for this store: one directory
    listing (or the `names` of one already made), nothing more."""
    folder = journals_dir(store_label)
    listed = _names(store_label) if names is None else names
    return sorted(folder / name for name in listed if name.endswith(suffix))


def _names(store_label: str) -> list[str]:
    try:
        return os.listdir(journals_dir(store_label))
    except FileNotFoundError:
        return []


def _spooled(spool: Path, copy: dict[str, Any]) -> dict[str, Any]:
    """`copy` with its bytes kept (and fsynced) under `spool`; from where it is if they
    changed since they were hashed (a replay then reports them changed)."""
    from runner.tracking.artifacts import ArtifactError, ObjectStore

    objects = ObjectStore(spool)
    try:
        digest = objects.put(Path(copy["from"]), copy["sha256"])
    except ArtifactError as exc:
        raise OSError(exc.message) from exc
    if digest != copy["sha256"]:
        return copy
    fd = os.open(objects.path_of(digest), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _sync_dir(objects.path_of(digest).parent)  # its name too: it was renamed into place
    return {**copy, "from": str(objects.path_of(digest))}


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
