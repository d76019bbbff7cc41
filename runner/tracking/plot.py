"""Learning curves to a PNG without plotting libraries (zlib + struct are enough).

matplotlib costs ~0.5 s to import and a large install; a line chart needs neither. The image
has a frame, a light grid and one coloured line per run; the legend (colour → run, axis
ranges) is printed by the caller, since drawing text would need a font.
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from pathlib import Path

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


def bounds(series: list[Series]) -> tuple[float, float, float, float]:
    """(x min, x max, y min, y max) over all finite points (a flat range is widened)."""
    xs = [x for s in series for x, y in s if math.isfinite(y)]
    ys = [y for s in series for _, y in s if math.isfinite(y)]
    if not xs:
        return 0.0, 1.0, 0.0, 1.0
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    return x0, (x1 if x1 > x0 else x0 + 1), y0, (y1 if y1 > y0 else y0 + 1)


def draw(series: list[Series], path: Path, width: int = 800, height: int = 480) -> None:
    """Write the curves to `path` as a PNG."""
    canvas = Canvas(width, height)
    left, top, right, bottom = 40, 20, width - 20, height - 40
    x0, x1, y0, y1 = bounds(series)
    for i in range(5):  # light grid
        gy = top + (bottom - top) * i // 4
        gx = left + (right - left) * i // 4
        canvas.line(left, gy, right, gy, (225, 225, 225))
        canvas.line(gx, top, gx, bottom, (225, 225, 225))
    for a, b, c, d in ((left, top, left, bottom), (left, bottom, right, bottom)):
        canvas.line(a, b, c, d, (0, 0, 0), 2)

    def at(x: float, y: float) -> tuple[int, int]:
        px = left + round((x - x0) / (x1 - x0) * (right - left))
        py = bottom - round((y - y0) / (y1 - y0) * (bottom - top))
        return px, py

    for index, points in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        finite = [at(x, y) for x, y in points if math.isfinite(y)]
        for (ax, ay), (bx, by) in itertools.pairwise(finite):
            canvas.line(ax, ay, bx, by, color, 2)
        if len(finite) == 1:
            canvas.line(*finite[0], *finite[0], color, 4)
    path.write_bytes(canvas.png())
