"""Finds and validates against the JSON schemas in the top-level `schemas/` directory.

The schemas are the one source of truth. From a source checkout (or an editable install) they
are read beside the package; a regular install puts them under `<prefix>/share/run-project/`.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

from runner.errors import RunnerError


def schema_dir() -> Path:
    """The directory holding `*.schema.json`."""
    candidates = [
        Path(__file__).resolve().parents[2] / "schemas",
        Path(sys.prefix) / "share" / "run-project" / "schemas",
    ]
    for candidate in candidates:
        if (candidate / "manifest.schema.json").is_file():
            return candidate
    raise RunnerError(
        "run-project's schema files are missing",
        "reinstall run-project (pip install run-project) so share/run-project/schemas exists",
    )


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema `schemas/<name>.schema.json`."""
    data: dict[str, Any] = json.loads((schema_dir() / f"{name}.schema.json").read_text())
    return data


def schema_errors(name: str, document: Any) -> list[Any]:
    """All jsonschema validation errors of `document` against schema `name`, best first."""
    import jsonschema  # imported here: 70 ms that a cached, already-valid manifest never pays

    validator = jsonschema.Draft202012Validator(load_schema(name))
    return sorted(validator.iter_errors(document), key=lambda e: (len(e.path), str(e.path)))
