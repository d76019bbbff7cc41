"""Headless Chromium from Debian, driven by Playwright's Python package (no browser
download: `playwright install` is never run; the system's /usr/bin/chromium is launched)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from support.services import require

CHROMIUM = "/usr/bin/chromium"
# No sandbox (tests run as root), and nothing that would reach the network on its own.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """A Playwright browser context on the system Chromium, with a fresh profile directory."""
    if not shutil.which(CHROMIUM):
        require("chromium", f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require("chromium", "the playwright package is missing (pip install -e '.[test]')")
    with sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=ARGS
        )
        try:
            yield context
        finally:
            context.close()
