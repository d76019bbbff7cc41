"""Charts drawn on the server as SVG: learning curves and a param-versus-metric scatter.

SVG from the server rather than a JavaScript charting library: nothing to vendor or update,
no script needed to see a curve (the page's Content-Security-Policy stays `script-src
'self'`), and the browser draws a few thousand points at once. Curves arrive already
downsampled (`minmax_buckets`, or `Store.metric_buckets` in SQL), so a million-point metric
costs the page ~2 points per pixel column.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from runner.tracking.plot import decade_ticks, nice_ticks, tick_label
from runner.ui.markup import Markup, h, join

Point = tuple[float, float]
WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 40
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


@dataclass(frozen=True)
class Series:
    """One labelled curve."""

    label: str
    points: list[Point]


def minmax_buckets(points: Sequence[Point], buckets: int) -> list[Point]:
    """At most 2 points per bucket of x: the lowest and the highest, in x order, so spikes
    survive the cut (points must be sorted by x)."""
    if len(points) <= 2 * buckets:
        return list(points)
    x0, x1 = points[0][0], points[-1][0]
    span = (x1 - x0) or 1.0
    kept: list[Point] = []
    group: list[Point] = []
    current = 0
    for point in points:
        index = min(int((point[0] - x0) / span * buckets), buckets - 1)
        if index != current and group:
            kept.extend(_extremes(group))
            group = []
        current = index
        group.append(point)
    kept.extend(_extremes(group))
    return kept


def _extremes(group: list[Point]) -> list[Point]:
    finite = [p for p in group if math.isfinite(p[1])]
    if not finite:
        return []
    low = min(finite, key=lambda p: p[1])
    high = max(finite, key=lambda p: p[1])
    return sorted({low, high})


def smooth(points: list[Point], weight: float) -> list[Point]:
    """Exponential moving average (TensorBoard's smoothing slider), debiased at the start."""
    if weight <= 0:
        return points
    out: list[Point] = []
    last, count = 0.0, 0
    for x, y in points:
        if not math.isfinite(y):
            continue
        count += 1
        last = last * weight + (1 - weight) * y
        out.append((x, last / (1 - weight**count)))
    return out


@dataclass(frozen=True)
class Axes:
    """The data range and scale of one chart, and the mapping to pixels."""

    x0: float
    x1: float
    y0: float
    y1: float
    log_y: bool

    def px(self, x: float) -> float:
        return LEFT + (x - self.x0) / ((self.x1 - self.x0) or 1) * (WIDTH - LEFT - RIGHT)

    def py(self, y: float) -> float:
        value = math.log10(y) if self.log_y else y
        return (
            HEIGHT
            - BOTTOM
            - (value - self.y0) / ((self.y1 - self.y0) or 1) * (HEIGHT - TOP - BOTTOM)
        )


def _axes(series: list[list[Point]], log_y: bool) -> Axes:
    xs = [x for s in series for x, _ in s]
    ys = [(math.log10(y) if log_y else y) for s in series for _, y in s]
    if not xs:
        return Axes(0, 1, 0, 1, log_y)
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = (y1 - y0) * 0.05  # a point at the extremes stays off the frame
    return Axes(x0, x1 if x1 > x0 else x0 + 1, y0 - pad, y1 + pad, log_y)


def _plottable(points: list[Point], log_y: bool) -> list[Point]:
    return [(x, y) for x, y in points if math.isfinite(y) and (y > 0 or not log_y)]


def line_chart(title: str, series: list[Series], x_label: str, log_y: bool = False) -> Markup:
    """Curves over shared axes, with ticks, a title and a legend."""
    kept = [_plottable(s.points, log_y) for s in series]
    axes = _axes(kept, log_y)
    paths = []
    for index, points in enumerate(kept):
        if not points:
            continue
        colour = PALETTE[index % len(PALETTE)]
        if len(points) == 1:  # one point is no line: a dot shows it
            x, y = points[0]
            attrs = {"cx": f"{axes.px(x):.1f}", "cy": f"{axes.py(y):.1f}", "r": "4"}
            paths.append(h("circle", {**attrs, "class_": "curve point", "fill": colour}))
            continue
        d = "M" + " L".join(f"{axes.px(x):.1f},{axes.py(y):.1f}" for x, y in points)
        paths.append(h("path", {"d": d, "class_": "curve", "stroke": colour, "fill": "none"}))
    dropped = sum(len(s.points) for s in series) - sum(len(p) for p in kept)
    note = f" ({dropped} points ≤ 0 or not finite left out)" if dropped else ""
    return _frame(title + note, axes, x_label, paths, [s.label for s in series])


def scatter_chart(title: str, points: list[tuple[float, float, str]], x_label: str) -> Markup:
    """One dot per run (x: a parameter, y: a metric), each with its run as a tooltip."""
    axes = _axes([[(x, y) for x, y, _ in points]], False)
    dots = [
        h(
            "circle",
            {
                "cx": f"{axes.px(x):.1f}",
                "cy": f"{axes.py(y):.1f}",
                "r": "5",
                "class_": "dot",
                "fill": PALETTE[i % len(PALETTE)],
            },
            h("title", None, label),
        )
        for i, (x, y, label) in enumerate(points)
    ]
    return _frame(title, axes, x_label, dots, [label for _, _, label in points])


def _frame(title: str, axes: Axes, x_label: str, marks: list[Markup], labels: list[str]) -> Markup:
    parts: list[Markup] = [h("text", {"x": WIDTH / 2, "y": 16, "class_": "title"}, title)]
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    for x in nice_ticks(axes.x0, axes.x1):
        px = f"{axes.px(x):.1f}"
        parts.append(h("line", {"x1": px, "x2": px, "y1": TOP, "y2": bottom, "class_": "grid"}))
        parts.append(h("text", {"x": px, "y": bottom + 14, "class_": "tick-x"}, tick_label(x)))
    for y in decade_ticks(axes.y0, axes.y1) if axes.log_y else nice_ticks(axes.y0, axes.y1):
        py = f"{axes.py(10**y if axes.log_y else y):.1f}"
        label = tick_label(10**y) if axes.log_y else tick_label(y)
        parts.append(h("line", {"x1": LEFT, "x2": right, "y1": py, "y2": py, "class_": "grid"}))
        parts.append(h("text", {"x": LEFT - 4, "y": py, "class_": "tick-y"}, label))
    parts.append(h("path", {"d": f"M{LEFT},{TOP} V{bottom} H{right}", "class_": "axis"}))
    parts.append(h("text", {"x": WIDTH / 2, "y": HEIGHT - 6, "class_": "label"}, x_label))
    parts.extend(marks)
    legend = h(
        "ul",
        {"class_": "legend"},
        [
            h("li", None, h("span", {"class_": f"swatch c{i % len(PALETTE)}"}), label)
            for i, label in enumerate(labels)
        ],
    )
    svg = h(
        "svg",
        {"viewBox": f"0 0 {WIDTH} {HEIGHT}", "class_": "chart", "role": "img", "aria-label": title},
        join(parts),
    )
    return h("figure", None, svg, legend)
