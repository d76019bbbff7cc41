"""`/compare?runs=A,B,...`: params side by side, curves overlaid, a param-versus-metric view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.errors import RunnerError
from runner.tracking.record import ACTIVE
from runner.tracking.runindex import lookup, number
from runner.tracking.store import Store
from runner.ui import charts
from runner.ui.markup import Markup, h, join, page
from runner.ui.run_page import CURVE_BUCKETS, get_run

MAX_RUNS = 50


@dataclass(frozen=True)
class Options:
    """How the curves are drawn, from the URL's query."""

    by_time: bool
    log_y: bool
    smoothing: float
    param: str | None
    metric: str | None

    @classmethod
    def from_query(cls, q: dict[str, list[str]]) -> Options:
        one = {k: v[-1] for k, v in q.items() if v}
        try:
            smoothing = min(max(float(one.get("smooth") or 0), 0.0), 0.99)
        except ValueError:
            smoothing = 0.0
        return cls(
            one.get("x") == "time",
            one.get("y") == "log",
            smoothing,
            one.get("param") or None,
            one.get("metric") or None,
        )


def run_ids(q: dict[str, list[str]]) -> list[str]:
    """`runs=A,B` or `runs=A&runs=B` (the runs table's checkboxes), in order, once each."""
    ids = [i.strip() for v in q.get("runs", []) for i in v.split(",") if i.strip()]
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise RunnerError("no runs to compare", "tick runs in the table, or pass ?runs=ID,ID")
    if len(ids) > MAX_RUNS:
        raise RunnerError(f"{len(ids)} runs is too many to compare", f"pick at most {MAX_RUNS}")
    return ids


def render(store: Store, q: dict[str, list[str]]) -> bytes:
    """The comparison page (unknown ids: NotFoundError)."""
    records = [get_run(store, i) for i in run_ids(q)]
    options = Options.from_query(q)
    body = [
        _choices(q, options),
        h("h2", None, "parameters"),
        _params(records),
        h("h2", None, "metrics"),
        _curves(store, records, options),
    ]
    if len(records) >= 3:
        body += [h("h2", None, "parameter versus metric"), _scatter(records, options)]
    live = any(r["status"] in ACTIVE for r in records)
    return page(f"compare {len(records)} runs", *body, refresh=live)


def _label(record: dict[str, Any]) -> str:
    return f"{record['id'][:8]} {record.get('run_name') or ''}".strip()


def _params(records: list[dict[str, Any]]) -> Markup:
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record.get("params") or {}))
        names.update(dict.fromkeys(record.get("logged_params") or {}))
    head = h(
        "tr",
        None,
        h("th", None, "parameter"),
        [h("th", None, h("a", {"href": f"/runs/{r['id']}"}, _label(r))) for r in records],
    )
    rows = []
    for name in names:
        values = [lookup(r, "param", name) for r in records]
        differs = len({repr(v) for v in values}) > 1
        rows.append(
            h(
                "tr",
                {"class_": "differs" if differs else None},
                h("th", None, name, " ≠" if differs else ""),
                [h("td", None, "" if v is None else str(v)) for v in values],
            )
        )
    return h("table", {"class_": "compare"}, head, rows)


def _curves(store: Store, records: list[dict[str, Any]], options: Options) -> Markup:
    keys: dict[str, None] = {}
    for record in records:
        keys.update(dict.fromkeys(record.get("metrics") or {}))
    if not keys:
        return h("p", {"class_": "empty"}, "no metrics")
    charts_ = []
    for key in keys:
        series = [
            charts.Series(
                _label(r),
                charts.smooth(
                    store.metric_buckets(r["id"], key, CURVE_BUCKETS, options.by_time),
                    options.smoothing,
                ),
            )
            for r in records
        ]
        x_label = "seconds since the first point" if options.by_time else "step"
        charts_.append(charts.line_chart(key, series, x_label, options.log_y))
    return h("div", {"class_": "charts"}, charts_)


def _choices(q: dict[str, list[str]], options: Options) -> Markup:
    runs = ",".join(run_ids(q))

    def radio(name: str, value: str, label: str, checked: bool) -> Markup:
        return h(
            "label",
            None,
            h("input", {"type": "radio", "name": name, "value": value, "checked": checked}),
            label,
        )

    return h(
        "form",
        {"method": "get", "action": "/compare", "class_": "filters", "id": "choices"},
        h("input", {"type": "hidden", "name": "runs", "value": runs}),
        "x: ",
        radio("x", "step", "step", not options.by_time),
        radio("x", "time", "time", options.by_time),
        " y: ",
        radio("y", "linear", "linear", not options.log_y),
        radio("y", "log", "log", options.log_y),
        h(
            "label",
            None,
            " smoothing ",
            h(
                "input",
                {
                    "type": "number",
                    "name": "smooth",
                    "min": "0",
                    "max": "0.99",
                    "step": "0.05",
                    "value": options.smoothing,
                },
            ),
        ),
        h("button", {"type": "submit"}, "redraw"),
    )


def _scatter(records: list[dict[str, Any]], options: Options) -> Markup:
    params = _numeric_names(records, "param", "params", "logged_params")
    metrics = _numeric_names(records, "metric", "metrics")
    if not params or not metrics:
        return h("p", {"class_": "empty"}, "needs a numeric parameter and a metric")
    param = options.param if options.param in params else params[0]
    metric = options.metric if options.metric in metrics else metrics[0]
    points = []
    for record in records:
        x, y = number(lookup(record, "param", param)), number(lookup(record, "metric", metric))
        if x is not None and y is not None:
            points.append((x, y, _label(record)))
    chart = charts.scatter_chart(f"{metric} by {param}", points, param)
    return join([_axis_choice(param, params, metric, metrics), chart])


def _numeric_names(records: list[dict[str, Any]], kind: str, *fields: str) -> list[str]:
    names: dict[str, None] = {}
    for record in records:
        for field in fields:
            for name in record.get(field) or {}:
                if number(lookup(record, kind, name)) is not None:
                    names[name] = None
    return list(names)


def _axis_choice(param: str, params: list[str], metric: str, metrics: list[str]) -> Markup:
    def select(name: str, chosen: str, options: list[str]) -> Markup:
        return h(
            "select",
            {"name": name, "form": "choices"},
            [h("option", {"value": o, "selected": o == chosen}, o) for o in options],
        )

    return h(
        "p",
        {"class_": "axis-choice"},
        "x: ",
        select("param", param, params),
        " y: ",
        select("metric", metric, metrics),
    )
