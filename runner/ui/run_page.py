"""`/runs/<id>`: everything about one run, and its files (`/runs/<id>/files/...`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from runner.errors import NotFoundError, StoreError
from runner.tracking.record import ACTIVE
from runner.tracking.store import Store
from runner.ui import charts, files
from runner.ui.markup import Markup, h, join, link, page

CURVE_BUCKETS = 640  # about one bucket per pixel column of a chart


def get_run(store: Store, run_id: str) -> dict[str, Any]:
    """The run, or NotFound (404) for an unknown or malformed id."""
    try:
        return store.get_run(run_id)
    except StoreError as exc:
        raise NotFoundError(exc.message, exc.hint) from exc


def render(store: Store, run_id: str) -> bytes:
    """The run's page; it refreshes itself while the run is active."""
    record = get_run(store, run_id)
    run_dir = store.artifact_dir(record["id"])
    sections = [
        _summary(store, record),
        _section("parameters", _params(record)),
        _section("metrics", _metrics(store, record)),
        _section("tags", kv_table(record.get("tags") or {})),
        _section("inputs", _inputs(record)),
        _section("outputs", _outputs(store, record)),
        _section("environment", _environment(record, run_dir)),
        _section("source", _source(record, run_dir)),
        _section("logs", _logs(record, run_dir)),
        _section(
            "files",
            h(
                "p",
                None,
                h("a", {"href": f"/runs/{record['id']}/files/"}, "browse the run's files"),
            ),
        ),
    ]
    title = f"run {record['id'][:8]} · {record.get('run_name') or ''}"
    return page(title, *sections, refresh=record["status"] in ACTIVE)


def _section(title: str, *body: Any) -> Markup:
    return h("section", {"id": title}, h("h2", None, title), *body)


def kv_table(values: dict[str, Any], empty: str = "none") -> Markup:
    """A two-column table of names and values (nested values as JSON text)."""
    if not values:
        return h("p", {"class_": "empty"}, empty)
    rows = [h("tr", None, h("th", None, k), h("td", None, _value(v))) for k, v in values.items()]
    return h("table", {"class_": "kv"}, rows)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


def _summary(store: Store, record: dict[str, Any]) -> Markup:
    facts = {
        key: record.get(key)
        for key in (
            "status",
            "exit_code",
            "reason",
            "experiment",
            "run_name",
            "entry_point",
            "start_time",
            "end_time",
            "backend",
        )
    }
    facts["command"] = " ".join(record.get("launch_argv") or record["command"]["argv"])
    rerun = f"run-project rerun {record['id']}"
    if store.label != "runs":
        rerun += f" --store {store.label}"
    parts = [kv_table(facts), h("p", None, "rerun it: ", h("code", {"id": "rerun"}, rerun))]
    if record.get("rerun_of"):
        parts.append(
            h(
                "p",
                None,
                "a rerun of ",
                h("a", {"href": f"/runs/{record['rerun_of']}"}, record["rerun_of"][:8]),
            )
        )
    verdict = record.get("rerun_verdict")
    if verdict:
        kind = "same" if verdict.get("identical") else "differs"
        parts.append(
            h(
                "div",
                {"class_": f"verdict {kind}", "id": "verdict"},
                h("p", None, "rerun verdict: ", verdict.get("summary", "")),
                h("pre", None, "\n".join(verdict.get("lines") or [])),
            )
        )
    parts.append(
        h(
            "p",
            None,
            h("a", {"href": link("/lineage", {"run": record["id"]})}, "lineage of this run"),
            " · ",
            h("a", {"href": link("/compare", {"runs": record["id"]})}, "compare"),
        )
    )
    return h("section", {"id": "summary"}, parts)


def _params(record: dict[str, Any]) -> Markup:
    declared = record.get("params") or {}
    rows = [
        h(
            "tr",
            None,
            h("td", None, name),
            h("td", {"class_": "value"}, _value(p.get("value"))),
            h("td", None, p.get("type", "")),
            h("td", None, p.get("source", "declared")),
        )
        for name, p in declared.items()
    ]
    rows += [
        h(
            "tr",
            None,
            h("td", None, name),
            h("td", {"class_": "value"}, _value(v)),
            h("td", None, ""),
            h("td", None, "logged"),
        )
        for name, v in (record.get("logged_params") or {}).items()
    ]
    if not rows:
        return h("p", {"class_": "empty"}, "none")
    head = h("tr", None, [h("th", None, t) for t in ("name", "value", "type", "from")])
    return h("table", {"class_": "params"}, head, rows)


def _metrics(store: Store, record: dict[str, Any]) -> Markup:
    summary = record.get("metrics") or {}
    if not summary:
        return h("p", {"class_": "empty"}, "none")
    head = h("tr", None, [h("th", None, t) for t in ("metric", "last", "min", "max", "points")])
    rows = [
        h(
            "tr",
            None,
            h("td", None, k),
            [h("td", {"class_": "num"}, _value(m.get(f))) for f in ("last", "min", "max", "count")],
        )
        for k, m in summary.items()
    ]
    curves = []
    for key in summary:
        points = store.metric_buckets(record["id"], key, CURVE_BUCKETS)
        curves.append(charts.line_chart(key, [charts.Series(record["id"][:8], points)], "step"))
    return join(
        [h("table", {"class_": "metrics"}, head, rows), h("div", {"class_": "charts"}, curves)]
    )


