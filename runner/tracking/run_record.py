"""The one owner of a run's record: every write to the store about a run goes through here.

A run's record moves through fixed steps, each a method:

    new ─create()─▶ STARTING ─running()─▶ RUNNING ─close()─▶ FINISHED | FAILED | KILLED
                        └──────────────────close()────────────────────▶ (a failed build)

While RUNNING: `backend_job()`, the event ingestion (`live()`, `ingest()`, `logged()`) and
`captured()`; from STARTING on, `heartbeat()` beats from a thread. A closed run may get a
rerun's `verdict()`. A step out of order raises `RecordStateError`: a bug, not a user error.

The stored document (schemas/run-record.schema.json) is kept here as the last state written;
callers pass typed values and never touch its keys. Every change of the run, the document's
(`_write`) and its metric points, params, tags and files (`ingest`, `captured`), is appended
to the run's write-ahead journal first (journal.py, fsynced) and then applied to the store
from it (`_apply`). A store that stops answering is given up for the rest of the run: one line
says so and where the results are kept, the run goes on, and the journal reaches the store at
the close or at the next command that opens it (`Store.replay_journals`). Heartbeats (a
column: liveness, not results) go straight to the store. One write is not the owner's, by
design: `Store.sweep_lost` closes as LOST a run whose runner died; the run's journal, when it
arrives, gives it its real outcome.

With RUN_PROJECT_CHECK_RECORDS set (the tests set it), each state written is checked
against the schema; see `_check`. A real run never imports jsonschema.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import RunnerError
from runner.tracking.journal import Journal, read_entries
from runner.tracking.periodic import every
from runner.tracking.record import FINAL, iso, new_record, project_relative
from runner.tracking.store import Store
from runner.tracking.tables import BATCH

if TYPE_CHECKING:
    from runner.tracking.capture import Captured
    from runner.tracking.events import EventReader

CHECK_RECORDS = "RUN_PROJECT_CHECK_RECORDS"
EVENTS_SECONDS = 1.0  # how often a running run's events are read into the store
RETRY_AWAY_SECONDS = 10.0  # how often a run tries again a store that stopped answering

# The steps of a record owned by this process; a loaded record of another runner is FOREIGN.
NEW, STARTING, RUNNING, CLOSED, FOREIGN = "new", "starting", "running", "closed", "foreign"


class RecordStateError(RuntimeError):
    """A record step called out of order (close twice, running before create...)."""


class RecordSchemaError(RuntimeError):
    """A record state that violates schemas/run-record.schema.json (raised under tests only)."""


class RunRecord:
    """One run's record and every write about it (see module docstring)."""

    def __init__(self, store: Store, document: dict[str, Any], state: str) -> None:
        """Use `RunRecord.new` or `RunRecord.load`."""
        self._store = store
        self._doc = document
        self._state = state
        self._lock = threading.Lock()  # the events thread and the main thread both write
        self._journal: Journal | None = None  # from create() to close(); None for a loaded run
        self._queue: list[dict[str, Any]] = []  # journaled, not yet in the store (in order)
        self._applying = threading.Lock()  # entries reach the store in journal order
        self._away: str | None = None  # why the store stopped answering: journal only
        self._journal_failed = False
        self._next_try = 0.0  # when to try a store that went away again (monotonic)

    @classmethod
    def new(
        cls,
        store: Store,
        *,
        experiment: str,
        run_name: str | None,
        source: dict[str, Any],
        entry_point: str,
        template: str,
        argv: Sequence[str],
        shell: bool,
        params: Mapping[str, Mapping[str, Any]],
        env_kind: str,
        backend: str,
        backend_config: Mapping[str, Any],
        heartbeat_seconds: float,
        rerun_of: str | None = None,
        carried: Sequence[str] = (),
    ) -> RunRecord:
        """The record of a run about to start; not stored until `create()`.

        `backend_config` must already be redacted (a rerun reuses it; credentials are never
        stored). A rerun names the run it repeats and the parameters `carried` from it."""
        copied = {name: dict(entry) for name, entry in params.items()}
        for entry in copied.values():
            inside = entry["type"] == "path" and project_relative(
                str(entry["value"]), str(source.get("path", ""))
            )
            if inside:
                entry["relative_path"] = inside
        for name in carried:
            copied[name]["source"] = "rerun"
        document = new_record(
            experiment=experiment,
            run_name=run_name,
            source=source,
            entry_point=entry_point,
            command={"template": template, "argv": list(argv), "shell": shell},
            params=copied,
            env={"kind": env_kind},
            backend=backend,
            heartbeat_seconds=heartbeat_seconds,
        )
        document["backend_config"] = dict(backend_config)
        if rerun_of:
            document["rerun_of"] = rerun_of
        parent = parent_run_id()
        if parent:
            document["parent_run"] = parent
        return cls(store, document, NEW)

    @classmethod
    def imported(cls, store: Store, document: dict[str, Any], events: Path) -> RunRecord:
        """A closed run from another store (`runs import`): its record as it was, then its
        metric points, logged params and tags from its events file, and its files (lineage)."""
        if document.get("status") not in FINAL:
            raise RunnerError(f"run {document.get('id')} had not ended when it was exported",
                              "export it again once it has ended")  # fmt: skip
        record = cls(store, dict(document), CLOSED)
        _check(record._doc)
        # Closed already, so no journal: the store is written directly (an import cut short
        # is simply done again; it copies over what it left).
        store.create_run(record._doc)
        from runner.tracking.events import EventReader

        reader = EventReader(events, Path(str(document["source"]["path"])))
        with reader.lock:
            reader.poll()
            state = reader.state
            if state.pending_points:
                store.add_metrics(record.id, state.pending_points)
            for table, pairs in (("logged_params", state.params), ("tags", state.tags)):
                if pairs:
                    store.set_pairs(table, record.id, dict(pairs))
        files = [{**i, "direction": "input"} for i in document.get("inputs") or []
                 if i.get("kind") == "file"]  # fmt: skip
        files += [{**o, "direction": "output"} for o in document.get("outputs") or []]
        store.set_files(record.id, files)
        return record

    @classmethod
    def load(cls, store: Store, run_id: str) -> RunRecord:
        """A stored run (id or unique prefix), to read or to give a verdict once closed."""
        document = store.get_run(run_id)
        return cls(store, document, CLOSED if document["status"] in FINAL else FOREIGN)

    # -- reading --------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return str(self._doc["id"])

    @property
    def store(self) -> Store:
        """The store, for reads (lineage); writes go through this object's methods."""
        return self._store

    @property
    def run_dir(self) -> Path:
        """Where the run's logs, events and artifacts live."""
        return self._store.artifact_dir(self.id)

    @property
    def backend_config(self) -> dict[str, Any]:
        """The recorded (redacted) --backend-config."""
        return dict(self._doc.get("backend_config") or {})

    @property
    def heartbeat_seconds(self) -> float:
        return float(self._doc["runner"]["heartbeat_seconds"])

    @property
    def store_away(self) -> bool:
        """Whether the store stopped answering during this run (the journal keeps it all)."""
        return self._away is not None

    def document(self) -> dict[str, Any]:
        """The record as last written (a copy at the top level)."""
        return dict(self._doc)

    # -- the steps ------------------------------------------------------------------------
    def create(self) -> None:
        """Store the new record (STARTING): before any slow step, so any failure is recorded."""
        self._require("create", NEW)
        _check(self._doc)
        self._store.catch_up()  # earlier runs' results first
        self._store.make_run_dir(self.id)
        try:
            self._journal = Journal.start(self._store.label, self.id)
        except OSError as exc:  # no state directory: the store alone, as before journals
            self._journal = Journal.unbacked(self._store.label, self.id)
            self._say_journal_failed(exc)
        self._journal_entry("create", {"record": self._doc})
        try:  # a run that cannot be recorded at all does not start
            self._apply(self._store, strict=True)
        except RunnerError:
            self._journal.remove()
            raise
        self._state = STARTING

    def running(
        self,
        inputs: list[dict[str, Any]],
        env: dict[str, Any],
        launch_argv: Sequence[str],
        logs: Mapping[str, str],
    ) -> None:
        """The environment is ready and the command is about to start (RUNNING)."""
        self._require("running", STARTING)
        self._write(
            {
                "inputs": inputs,
                "status": "RUNNING",
                "env": env,
                "launch_argv": list(launch_argv),
                "logs": dict(logs),
            }
        )
        self._state = RUNNING

    def backend_job(self, info: dict[str, Any]) -> None:
        """The job the backend started (its id, where it runs). A `launch_argv` in it is the
        argv as the backend ran it (a cluster's interpreter), and replaces this machine's."""
        self._require("backend_job", RUNNING)
        info = dict(info)
        ran = info.pop("launch_argv", None)
        self._write({"backend_job": info, **({"launch_argv": list(ran)} if ran else {})})

    def logged(self, summary: dict[str, Any]) -> None:
        """What the run logged so far (metrics, logged_params, tags: `EventReader.summary`)."""
        self._require("logged", RUNNING)
        self._write(summary)

    def captured(
        self, result: Captured, summary: dict[str, Any], bad_event_lines: int, limit_bytes: int
    ) -> None:
        """Inputs and outputs after the run (also in the files table, for lineage), what it
        logged, and how the capture went."""
        self._require("captured", RUNNING)
        if result.pending:
            self._keep_pending(result)
        files = [{**i, "direction": "input"} for i in result.inputs if i.get("kind") == "file"]
        files += [{**o, "direction": "output"} for o in result.outputs]
        self._journal_entry("files", {"files": files})
        self._write(
            {
                "inputs": result.inputs,
                "outputs": result.outputs,
                **summary,
                "capture": {
                    "warnings": result.warnings,
                    "stored_bytes": result.stored_bytes,
                    "bad_event_lines": bad_event_lines,
                    "limit_bytes": limit_bytes,
                    **({"noise": {"files": result.noise_files}} if result.noise_files else {}),
                },
            }
        )

    def _keep_pending(self, result: Captured) -> None:
        """Outputs the artifacts' disk refused wait beside the journal for a replay to store
        them; the run goes on to its own outcome, and one line says where they are."""
        head = (
            f"{len(result.pending)} output(s) of run {self.id[:8]} could not be stored in "
            f"{self._store.artifacts_root} ({result.refused})"
        )
        try:
            if self._journal is None:
                raise OSError("the run has no journal")
            root = str(self._store.artifacts_root)
            copies = [{**copy, "root": root} for copy in result.pending]
            where = self._journal.keep_copies(copies, self.run_dir)
            line = (
                f"{head}; they are kept in {where} and reach the store at the next run-project "
                "command that opens it (or `run-project runs sync`)"
            )
        except OSError as exc:
            for output in result.outputs:
                output.pop("pending", None)
            line = f"{head}; they could not be kept either ({exc}): only where the run wrote them"
        result.warnings.append(line)
        print(f"run-project: {line}", file=sys.stderr, flush=True)

    def close(self, status: str, exit_code: int | None, reason: str | None) -> None:
        """The run ended (FINISHED, FAILED or KILLED), once."""
        self._require("close", STARTING, RUNNING)
        self._state = CLOSED  # before writing: a failed write is not retried by a second close
        self._write(
            {
                "status": status,
                "exit_code": exit_code,
                "reason": reason,
                "end_time": iso(time.time()),
            }
        )
        self._finish_journal()

    def verdict(self, verdict: dict[str, Any]) -> None:
        """A rerun's comparison with the run it repeats (rerun/inputs.compare_outputs)."""
        self._require("verdict", CLOSED)
        self._write({"rerun_verdict": verdict})

    # -- threads --------------------------------------------------------------------------
    @contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Beat from a thread with its own connection, through builds and the run alike."""
        self._require("heartbeat", STARTING, RUNNING)
        mine = self._store.reopen()

        def beat() -> None:
            with contextlib.suppress(RunnerError):  # a missed beat is retried; LOST needs 3
                mine.heartbeat(self.id)

        with every(self.heartbeat_seconds, beat, name="heartbeat", join_seconds=5, done=mine.close):
            yield

    @contextmanager
    def live(self, reader: EventReader, interval: float = EVENTS_SECONDS) -> Iterator[None]:
        """Ingest the run's events from a thread (its own connection) while it runs."""
        self._require("live", RUNNING)
        mine = self._store.reopen()

        def tick() -> None:
            with reader.lock:  # journaled here; the store write below does not hold the reader
                if self._journal_events(reader) and self._state == RUNNING:
                    # A copy: the store write below runs while the reader goes on counting.
                    self._journal_update(copy.deepcopy(reader.summary()))  # for `runs show`
            self._apply(mine)

        with every(interval, tick, name="events", join_seconds=30, done=mine.close):
            yield

    def ingest(self, reader: EventReader, store: Store | None = None) -> bool:
        """Read new events (hold `reader.lock`), journal their metric points, params and tags,
        and write them to the store; whether there were new lines."""
        new = self._journal_events(reader)
        self._apply(store or self._store)
        return new

    def _journal_events(self, reader: EventReader) -> bool:
        """Read new events into the journal; points leave memory only once journaled."""
        before = reader.line_no
        reader.poll()
        state = reader.state
        while state.pending_points:
            chunk = state.pending_points[:BATCH]
            self._journal_entry("metrics", {"points": chunk}, points=len(chunk))
            del state.pending_points[: len(chunk)]
        if state.pending_pairs:
            state.pending_pairs = False
            # Each entry is the whole set: a tag deleted since the last one leaves the store.
            for table, pairs in (("logged_params", state.params), ("tags", state.tags)):
                self._journal_entry("pairs", {"table": table, "pairs": dict(pairs)})
        return reader.line_no != before

    # -- the journal, then the store ------------------------------------------------------
    def _write(self, changes: dict[str, Any], store: Store | None = None) -> None:
        """Every change to the stored document passes here: a merge of top-level keys,
        journaled, then applied to the store."""
        if self._journal is None:  # a loaded run (a rerun's verdict) or after the close
            with self._lock:
                self._doc = (store or self._store).update_run(self.id, changes)
                _check(self._doc)
            return
        self._journal_update(changes)
        self._apply(store or self._store)

    def _journal_update(self, changes: dict[str, Any]) -> None:
        with self._lock:
            doc = {**self._doc, **changes}
            _check(doc)
            self._doc = doc
        self._journal_entry("update", {"changes": changes})

    def _journal_entry(self, op: str, body: dict[str, Any], *, points: int = 0) -> None:
        """Append one entry durably and queue it for the store, in order."""
        with self._lock:
            if self._journal is None:  # a late events tick after the close: the record is final
                return
            try:
                entry = self._journal.append(op, body, points=points)
            except OSError as exc:
                entry = self._journal.unwritten(op, body)
                self._say_journal_failed(exc)
            if self._away is None:
                self._queue.append(entry)

    def _apply(self, store: Store, *, strict: bool = False) -> None:
        """Write the queued entries to the store, in journal order. A store that refuses is
        given up for the rest of the run (the journal keeps everything); `strict` raises."""
        with self._applying:
            if self._away is not None and time.monotonic() >= self._next_try:
                self._come_back()
            with self._lock:
                batch, self._queue = self._queue, []
            if not batch or self._away is not None:
                return
            try:
                store.apply_entries(self.id, batch)
            except RunnerError as exc:
                if strict:
                    raise
                self._went_away(exc)

    def _come_back(self) -> bool:
        """Try the store again without waiting, from the journal file (hold `_applying`):
        whether it took every entry so far. Entries appended from now on are queued (they
        are also in the file read below: the store applies each once)."""
        journal, reason = self._journal, self._away
        if journal is None or reason is None:
            return False
        self._next_try = time.monotonic() + RETRY_AWAY_SECONDS
        with self._lock:
            self._away = None
        quick = self._store.reopen()
        quick.db.reconnect_seconds = 0
        try:
            quick.apply_entries(self.id, read_entries(journal.path))
        except RunnerError:
            with self._lock:
                self._away = reason
                self._queue.clear()
            return False
        finally:
            quick.close()
        print(f"run-project: the run store answers again; run {self.id[:8]} writes to it again",
              file=sys.stderr, flush=True)  # fmt: skip
        return True

    def _went_away(self, exc: RunnerError) -> None:
        with self._lock:
            first = exc.message.splitlines()[0] if exc.message else "no answer"
            self._away = first.removeprefix(f"run store {self._store.label}: ")
            self._queue.clear()
        self._next_try = time.monotonic() + RETRY_AWAY_SECONDS
        where = self._journal.path if self._journal else "its run directory"
        print(
            f"run-project: the run store {self._store.label} stopped answering ({self._away}); "
            f"run {self.id[:8]} goes on, its results are kept in {where} and reach the store "
            "at the next run-project command that opens it (or `run-project runs sync`)",
            file=sys.stderr,
            flush=True,
        )

    def _say_journal_failed(self, exc: OSError) -> None:
        if not self._journal_failed:
            self._journal_failed = True
            print(
                f"run-project: cannot write the journal of run {self.id[:8]} ({exc}); its "
                "results go to the run store only",
                file=sys.stderr,
                flush=True,
            )

    def _finish_journal(self) -> None:
        """After the close: a journal fully in the store is deleted. After the store went
        away, one more try without waiting (it may be back); else the journal waits for the
        next command that opens the store."""
        journal = self._journal
        if journal is None:
            return
        with self._applying:
            back = self._away is None or (not self._journal_failed and self._come_back())
            self._journal = None  # late writes (a rerun's verdict) go to the store directly
        if back:  # every entry is in the store
            journal.remove()
        else:
            journal.close()
            self._say_unjournaled(journal)

    def _say_unjournaled(self, journal: Journal) -> None:
        if journal.dropped_points:
            print(
                f"run-project: {journal.dropped_points} metric points of run {self.id[:8]} "
                f"passed the journal's limit ({journal.limit} bytes, RUN_PROJECT_JOURNAL_LIMIT) "
                f"and are only in {self.run_dir / 'events.jsonl'}",
                file=sys.stderr,
                flush=True,
            )

    def _require(self, step: str, *states: str) -> None:
        if self._state not in states:
            raise RecordStateError(f"run record {self.id[:8]}: {step}() when {self._state}")


