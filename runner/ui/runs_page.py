"""`/`: the runs table, filtered, sorted and paged in SQL (tracking/listing.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.errors import RunnerError
from runner.tracking import listing, query
from runner.tracking.runindex import lookup
from runner.tracking.store import Store
from runner.ui.markup import Markup, h, link, page

STATUSES = ("STARTING", "RUNNING", "FINISHED", "FAILED", "KILLED", "LOST")
PER_PAGE, MAX_PER_PAGE, DEFAULT_COLUMNS = 50, 500, 8


@dataclass(frozen=True)
class Listing:
    """What the table shows, read from the URL's query."""

    experiment: str | None
    status: str | None
    params: str
    metrics: str
    sort: str | None
    columns: list[str]
    page: int
    per_page: int

    @classmethod
    def from_query(cls, q: dict[str, list[str]]) -> Listing:
        one = {k: (v[-1].strip() if v else "") for k, v in q.items()}
        status = one.get("status", "").upper() or None
        if status and status not in STATUSES:
            raise RunnerError(f"status {status!r} is unknown", "pick one of " + ", ".join(STATUSES))
        columns = [c for v in q.get("cols", []) for c in v.split(",") if c.strip()]
        return cls(
            experiment=one.get("experiment") or None,
            status=status,
            params=one.get("param", ""),
            metrics=one.get("metric", ""),
            sort=one.get("sort") or None,
            columns=[c.strip() for c in columns],
            page=max(1, _int(one.get("page"), 1)),
            per_page=min(MAX_PER_PAGE, max(1, _int(one.get("per"), PER_PAGE))),
        )

    def conditions(self) -> list[query.Condition]:
        """`runs list`'s --param and --metric conditions, several joined by ';'."""
        found = []
        for kind, text in (("param", self.params), ("metric", self.metrics)):
            found += [query.parse_condition(kind, c) for c in text.split(";") if c.strip()]
        return found

    def query(self, **changes: Any) -> dict[str, Any]:
        """This listing's URL query, with `changes`."""
        base = {
            "experiment": self.experiment,
            "status": self.status,
            "param": self.params,
            "metric": self.metrics,
            "sort": self.sort,
            "cols": ",".join(self.columns),
            "per": self.per_page if self.per_page != PER_PAGE else None,
        }
        return {**base, **changes}


def _int(text: str | None, default: int) -> int:
    try:
        return int(text or default)
    except ValueError:
        return default


def render(store: Store, q: dict[str, list[str]]) -> tuple[int, bytes]:
    """The runs page; a bad filter shows its message and hint (status 400)."""
    try:
        view = Listing.from_query(q)
        conditions = view.conditions()
        if view.sort:
            query.parse_sort(view.sort)
        offset = (view.page - 1) * view.per_page
        # One more than a page says whether there is a next one; only an unfiltered table is
        # counted (a filtered count would scan every run's values again).
        records = listing.select_runs(
            store, view.experiment, view.status, conditions, view.sort, view.per_page + 1, offset
        )
        more = len(records) > view.per_page
        records = records[: view.per_page]
        total = None
        if not conditions:
            total = listing.count_runs(store, view.experiment, view.status, [])
    except RunnerError as exc:
        form = _filters(Listing.from_query({}))
        return 400, page("runs", form, error_box(exc))
    columns = view.columns or _default_columns(records)
    body = [
        _filters(view),
        _pager(view, len(records), more, total),
        _table(view, records, columns),
        _column_chooser(view, records, columns),
    ]
    return 200, page("runs", *body)


def error_box(exc: RunnerError) -> Markup:
    """A RunnerError as the page shows it: message and hint, as text."""
    return h(
        "div",
        {"class_": "error", "role": "alert"},
        h("p", None, exc.message),
        h("p", {"class_": "hint"}, exc.hint or ""),
    )


def _filters(view: Listing) -> Markup:
    status = h(
        "select",
        {"name": "status"},
        h("option", {"value": ""}, "any status"),
        [h("option", {"value": s, "selected": s == view.status}, s) for s in STATUSES],
    )
    fields = [
        h(
            "label",
            None,
            "experiment ",
            h("input", {"name": "experiment", "value": view.experiment or ""}),
        ),
        h("label", None, "status ", status),
        h(
            "label",
            None,
            "params ",
            h(
                "input",
                {"name": "param", "value": view.params, "placeholder": "lr>0.01; optimizer=adam"},
            ),
        ),
        h(
            "label",
            None,
            "metrics ",
            h("input", {"name": "metric", "value": view.metrics, "placeholder": "acc>=0.9"}),
        ),
        h("input", {"type": "hidden", "name": "sort", "value": view.sort or ""}),
        h("input", {"type": "hidden", "name": "cols", "value": ",".join(view.columns)}),
        h("button", {"type": "submit"}, "filter"),
    ]
    return h("form", {"method": "get", "action": "/", "class_": "filters"}, fields)


