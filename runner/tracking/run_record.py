"""The one owner of a run's record: every write to the store about a run goes through here.

A run's record moves through fixed steps, each a method:

    new ─create()─▶ STARTING ─running()─▶ RUNNING ─close()─▶ FINISHED | FAILED | KILLED
                        └──────────────────close()────────────────────▶ (a failed build)

While RUNNING: `backend_job()`, the event ingestion (`live()`, `ingest()`, `logged()`) and
`captured()`; from STARTING on, `heartbeat()` beats from a thread. A closed run may get a
rerun's `verdict()`. A step out of order raises `RecordStateError`: a bug, not a user error.

The stored document (schemas/run-record.schema.json) is kept here as the last state written;
callers pass typed values and never touch its keys. Every change to it passes `_write`, the
place where the next issue's write-ahead journal goes (append the change, then apply it).
Heartbeats (a column, not the document) and the metric/param/tag/file tables are written by
their own methods here, the only writers of those rows for a run. One write is not the
owner's, by design: `Store.sweep_lost` closes as LOST a run whose runner died.

With RUN_PROJECT_CHECK_RECORDS set (the tests set it), each state written is checked
against the schema; see `_check`. A real run never imports jsonschema.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import RunnerError
from runner.tracking.periodic import every
from runner.tracking.record import FINAL, iso, new_record, project_relative
from runner.tracking.store import Store
from runner.tracking.tables import BATCH

if TYPE_CHECKING:
    from runner.tracking.capture import Captured
    from runner.tracking.events import EventReader

CHECK_RECORDS = "RUN_PROJECT_CHECK_RECORDS"
EVENTS_SECONDS = 1.0  # how often a running run's events are read into the store

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
        return cls(store, document, NEW)

    @classmethod
    def imported(cls, store: Store, document: dict[str, Any], events: Path) -> RunRecord:
        """A closed run from another store (`runs import`): its record as it was, then its
        metric points, logged params and tags from its events file, and its files (lineage)."""
        if document.get("status") not in FINAL:
            raise RunnerError(f"run {document.get('id')} had not ended when it was exported",
                              "export it again once it has ended")  # fmt: skip
        record = cls(store, dict(document), NEW)
        record._write(record._doc, insert=True)
        record._state = CLOSED
        from runner.tracking.events import EventReader

        reader = EventReader(events, Path(str(document["source"]["path"])))
        with reader.lock:
            record.ingest(reader)
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

    def document(self) -> dict[str, Any]:
        """The record as last written (a copy at the top level)."""
        return dict(self._doc)

    # -- the steps ------------------------------------------------------------------------
    def create(self) -> None:
        """Store the new record (STARTING): before any slow step, so any failure is recorded."""
        self._require("create", NEW)
        self._write(self._doc, insert=True)
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
        """The job the backend started (its id, where it runs)."""
        self._require("backend_job", RUNNING)
        self._write({"backend_job": info})

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
        files = [{**i, "direction": "input"} for i in result.inputs if i.get("kind") == "file"]
        files += [{**o, "direction": "output"} for o in result.outputs]
        self._store.set_files(self.id, files)
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
                },
            }
        )

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
            with reader.lock, contextlib.suppress(RunnerError):  # the final pass retries
                if self.ingest(reader, mine) and self._state == RUNNING:
                    self._write(reader.summary(), mine)  # `runs show` sees progress

        with every(interval, tick, name="events", join_seconds=30, done=mine.close):
            yield

    def ingest(self, reader: EventReader, store: Store | None = None) -> bool:
        """Read new events (hold `reader.lock`) and write their metric points, params and
        tags; whether there were new lines. Points leave memory only once committed."""
        before = reader.line_no
        reader.poll()
        state, target = reader.state, store or self._store
        while state.pending_points:
            chunk = state.pending_points[:BATCH]
            target.add_metrics(self.id, chunk)
            del state.pending_points[: len(chunk)]
        if state.pending_pairs:
            state.pending_pairs = False
            target.set_pairs("logged_params", self.id, state.params)
            target.set_pairs("tags", self.id, state.tags)
        return reader.line_no != before

    # -- the seam -------------------------------------------------------------------------
    def _write(
        self, changes: dict[str, Any], store: Store | None = None, *, insert: bool = False
    ) -> None:
        """Every change to the stored document passes here: the whole record on insert, else
        a merge of top-level keys. The write-ahead journal (next issue) goes here: append
        `changes` durably first, then apply them."""
        target = store or self._store
        with self._lock:
            if insert:
                _check(changes)
                target.create_run(changes)
                self._doc = changes
            else:
                self._doc = target.update_run(self.id, changes)
                _check(self._doc)

    def _require(self, step: str, *states: str) -> None:
        if self._state not in states:
            raise RecordStateError(f"run record {self.id[:8]}: {step}() when {self._state}")


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
