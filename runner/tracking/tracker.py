"""Tracking around one run: capture inputs before, ingest events during, capture outputs after.

run.py calls `before`, `child_env`, `live` and `after` in that order; each returns the
record changes it produced, so run.py stays the one place that writes the record.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runner.tracking import events, lineage
from runner.tracking.artifacts import ArtifactError
from runner.tracking.capture import Capture, CapturePlan
from runner.tracking.client import client_dir
from runner.tracking.store import Store


class Tracker:
    """Automatic tracking of one run (see module docstring)."""

    def __init__(self, store: Store, run_id: str, plan: CapturePlan) -> None:
        self.store = store
        self.run_id = run_id
        self.plan = plan
        self.capture: Capture | None = None
        self.reader = events.EventReader(plan.run_dir / "events.jsonl", plan.workdir)

    def before(self, env_dir: Path | None) -> dict[str, Any]:
        """Snapshot the working dir, hash the inputs named up front; returns record changes."""
        if env_dir is not None:
            self.plan = self.plan._replace(excluded=(*self.plan.excluded, env_dir))
        self.capture = Capture(self.plan)
        return {"inputs": self.capture.before()}

    def child_env(self, env: dict[str, str]) -> dict[str, str]:
        """The child's environment with the client (and its sitecustomize) importable."""
        path = str(client_dir())
        existing = env.get("PYTHONPATH")
        env["PYTHONPATH"] = path + (os.pathsep + existing if existing else "")
        return env

    @contextmanager
    def live(self) -> Iterator[None]:
        """Ingest events while the child runs."""
        with events.live(self.reader, self.store, self.run_id):
            yield

    def after(self) -> dict[str, Any]:
        """Ingest the rest of the events, capture and store outputs; returns record changes."""
        with self.reader.lock:
            self.reader.poll()
            self.reader.flush(self.store, self.run_id)
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
            captured = self.capture.after(state.opened, state.artifacts)
        except ArtifactError:
            self.store.update_run(self.run_id, from_events)  # keep what the run logged
            raise
        lineage.link_inputs(self.store, self.run_id, captured.inputs)
        files = [{**i, "direction": "input"} for i in captured.inputs if i.get("kind") == "file"]
        files += [{**o, "direction": "output"} for o in captured.outputs]
        self.store.set_files(self.run_id, files)
        return {
            "inputs": captured.inputs,
            "outputs": captured.outputs,
            **from_events,
            "capture": {
                "warnings": captured.warnings,
                "stored_bytes": captured.stored_bytes,
                "bad_event_lines": state.bad_lines,
                "limit_bytes": self.plan.limit,
            },
        }
