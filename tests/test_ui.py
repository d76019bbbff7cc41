"""`run-project ui` over HTTP: pages, 404s, escaping, confinement of files, headers, binding.

The browser tests (clicks, rendering, scripts that must not run) are in test_ui_browser.py.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from support.cli import REPO, cli
from support.ui import ATTR, FILE_NAME, IMG, SCRIPT, demo_project, fill_store, ui_server

pytestmark = pytest.mark.slow  # each module fixture makes three real runs


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, list[str]]]:
    root = tmp_path_factory.mktemp("ui")
    store = root / "store"
    ids = fill_store(demo_project(root / "project"), str(store), root)
    with ui_server(str(store), root) as url:
        yield url, store, ids


def get(url: str, path: str, host: str | None = None) -> tuple[int, dict[str, str], str]:
    """A raw GET: the path is sent exactly as given (no client-side normalising)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    conn.putrequest("GET", path, skip_host=host is not None)
    if host is not None:
        conn.putheader("Host", host)
    conn.endheaders()
    answer = conn.getresponse()
    body = answer.read().decode("utf-8", "replace")
    conn.close()
    return answer.status, {k.lower(): v for k, v in answer.getheaders()}, body


def test_runs_table_lists_sorts_and_filters(site: tuple[str, Path, list[str]]) -> None:
    url, _, ids = site
    status, _headers, body = get(url, "/?sort=-param.lr")
    assert status == 200
    assert body.index(ids[2][:8]) < body.index(ids[1][:8]) < body.index(ids[0][:8])
    _, _, filtered = get(url, "/?param=lr%3E0.15&sort=param.lr")
    assert (
        ids[0][:8] not in filtered
        and ids[1][:8] in filtered
        and "1 to 2 of the matching runs" in filtered
    )
    assert 'rel="next"' not in filtered
    _, _, paged = get(url, "/?per=1&page=2")
    assert ids[1][:8] in paged and ids[0][:8] not in paged and "page 2 of 3" in paged
    assert 'rel="next"' in paged and 'rel="prev"' in paged


def test_a_bad_filter_is_explained_on_the_page(site: tuple[str, Path, list[str]]) -> None:
    status, _, body = get(site[0], "/?param=%3C%3E")
    assert status == 400 and "is not a condition" in body and "NAME&gt;VALUE" in body


def test_unknown_run_and_page_are_404(site: tuple[str, Path, list[str]]) -> None:
    url = site[0]
    assert get(url, "/runs/0123456789abcdef")[0] == 404
    assert get(url, "/runs/not-hex")[0] == 404
    assert get(url, "/nowhere")[0] == 404
    assert get(url, "/compare?runs=ffff0000")[0] == 404


def test_run_page_shows_everything_and_hostile_values_as_text(
    site: tuple[str, Path, list[str]],
) -> None:
    url, _, ids = site
    status, _headers, body = get(url, f"/runs/{ids[0]}")
    assert status == 200
    for section in ("parameters", "metrics", "tags", "inputs", "outputs", "environment",
                    "source", "logs"):  # fmt: skip
        assert f'<section id="{section}">' in body
    assert f"run-project rerun {ids[0]}" in body
    assert "uncommitted changes" in body and "+# an uncommitted edit" in body
    assert "<path d=" in body  # the loss curve
    for payload in (SCRIPT, IMG, ATTR, FILE_NAME):
        assert payload not in body  # never as markup ...
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in body  # ... always as text
    assert "&lt;img src=x onerror=window.__pwned=2&gt;" in body


def test_headers_forbid_inline_scripts_and_network_assets(
    site: tuple[str, Path, list[str]],
) -> None:
    _, headers, body = get(site[0], "/")
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert "http://" not in body.replace(site[0], "") and "https://" not in body


def test_compare_marks_differences_and_draws_each_metric(
    site: tuple[str, Path, list[str]],
) -> None:
    url, _, ids = site
    status, _, body = get(url, f"/compare?runs={','.join(ids)}&y=log&smooth=0.6&x=time")
    assert status == 200
    assert '<tr class="differs"><th>lr ≠</th>' in body
    assert body.count('class="curve') >= 6  # loss and acc, three runs each
    assert "loss by lr" in body  # three runs: the param-versus-metric view
    chosen = get(url, f"/compare?runs={','.join(ids)}&param=lr&metric=acc")[2]
    assert "acc by lr" in chosen and chosen.count('class="dot"') == 3


