"""mount(8) for tests that need a read-only or a tiny filesystem (the tests run as root)."""

from __future__ import annotations

import subprocess

from support.services import require


def mount(args: list[str]) -> None:
    """Run mount(8); skips (fails under CI) where mounting is not permitted."""
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        require("mount", f"mount {' '.join(args)} is not permitted here: {proc.stderr.strip()}")
