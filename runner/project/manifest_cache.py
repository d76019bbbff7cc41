"""Parsed YAML (MLproject, python_env) kept as JSON by content hash: a warm run skips PyYAML.

An MLproject's entry is written once it passed the schema check (beside manifest.py's
`.valid` marker), a python_env file's once it parsed; checks on the value still run every
time. The same bytes always parse to the same Document, so reading the entry back is
equivalent to parsing again. A missing, unreadable or damaged entry is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from runner import settings
from runner.errors import RunnerError
from runner.project.yamlsafe import MAX_BYTES, Document


def _entry(data: bytes) -> Path | None:
    try:
        root = settings.cache_dir()
    except RunnerError:
        return None
    return root / "manifests" / f"{hashlib.sha256(data).hexdigest()}.json"


def load(manifest: Path) -> Document | None:
    """The Document cached for the manifest's current bytes, or None."""
    try:
        if os.stat(manifest).st_size > MAX_BYTES:
            return None  # the parser gives the error
        entry = _entry(manifest.read_bytes())
        if entry is None:
            return None
        saved = json.loads(entry.read_text())
        return Document(
            path=manifest,
            value=saved["value"],
            lines={tuple(path): line for path, line in saved["lines"]},
            raw={tuple(path): text for path, text in saved["raw"]},
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(doc: Document) -> None:
    """Keep a validated Document (atomically: a reader never sees half an entry)."""
    try:
        entry = _entry(doc.path.read_bytes())
        if entry is None:
            return
        text = json.dumps(
            {
                "value": doc.value,
                "lines": [[list(path), line] for path, line in doc.lines.items()],
                "raw": [[list(path), raw] for path, raw in doc.raw.items()],
            }
        )
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = entry.with_name(f"{entry.name}.{os.getpid()}.tmp")
        staging.write_text(text)
        os.replace(staging, entry)
    except (OSError, TypeError, ValueError):
        pass  # a cache that cannot be written only costs the next run a parse