def test_lineage_links_a_run_to_its_outputs(site: tuple[str, Path, list[str]]) -> None:
    url, _, ids = site
    status, _, body = get(url, f"/lineage?run={ids[0]}")
    assert status == 200 and "workdir/model.txt" in body
    assert get(url, "/lineage?sha256=nothex")[0] == 400


@pytest.mark.parametrize(
    "name",
    [
        "../../runs.db",
        "..%2f..%2fruns.db",
        "%2e%2e/%2e%2e/runs.db",
        "%252e%252e%252f%252e%252e%252fruns.db",
        "workdir/..%2f..%2f..%2fruns.db",
        "..%5c..%5cruns.db",
        "%2fetc%2fpasswd",
        "logs/%00stdout.log",
    ],
)
def test_artifact_paths_never_leave_the_run(site: tuple[str, Path, list[str]], name: str) -> None:
    url, _, ids = site
    status, _, body = get(url, f"/runs/{ids[0]}/files/{name}")
    assert status == 404, body
    assert "SQLite" not in body and "root:" not in body


def test_a_symlink_out_of_the_run_is_refused(site: tuple[str, Path, list[str]]) -> None:
    url, store, ids = site
    link = store / "artifacts" / ids[1] / "escape"
    link.symlink_to(store / "runs.db")
    assert get(url, f"/runs/{ids[1]}/files/escape")[0] == 404


def test_files_download_as_attachments(site: tuple[str, Path, list[str]]) -> None:
    url, _, ids = site
    status, headers, body = get(url, f"/runs/{ids[0]}/files/workdir/model.txt")
    assert status == 200 and body == "model 0.1"
    assert headers["content-disposition"].startswith("attachment")
    assert headers["content-type"] == "application/octet-stream"
    status, _, listing = get(url, f"/runs/{ids[0]}/files/outputs/")
    assert status == 200 and "&lt;img src=x onerror=window.__pwned=4&gt;.txt" in listing


def test_another_site_name_in_host_is_refused(site: tuple[str, Path, list[str]]) -> None:
    assert get(site[0], "/", host="attacker.example:80")[0] == 421


def test_log_follow_returns_text_from_an_offset(site: tuple[str, Path, list[str]]) -> None:
    url, _, ids = site
    status, headers, text = get(url, f"/runs/{ids[1]}/log/stdout?offset=0")
    assert status == 200 and text.startswith("trained 0.2")
    _, more, rest = get(url, f"/runs/{ids[1]}/log/stdout?offset={headers['x-next-offset']}")
    assert rest == "" and more["x-run-status"] == "FINISHED"


def test_listens_on_localhost_unless_told_and_then_warns(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert cli(str(demo_project(tmp_path / "p")), "-q", "--store", str(store)).code == 0
    with ui_server(str(store), tmp_path) as url:
        assert urlsplit(url).hostname == "127.0.0.1"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "ui", "--store", str(store), "--port", "0",
         "--host", "0.0.0.0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        assert "warning: listening on 0.0.0.0" in proc.stderr.readline()
    finally:
        proc.kill()
        proc.wait()


def test_no_store_is_a_clear_error(tmp_path: Path) -> None:
    result = cli("ui", "--store", str(tmp_path / "none"))
    assert result.code == 125 and "no run store" in result.err and "hint:" in result.err


def test_ui_pages_work_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    store = pg_url
    project = demo_project(tmp_path / "p")
    env = {"RUN_PROJECT_ARTIFACTS": str(tmp_path / "artifacts")}
    assert cli(str(project), "-q", "--store", store, env=env).code == 0
    listed = json.loads(cli("runs", "list", "--store", store, "--json", env=env).out)
    with ui_server(store, tmp_path, env=env) as url:
        run_id = listed[0]["id"]
        assert run_id[:8] in get(url, "/")[2]
        status, _, body = get(url, f"/runs/{run_id}")
        assert status == 200 and "<path d=" in body
        assert get(url, f"/runs/{run_id}/files/workdir/model.txt")[2] == "model 0.1"


def test_a_rerun_shows_its_verdict_and_links_the_original(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    assert cli(str(demo_project(tmp_path / "p")), "-q", "--store", store).code == 0
    first = json.loads(cli("runs", "list", "--store", store, "--json").out)[0]["id"]
    assert cli("rerun", first, "--store", store).code == 0
    again = json.loads(cli("runs", "list", "--store", store, "--json", "--limit", "1").out)[0]
    with ui_server(store, tmp_path) as url:
        _, _, body = get(url, f"/runs/{again['id']}")
    assert 'id="verdict"' in body and again["rerun_verdict"]["summary"] in body
    assert f'href="/runs/{first}"' in body
