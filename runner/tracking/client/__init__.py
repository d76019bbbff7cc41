"""The zero-dependency client put on a run's PYTHONPATH (`import run_project_client as rp`).

`client_dir()` is the directory to put there; it also holds a `sitecustomize.py` that installs
the file-capture audit hook and then runs any sitecustomize the environment already had.
"""

from __future__ import annotations

from pathlib import Path


def client_dir() -> Path:
    """The directory holding run_project_client.py and sitecustomize.py."""
    return Path(__file__).resolve().parent