def parent_run_id() -> str | None:
    """The run this runner was started from inside, if any: RUN_PROJECT_PARENT_RUN_ID when
    set (a launcher naming the parent), else RUN_PROJECT_RUN_ID, which every run's command
    inherits (docs/tracking.md#workflows). Only a well-formed run id is kept."""
    for name in ("RUN_PROJECT_PARENT_RUN_ID", "RUN_PROJECT_RUN_ID"):
        value = os.environ.get(name, "").strip().lower()
        if value:
            return (
                value if len(value) == 32 and all(c in "0123456789abcdef" for c in value) else None
            )
    return None


def _check(document: dict[str, Any]) -> None:
    """Under tests (RUN_PROJECT_CHECK_RECORDS set), raise if the state written violates the
    schema; a value that is a path also gets the violation appended, so the test that ran
    this process fails even when the error is swallowed (a thread, an expected failure)."""
    target = os.environ.get(CHECK_RECORDS)
    if not target:
        return
    from runner.project.schemas import schema_errors

    errors = schema_errors("run-record", document)
    if not errors:
        return
    where = [f"{'/'.join(map(str, e.path)) or '(record)'}: {e.message}" for e in errors[:5]]
    text = f"run record {document.get('id')} violates run-record.schema.json: " + "; ".join(where)
    if os.path.isabs(target):
        with open(target, "a") as out:
            out.write(text + "\n")
    raise RecordSchemaError(text)
