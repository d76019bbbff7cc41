"""`/lineage?run=ID` or `?sha256=HEX`: the graph of runs and files, linked by content hash.

Drawn as nested lists (upstream: what a run was made from, and the runs that made those
files; downstream: its outputs and the runs that used them), each node a link, so the graph
is walked by clicking. Depth is bounded as in `runs lineage` (tracking/lineage.py).
"""

from __future__ import annotations

from typing import Any

from runner.errors import RunnerError
from runner.tracking.lineage import MAX_DEPTH
from runner.tracking.store import Store
from runner.ui.markup import Markup, h, link, page
from runner.ui.run_page import get_run, short_hash


def render(store: Store, q: dict[str, list[str]]) -> bytes:
    """The lineage of a run or of a file's content."""
    one = {k: v[-1].strip() for k, v in q.items() if v}
    if one.get("run"):
        record = get_run(store, one["run"])
        body = [
            h("h2", None, "made from"),
            _made_from(store, record, 0, {record["id"]}),
            h("h2", None, "used by"),
            _used_by(store, record),
        ]
        return page(f"lineage of run {record['id'][:8]}", _run_link(record), *body)
    digest = one.get("sha256", "").lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise RunnerError(
            "lineage needs ?run=RUN_ID or ?sha256=<64 hex digits>",
            "follow a hash link from a run's inputs or outputs",
        )
    return page(f"lineage of sha256:{digest[:12]}", *_file(store, digest))


def _run_link(record: dict[str, Any]) -> Markup:
    label = f"run {record['id'][:8]} ({record.get('run_name')}, {record['status']})"
    return h("a", {"href": f"/runs/{record['id']}", "class_": "node run"}, label)


def _file(store: Store, digest: str) -> list[Markup]:
    producers = sorted({rid for rid, _ in store.files_with_hash(digest, "output")})
    consumers = sorted({rid for rid, _ in store.files_with_hash(digest, "input")})
    paths = sorted(
        {p for _, p in store.files_with_hash(digest, "output")}
        | {p for _, p in store.files_with_hash(digest, "input")}
    )
    made = [
        h("li", None, _run_link(r), _made_from(store, r, 1, {r["id"]}))
        for r in (get_run(store, rid) for rid in producers)
    ]
    used = [h("li", None, _run_link(get_run(store, rid))) for rid in consumers]
    return [
        h("p", None, "content ", h("code", None, digest), " seen as:"),
        h("ul", None, [h("li", None, p) for p in paths] or h("li", None, "no recorded file")),
        h("h2", None, "produced by"),
        h("ul", {"class_": "lineage"}, made or h("li", None, "no run")),
        h("h2", None, "used by"),
        h("ul", {"class_": "lineage"}, used or h("li", None, "no run")),
    ]


def _made_from(store: Store, record: dict[str, Any], depth: int, seen: set[str]) -> Markup:
    items = []
    for entry in record.get("inputs") or []:
        parent = entry.get("produced_by")
        below: Any = None
        if parent and parent not in seen and depth < MAX_DEPTH:
            parent_record = get_run(store, parent)
            below = h(
                "ul",
                None,
                h(
                    "li",
                    None,
                    "made by ",
                    _run_link(parent_record),
                    _made_from(store, parent_record, depth + 1, seen | {parent}),
                ),
            )
        items.append(
            h(
                "li",
                None,
                h("span", {"class_": "node file"}, entry["path"]),
                " ",
                short_hash(entry["sha256"]),
                below,
            )
        )
    return h("ul", {"class_": "lineage"}, items or h("li", None, "no recorded inputs"))


def _used_by(store: Store, record: dict[str, Any]) -> Markup:
    items = []
    for entry in record.get("outputs") or []:
        users = sorted(
            {rid for rid, _ in store.files_with_hash(entry["sha256"], "input")} - {record["id"]}
        )
        runs = [h("li", None, _run_link(get_run(store, u))) for u in users]
        href = link("/lineage", {"sha256": entry["sha256"]})
        items.append(
            h(
                "li",
                None,
                h("a", {"href": href, "class_": "node file"}, entry["name"]),
                " ",
                short_hash(entry["sha256"]),
                h("ul", None, runs) if runs else None,
            )
        )
    return h("ul", {"class_": "lineage"}, items or h("li", None, "no recorded outputs"))
