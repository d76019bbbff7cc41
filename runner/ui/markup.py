"""HTML built from escaped text: every value is text unless it is already `Markup`.

Nothing here formats HTML from strings a run wrote: `h()` escapes every child and every
attribute value, so a parameter value `<script>` is shown as those characters (tested in
tests/test_ui_browser.py::test_hostile_values_show_as_text_and_run_nothing).
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any
from urllib.parse import urlencode

VOID = {"br", "input", "meta", "link", "col", "hr"}


class Markup(str):
    """HTML that was built here (by `h()`), safe to insert as is."""


Child = Any  # str (escaped), Markup, None (skipped), or an iterable of those


def text(value: Any) -> Markup:
    """Any value as escaped text (quotes too: safe inside attributes)."""
    if isinstance(value, Markup):
        return value
    return Markup(escape("" if value is None else str(value), quote=True))


def join(children: Iterable[Child]) -> Markup:
    """Children escaped and concatenated."""
    parts: list[str] = []
    for child in children:
        if child is None or child is False:
            continue
        if isinstance(child, (str, int, float)):
            parts.append(text(child))
        else:
            parts.append(join(child))
    return Markup("".join(parts))


def h(tag: str, attrs: dict[str, Any] | None = None, *children: Child) -> Markup:
    """`<tag attr="value">children</tag>`, attribute values and children escaped."""
    rendered = ""
    for name, value in (attrs or {}).items():
        if value is None or value is False:
            continue
        key = name.rstrip("_").replace("_", "-")
        rendered += f" {key}" if value is True else f' {key}="{text(value)}"'
    if tag in VOID:
        return Markup(f"<{tag}{rendered}>")
    return Markup(f"<{tag}{rendered}>{join(children)}</{tag}>")


def link(path: str, query: dict[str, Any] | None = None) -> str:
    """A same-site URL with its query encoded (empty values left out)."""
    kept = {k: v for k, v in (query or {}).items() if v not in (None, "", [])}
    return path + ("?" + urlencode(kept, doseq=True) if kept else "")


def page(title: str, *body: Child, refresh: bool = False) -> bytes:
    """A whole page: the stylesheet and script come from /static (no inline code)."""
    head = join(
        [
            Markup('<meta charset="utf-8">'),
            h("title", None, title, " · run-project"),
            h("link", {"rel": "stylesheet", "href": "/static/style.css"}),
            h("script", {"src": "/static/app.js", "defer": True}),
        ]
    )
    nav = h("nav", None, h("a", {"href": "/"}, "runs"), " ", h("span", None, title))
    main = h("main", {"data-live": "1" if refresh else None}, h("h1", None, title), *body)
    return (
        "<!doctype html>\n"
        + h("html", {"lang": "en"}, h("head", None, head), h("body", None, nav, main))
    ).encode()
