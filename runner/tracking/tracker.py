"""Tracking around one run: capture inputs before, ingest events during, capture outputs after.

run.py calls `before`, `child_env`, `live` and `after` in that order. What they find is
written through the run's `RunRecord` (run_record.py), the one writer of the record: `before`
returns the inputs for `RunRecord.running`, `live` and `after` write through the record.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runner.errors import StoreError
from runner.tracking import events, lineage
from runner.tracking.artifacts import ArtifactError
from runner.tracking.capture import Capture, CapturePlan
from runner.tracking.client import client_dir
from runner.tracking.foreign import ForeignView
from runner.tracking.run_record import RunRecord


class Tracker:
    """Automatic tracking of one run (see module docstring)."""

    def __init__(self, record: RunRecord, plan: CapturePlan) -> None:
        self.record = record
        self.plan = plan
        self.capture: Capture | None = None
        self.reader = events.EventReader(plan.run_dir / "events.jsonl", plan.workdir)

    def before(self, env_dir: Path | None) -> list[dict[str, Any]]:
        """Snapshot the working dir, hash the inputs named up front; returns those inputs."""
        if env_dir is not None:
            self.plan = self.plan._replace(excluded=(*self.plan.excluded, env_dir))
        self.capture = Capture(self.plan)
        return self.capture.before()

    def foreign_view(self, view: Mapping[str, str] | None, remote: bool) -> None:
        """The command runs in a container (`view`: its paths of the run's directories) or on
        a cluster node (`remote`): paths in its events are read only inside those."""
        assert self.capture is not None, "before() was not called"
        if view is None and not remote:
            return
        plan = self.plan
        self.capture.view = ForeignView.of(view or {}, plan.workdir, plan.output_dir, plan.run_dir)

    def child_env(self, env: dict[str, str]) -> dict[str, str]:
        """The child's environment with the client (and its sitecustomize) importable."""
        path = str(client_dir())
        existing = env.get("PYTHONPATH")
        env["PYTHONPATH"] = path + (os.pathsep + existing if existing else "")
        env.update(self.record.store.child_settings())
        return env

    @contextmanager
    def live(self) -> Iterator[None]:
        """Ingest events while the child runs."""
        with self.record.live(self.reader):
            yield

    def after(self) -> None:
        """Ingest the rest of the events, capture outputs; the record gets both."""
        with self.reader.lock:
            self.record.ingest(self.reader)
        state = self.reader.state
        if state.bad_lines:
            print(
                f"warning: {state.bad_lines} malformed line(s) in {self.reader.path} were "
                f"skipped (first: {state.first_bad})",
                file=sys.stderr,
            )
        assert self.capture is not None, "before() was not called"
        from_events = self.reader.summary()
        try:
            captured = self.capture.after(state.opened, state.artifacts, state.stored)
        except ArtifactError:
            self.record.logged(from_events)  # keep what the run logged
            raise
        if not self.record.store_away:  # lineage is read from the store; it can wait
            with contextlib.suppress(StoreError):
                lineage.link_inputs(self.record.store, self.record.id, captured.inputs)
        self.record.captured(captured, from_events, state.bad_lines, self.plan.limit)