def short_hash(sha256: str) -> Markup:
    """The first 12 hex digits, linking to the lineage of that content."""
    return h(
        "a",
        {"href": link("/lineage", {"sha256": sha256}), "title": sha256, "class_": "hash"},
        sha256[:12],
    )


def _inputs(record: dict[str, Any]) -> Markup:
    inputs = record.get("inputs") or []
    if not inputs:
        return h("p", {"class_": "empty"}, "none recorded")
    head = h("tr", None, [h("th", None, t) for t in ("path", "from", "sha256", "size", "made by")])
    rows = []
    for entry in inputs:
        maker = entry.get("produced_by")
        made = h("a", {"href": f"/runs/{maker}"}, maker[:8]) if maker else ""
        source = entry["source"] + (f" {entry['param']}" if entry.get("param") else "")
        rows.append(
            h(
                "tr",
                None,
                h("td", None, entry["path"]),
                h("td", None, source),
                h("td", None, short_hash(entry["sha256"])),
                h("td", {"class_": "num"}, entry["size"]),
                h("td", None, made),
            )
        )
    return h("table", {"class_": "files"}, head, rows)


def _outputs(store: Store, record: dict[str, Any]) -> Markup:
    outputs = record.get("outputs") or []
    if not outputs:
        return h("p", {"class_": "empty"}, "none recorded")
    head = h("tr", None, [h("th", None, t) for t in ("name", "sha256", "size", "used by")])
    rows = []
    for entry in outputs:
        users = sorted(
            {rid for rid, _ in store.files_with_hash(entry["sha256"], "input")} - {record["id"]}
        )
        used = join([h("a", {"href": f"/runs/{u}"}, u[:8]), " "] for u in users)
        href = f"/runs/{record['id']}/files/{quote(entry['name'])}"
        rows.append(
            h(
                "tr",
                None,
                h("td", None, h("a", {"href": href}, entry["name"])),
                h("td", None, short_hash(entry["sha256"])),
                h("td", {"class_": "num"}, entry["size"]),
                h("td", None, used),
            )
        )
    return h("table", {"class_": "files"}, head, rows)


def _environment(record: dict[str, Any], run_dir: Path) -> Markup:
    parts = [kv_table(record.get("env") or {}), kv_table(record.get("platform") or {})]
    env_dir = run_dir / "env"
    if env_dir.is_dir():
        for name, is_dir, _ in files.listing(env_dir):
            if not is_dir:
                parts.append(h("h3", None, "lock file ", name))
                parts.append(h("pre", {"class_": "lock"}, files.read_text(env_dir / name)))
    return join(parts)


def _source(record: dict[str, Any], run_dir: Path) -> Markup:
    source = record.get("source") or {}
    facts = {
        k: source.get(k) for k in ("kind", "uri", "commit", "version", "subdirectory", "dirty")
    }
    parts = [kv_table(facts)]
    diff = files.read_text(run_dir / "source" / "uncommitted.diff")
    if diff:
        parts += [h("h3", None, "uncommitted changes"), h("pre", {"class_": "diff"}, diff)]
    return join(parts)


def _logs(record: dict[str, Any], run_dir: Path) -> Markup:
    parts = []
    for stream in ("stdout", "stderr"):
        path = run_dir / "logs" / f"{stream}.log"
        text, end = files.tail(path, None) if path.is_file() else ("", 0)
        attrs = {
            "id": f"log-{stream}",
            "class_": "log",
            "data-offset": end,
            "data-follow": f"/runs/{record['id']}/log/{stream}"
            if record["status"] in ACTIVE
            else None,
        }
        parts += [h("h3", None, stream), h("pre", attrs, text or "")]
    return join(parts)


def render_files(store: Store, run_id: str, name: str) -> tuple[Path | None, bytes]:
    """A directory of the run's files as a page, or the confined path of a file to send."""
    record = get_run(store, run_id)
    run_dir = store.artifact_dir(record["id"])
    target = files.confined(run_dir, name.strip("/"))
    if not target.is_dir():
        return target, b""
    base = f"/runs/{record['id']}/files/" + (name.strip("/") + "/" if name.strip("/") else "")
    rows = [
        h(
            "tr",
            None,
            h(
                "td",
                None,
                h(
                    "a",
                    {"href": quote(base + entry) + ("/" if is_dir else "")},
                    entry + ("/" if is_dir else ""),
                ),
            ),
            h("td", {"class_": "num"}, "" if is_dir else size),
        )
        for entry, is_dir, size in files.listing(target)
    ]
    back = h("p", None, h("a", {"href": f"/runs/{record['id']}"}, "← the run"))
    title = f"files of run {record['id'][:8]}: /{name.strip('/')}"
    return None, page(title, back, h("table", {"class_": "files"}, rows))