def _pager(view: Listing, shown: int, more: bool, total: int | None) -> Markup:
    first = (view.page - 1) * view.per_page + 1
    text = f"{first if shown else 0} to {first + shown - 1 if shown else 0}"
    if total is not None:
        pages = max(1, -(-total // view.per_page))
        text += f" of {total} runs (page {view.page} of {pages})"
    else:
        text += f" of the matching runs (page {view.page})"
    prev = h("a", {"href": link("/", view.query(page=view.page - 1)), "rel": "prev"}, "← previous")
    nxt = h("a", {"href": link("/", view.query(page=view.page + 1)), "rel": "next"}, "next →")
    return h(
        "p",
        {"class_": "pager"},
        prev if view.page > 1 else None,
        " ",
        h("span", {"id": "shown"}, text),
        " ",
        nxt if more else None,
    )


def _default_columns(records: list[dict[str, Any]]) -> list[str]:
    return _available(records)[:DEFAULT_COLUMNS]


def _available(records: list[dict[str, Any]]) -> list[str]:
    """param.* and metric.* names present on the shown runs (no scan of the whole store)."""
    names: dict[str, None] = {}
    for record in records:
        for key in record.get("params") or {}:
            names[f"param.{key}"] = None
        for key in record.get("logged_params") or {}:
            names[f"param.{key}"] = None
        for key in record.get("metrics") or {}:
            names[f"metric.{key}"] = None
    return sorted(names, key=lambda n: (not n.startswith("param."), n))


def _header(view: Listing, column: str) -> Markup:
    """A column title that sorts by it (ascending, then descending on a second click)."""
    descending = view.sort == column
    arrow = " ▲" if view.sort == column else " ▼" if view.sort == "-" + column else ""
    target = ("-" + column) if descending else column
    return h(
        "th", None, h("a", {"href": link("/", view.query(sort=target, page=1))}, column, arrow)
    )


def _table(view: Listing, records: list[dict[str, Any]], columns: list[str]) -> Markup:
    fixed = ["run_name", "experiment", "status", "start_time"]
    head = h(
        "tr",
        None,
        h("th", None, "compare"),
        h("th", None, "id"),
        [_header(view, c) for c in fixed],
        [_header(view, c) for c in columns],
    )
    rows = [_row(r, fixed, columns) for r in records]
    if not records:
        rows = [h("tr", None, h("td", {"colspan": 6 + len(columns)}, "no runs match"))]
    table = h("table", {"class_": "runs"}, h("thead", None, head), h("tbody", None, rows))
    button = h("button", {"type": "submit"}, "compare selected")
    return h("form", {"method": "get", "action": "/compare"}, button, table)


def _row(record: dict[str, Any], fixed: list[str], columns: list[str]) -> Markup:
    run_id = record["id"]
    cells = [
        h(
            "td",
            None,
            h(
                "input",
                {
                    "type": "checkbox",
                    "name": "runs",
                    "value": run_id,
                    "aria-label": "compare " + run_id[:8],
                },
            ),
        ),
        h("td", {"class_": "id"}, h("a", {"href": f"/runs/{run_id}"}, run_id[:8])),
        [
            h(
                "td",
                {"class_": f"status-{record['status']}" if f == "status" else None},
                _cell(record.get(f)),
            )
            for f in fixed
        ],
    ]
    for column in columns:
        kind, _, name = column.partition(".")
        value = lookup(record, kind, name)
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        cells.append(h("td", {"class_": "num" if numeric else None}, _cell(value)))
    return h("tr", None, cells)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 80 else text[:79] + "…"


def _column_chooser(view: Listing, records: list[dict[str, Any]], shown: list[str]) -> Markup:
    options = list(dict.fromkeys([*shown, *_available(records)]))
    boxes = [
        h(
            "label",
            None,
            h("input", {"type": "checkbox", "name": "cols", "value": c, "checked": c in shown}),
            c,
        )
        for c in options
    ]
    hidden = [
        h("input", {"type": "hidden", "name": k, "value": v})
        for k, v in view.query(cols=None, page=None).items()
        if v
    ]
    return h(
        "details",
        {"class_": "columns"},
        h("summary", None, "columns"),
        h(
            "form",
            {"method": "get", "action": "/"},
            hidden,
            boxes,
            h("button", {"type": "submit"}, "show columns"),
        ),
    )
