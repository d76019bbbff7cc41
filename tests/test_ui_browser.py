"""`run-project ui` in a real browser (headless Chromium): click through the runs table, a
run and a comparison; curves render; hostile values stay text; a running run follows itself.

Screenshots are saved in each test's tmp directory (`*.png`) for a person to look at.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.browser import chromium
from support.cli import REPO
from support.ui import demo_project, fill_store, ui_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    root = tmp_path_factory.mktemp("ui-browser")
    store = root / "store"
    ids = fill_store(demo_project(root / "project"), str(store), root)
    with ui_server(str(store), root) as url:
        yield url, ids


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[tuple[Any, list[str]]]:
    """A page that records dialogs and console errors (a payload that ran would show)."""
    with chromium(tmp_path / "profile") as context:
        page = context.new_page()
        events: list[str] = []

        def on_dialog(dialog: Any) -> None:
            events.append("dialog " + dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda e: events.append(f"error {e}"))
        yield page, events


def pwned(page: Any) -> Any:
    return page.evaluate("() => window.__pwned")


def test_click_from_the_table_to_a_run_and_to_a_comparison(
    site: tuple[str, list[str]], browser: tuple[Any, list[str]], tmp_path: Path
) -> None:
    url, ids = site
    page, events = browser
    page.goto(url + "/")
    assert page.locator("#shown").inner_text().startswith("1 to 3 of 3 runs")
    page.click("text=param.lr")  # sort by lr, ascending
    assert page.locator("table.runs tbody tr").first.inner_text().find(ids[0][:8]) >= 0
    page.screenshot(path=str(tmp_path / "runs.png"), full_page=True)

    page.click(f"a[href='/runs/{ids[1]}']")
    page.wait_for_selector("#metrics svg path.curve")
    assert "trained 0.2" in page.locator("#log-stdout").inner_text()
    assert page.locator("#rerun").inner_text().startswith(f"run-project rerun {ids[1]}")
    curve = page.locator("#metrics path.curve").first.get_attribute("d")
    assert curve and curve.count("L") >= 40  # 50 points of loss, drawn
    assert page.locator("#metrics path.curve").first.bounding_box()["width"] > 300
    page.screenshot(path=str(tmp_path / "run.png"), full_page=True)

    page.goto(url + "/")
    for run_id in ids:
        page.check(f"input[value='{run_id}']")
    page.click("text=compare selected")
    page.wait_for_selector("tr.differs")
    assert "lr ≠" in page.locator("tr.differs").first.inner_text()
    assert page.locator("svg .curve").count() >= 6
    assert page.locator("svg circle.dot").count() == 3
    page.check("input[name=y][value=log]")  # submits on change
    page.wait_for_url("**y=log**")
    page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
    assert events == [] and pwned(page) is None


def test_hostile_values_show_as_text_and_run_nothing(
    site: tuple[str, list[str]], browser: tuple[Any, list[str]]
) -> None:
    url, ids = site
    page, events = browser
    page.goto(f"{url}/runs/{ids[0]}")
    text = page.locator("main").inner_text()
    assert "<script>window.__pwned=1</script>" in text  # the declared param, literally
    assert "<img src=x onerror=window.__pwned=2>" in text  # the tag
    assert "\"'><svg onload=window.__pwned=3>" in text  # the logged param
    page.goto(f"{url}/runs/{ids[0]}/files/outputs/")
    assert "<img src=x onerror=window.__pwned=4>.txt" in page.locator("main").inner_text()
    page.goto(f"{url}/?param=note%3D%3Cscript%3Ewindow.__pwned%3D5%3C/script%3E")
    page.goto(f"{url}/compare?runs={','.join(ids)}")
    page.goto(f"{url}/lineage?run={ids[0]}")
    assert pwned(page) is None and events == []
    assert page.locator("script:not([src])").count() == 0


def test_traversal_through_the_artifact_route_finds_nothing(
    site: tuple[str, list[str]], browser: tuple[Any, list[str]]
) -> None:
    url, ids = site
    page, _ = browser
    for name in ("../../runs.db", "..%2f..%2fruns.db", "%2e%2e%2f%2e%2e%2fruns.db"):
        answer = page.request.get(f"{url}/runs/{ids[0]}/files/{name}")
        assert answer.status == 404


def test_a_running_run_page_follows_its_log_and_status(
    tmp_path: Path, browser: tuple[Any, list[str]]
) -> None:
    store = tmp_path / "store"
    project = demo_project(tmp_path / "project")
    gate = tmp_path / "gate"
    env = {"PYTHONPATH": str(REPO)}
    run = subprocess.Popen(
        [sys.executable, "-m", "runner", str(project), "-e", "wait", "-P", f"gate={gate}",
         "-q", "--store", str(store)], cwd=tmp_path, env={**os.environ, **env},
    )  # fmt: skip
    page, events = browser
    try:
        deadline = time.monotonic() + 60
        while not (store / "runs.db").exists():
            assert time.monotonic() < deadline and run.poll() is None, "the run made no store"
            time.sleep(0.1)
        with ui_server(str(store), tmp_path) as url:
            page.goto(url + "/?status=RUNNING")
            deadline = time.monotonic() + 60
            while page.locator("td.status-RUNNING").count() == 0:
                assert time.monotonic() < deadline, "the run never showed as RUNNING"
                page.reload()
            page.click("td.id a")
            page.wait_for_selector("#log-stdout:has-text('first line')", timeout=30_000)
            gate.write_text("open")  # the run prints its second line ...
            page.wait_for_selector("#log-stdout:has-text('second line')", timeout=30_000)
            gate.unlink()  # ... and ends: the page shows it without a reload
            page.wait_for_selector("td:text-is('FINISHED')", timeout=30_000)
            page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGINT)  # the runner records KILLED and ends its command
        run.wait(timeout=60)
    assert events == []
