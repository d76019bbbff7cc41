"""Plain-text tables that fit the terminal: long cells are cut with `…`, and when even the
cut table is too wide the least useful columns are left out (an empty one first).

Fitted to `$COLUMNS`, else to the terminal; a table written to a pipe or a file is not cut,
so `grep` and `awk` see every cell whole (`COLUMNS=100 run-project runs list | ...` cuts).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass

GAP = "  "


def ellipsized(text: str, width: int) -> str:
    """`text` cut to `width` characters, its end replaced by `…` when cut."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def keeping_end(text: str, width: int) -> str:
    """`text` cut to `width` characters from its start: a path's end says the most."""
    return text if len(text) <= width else "…" + text[len(text) - width + 1 :]


def shorter_time(stamp: str, width: int) -> str:
    """`2026-12-08 01:41:30` without its seconds (16 characters), then its year (11)."""
    if len(stamp) <= width:
        return stamp
    return stamp[:16] if width >= 16 else stamp[5:16]


TIME_STEPS = (16, 11)  # the widths shorter_time makes use of


@dataclass
class Column:
    """One column: its title, its cells, and how it may be narrowed."""

    title: str
    cells: list[str]
    #: the narrowest it may be cut to (never below its title); None: never cut
    shortest: int | None = None
    #: when the table is still too wide, lower ranks are left out first; None: always shown
    drop_rank: int | None = None
    cut: Callable[[str, int], str] = ellipsized
    #: the only widths `cut` makes use of, widest first (a time drops its seconds, then its
    #: year); empty: any width
    steps: tuple[int, ...] = ()

    def narrower(self, width: int) -> int:
        """The next width below `width` worth cutting to."""
        return max([s for s in self.steps if s < width], default=width - 1)

    @property
    def natural(self) -> int:
        return max([len(self.title), *map(len, self.cells)])

    @property
    def narrowest(self) -> int:
        if self.shortest is None:
            return self.natural
        return min(self.natural, max(self.shortest, len(self.title)))


def terminal_width() -> int | None:
    """The width to fit: `$COLUMNS`, else the terminal's; None when stdout is not a terminal."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def render(columns: list[Column], width: int | None) -> list[str]:
    """The table's lines (title first), fitted to `width` (None: as wide as its cells)."""
    shown = _kept(columns, width) if width else columns
    widths = _widths(shown, width) if width else [c.natural for c in shown]
    rows = [[c.title for c in shown]] + [
        list(cells) for cells in zip(*(c.cells for c in shown), strict=True)
    ]
    return [
        GAP.join(
            column.cut(cell, wide).ljust(wide) if index else cell.ljust(wide)
            for column, cell, wide in zip(shown, row, widths, strict=True)
        ).rstrip()
        for index, row in enumerate(rows)
    ]


def _kept(columns: list[Column], width: int) -> list[Column]:
    """The columns left once those least useful are dropped until the narrowest table fits."""
    kept = list(columns)
    while _floor(kept) > width:
        droppable = [c for c in kept if c.drop_rank is not None]
        if not droppable:
            break
        empty = [c for c in droppable if not any(c.cells)]
        kept.remove(empty[0] if empty else min(droppable, key=lambda c: c.drop_rank or 0))
    return kept


def _floor(columns: list[Column]) -> int:
    return sum(c.narrowest for c in columns) + len(GAP) * (len(columns) - 1)


def _widths(columns: list[Column], width: int) -> list[int]:
    """Each column's width: the widest cut a step at a time until the table fits."""
    widths = [c.natural for c in columns]
    excess = sum(widths) + len(GAP) * (len(columns) - 1) - width
    while excess > 0:
        slack = [(w, i) for i, (w, c) in enumerate(zip(widths, columns, strict=True))
                 if w > c.narrowest]  # fmt: skip
        if not slack:
            break
        index = max(slack)[1]
        narrower = max(columns[index].narrower(widths[index]), columns[index].narrowest)
        excess -= widths[index] - narrower
        widths[index] = narrower
    return widths
