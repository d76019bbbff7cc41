"""Learning curves to a PNG without plotting libraries (zlib + struct are enough).

matplotlib costs ~0.5 s to import and a large install; a line chart needs neither. The image
has a title, axes with round tick values and their labels, a light grid, one coloured line
per run and a legend, written with a small bitmap font (plotfont.py); `log_y` puts the values
on a log scale (ticks at whole decades; values <= 0 left out). The tick choice is shared with
the web UI's charts (runner/ui/charts.py).
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from runner.tracking import plotfont

Color = tuple[int, int, int]
PALETTE: tuple[Color, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip
COLOR_NAMES = ("blue", "orange", "green", "red", "purple", "brown", "pink", "grey", "olive", "cyan")
Series = list[tuple[float, float]]


class Canvas:
    """An RGB raster with the few drawing operations a line chart needs."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(b"\xff" * (width * height * 3))

    def dot(self, x: int, y: int, color: Color) -> None:
        """Set one pixel (ignored outside the canvas)."""
        if 0 <= x < self.width and 0 <= y < self.height:
            at = (y * self.width + x) * 3
            self.pixels[at : at + 3] = bytes(color)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: Color, thick: int = 1) -> None:
        """Bresenham's line, `thick` pixels wide."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            for ox in range(thick):
                for oy in range(thick):
                    self.dot(x0 + ox, y0 + oy, color)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err, x0 = err + dy, x0 + sx
            if e2 <= dx:
                err, y0 = err + dx, y0 + sy

    def text(self, x: int, y: int, label: str, color: Color = (0, 0, 0), scale: int = 1) -> None:
        """`label` with its top-left corner at (x, y), in the 5x7 font times `scale`."""
        for index, char in enumerate(label):
            left = x + index * (plotfont.WIDTH + 1) * scale
            for row, bits in enumerate(plotfont.rows(char)):
                for col in range(plotfont.WIDTH):
                    if bits & (1 << (plotfont.WIDTH - 1 - col)):
                        self.box(left + col * scale, y + row * scale, scale, scale, color)

    def box(self, x: int, y: int, width: int, height: int, color: Color) -> None:
        """A filled rectangle."""
        for py in range(y, y + height):
            for px in range(x, x + width):
                self.dot(px, py, color)

    def png(self) -> bytes:
        """The canvas as PNG bytes (8-bit RGB, no filter)."""
        stride = self.width * 3
        raw = b"".join(
            b"\x00" + bytes(self.pixels[row * stride : (row + 1) * stride])
            for row in range(self.height)
        )
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw, 6))
            + _chunk(b"IEND", b"")
        )


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def text_width(label: str, scale: int = 1) -> int:
    """How wide `label` is drawn, in pixels."""
    return len(label) * (plotfont.WIDTH + 1) * scale


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values inside [low, high] (1, 2 or 5 times a power of ten apart)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def decade_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Whole powers of ten (as exponents) inside [low, high], at most about `count`."""
    first, last = math.ceil(low), math.floor(high)
    if last < first:
        return nice_ticks(low, high)
    stride = max(1, math.ceil((last - first + 1) / count))
    return [float(e) for e in range(first, last + 1, stride)]


def tick_label(value: float) -> str:
    """A short label: 0.001, 1e+06, 250."""
    return "0" if abs(value) < 1e-12 else f"{value:.4g}"


def bounds(series: list[Series], log_y: bool = False) -> tuple[float, float, float, float]:
    """(x min, x max, y min, y max) over all plottable points (a flat range is widened);
    with `log_y`, y is log10 of the values above 0."""
    kept = [plottable(s, log_y) for s in series]
    xs = [x for s in kept for x, _ in s]
    ys = [y for s in kept for _, y in s]
    if not xs:
        return 0.0, 1.0, 0.0, 1.0
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    return x0, (x1 if x1 > x0 else x0 + 1), y0, (y1 if y1 > y0 else y0 + 1)


def plottable(points: Series, log_y: bool) -> Series:
    """Finite points (above 0 and as log10 with `log_y`)."""
    if log_y:
        return [(x, math.log10(y)) for x, y in points if math.isfinite(y) and y > 0]
    return [(x, y) for x, y in points if math.isfinite(y)]


@dataclass(frozen=True)
class Frame:
    """Where the plot area is on the canvas, and the data range it shows."""

    left: int
    top: int
    right: int
    bottom: int
    x0: float
    x1: float
    y0: float
    y1: float

    def at(self, x: float, y: float) -> tuple[int, int]:
        px = self.left + round((x - self.x0) / (self.x1 - self.x0) * (self.right - self.left))
        py = self.bottom - round((y - self.y0) / (self.y1 - self.y0) * (self.bottom - self.top))
        return px, py


def draw(
    series: list[Series],
    path: Path,
    width: int = 900,
    height: int = 540,
    title: str = "",
    labels: list[str] | None = None,
    x_label: str = "step",
    log_y: bool = False,
) -> None:
    """Write the curves to `path` as a PNG, with axes, ticks, `title` and a legend."""
    canvas = Canvas(width, height)
    frame = Frame(96, 44, width - 24, height - 64, *bounds(series, log_y))
    _axes(canvas, frame, log_y)
    canvas.text((width - text_width(title, 2)) // 2, 12, title, scale=2)
    canvas.text((frame.left + frame.right - text_width(x_label, 2)) // 2, height - 26, x_label,
                scale=2)  # fmt: skip
    for index, points in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        finite = [frame.at(x, y) for x, y in plottable(points, log_y)]
        for (ax, ay), (bx, by) in itertools.pairwise(finite):
            canvas.line(ax, ay, bx, by, color, 2)
        if len(finite) == 1:
            canvas.line(*finite[0], *finite[0], color, 4)
    _legend(canvas, frame, labels or [])
    path.write_bytes(canvas.png())


def _axes(canvas: Canvas, frame: Frame, log_y: bool) -> None:
    grey, black = (225, 225, 225), (0, 0, 0)
    for x in nice_ticks(frame.x0, frame.x1):
        px, _ = frame.at(x, frame.y0)
        canvas.line(px, frame.top, px, frame.bottom, grey)
        canvas.line(px, frame.bottom, px, frame.bottom + 5, black)
        label = tick_label(x)
        canvas.text(px - text_width(label) // 2, frame.bottom + 9, label)
    ticks = decade_ticks(frame.y0, frame.y1) if log_y else nice_ticks(frame.y0, frame.y1)
    for y in ticks:
        _, py = frame.at(frame.x0, y)
        canvas.line(frame.left, py, frame.right, py, grey)
        canvas.line(frame.left - 5, py, frame.left, py, black)
        label = tick_label(10**y if log_y else y)
        canvas.text(frame.left - 9 - text_width(label), py - 3, label)
    canvas.line(frame.left, frame.top, frame.left, frame.bottom, black, 2)
    canvas.line(frame.left, frame.bottom, frame.right, frame.bottom, black, 2)


def _legend(canvas: Canvas, frame: Frame, labels: list[str]) -> None:
    """Colour → label, in a white box at the top right of the plot area."""
    if not labels:
        return
    inner = max(text_width(label) for label in labels) + 28
    left, top = frame.right - inner - 8, frame.top + 6
    canvas.box(left, top, inner + 4, len(labels) * 12 + 6, (255, 255, 255))
    for index, label in enumerate(labels):
        y = top + 4 + index * 12
        canvas.line(left + 4, y + 3, left + 18, y + 3, PALETTE[index % len(PALETTE)], 2)
        canvas.text(left + 24, y, label)
