"""`require`: the one place that decides what a missing service means.

Locally a test whose service (dockerd, PostgreSQL, Ray, Slurm, sshd, ...) is missing is
skipped with the reason. Under CI (.ci/run sets CI=true and starts every service) a missing
service is a broken CI, so the test fails instead.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """True when the environment variable CI is set to anything but an explicit no."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(service: str, reason: str) -> NoReturn:
    """`service` is missing (`reason` says why): fail under CI, skip elsewhere."""
    message = f"{service}: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI: a required service is missing)")
    pytest.skip(message)
