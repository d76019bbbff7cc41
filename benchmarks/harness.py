"""Timing and memory of whole commands, medians over repeats, and the markdown report."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Sample:
    """One measured command: wall seconds and peak RSS (MiB) of the process tree it waited for."""

    seconds: float
    peak_mib: float


@dataclass
class Measure:
    """Repeated samples of one tool on one case."""

    case: str
    tool: str
    samples: list[Sample] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def spread(self) -> str:
        times = [s.seconds for s in self.samples]
        return f"{_fmt(min(times))}–{_fmt(max(times))}"

    @property
    def peak(self) -> float:
        return max(s.peak_mib for s in self.samples)


def run_timed(argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None,
              check: bool = True) -> Sample:  # fmt: skip
    """Run argv once; wall time, and peak RSS from wait4 (the child and what it waited for)."""
    started = time.perf_counter()
    proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err.decode()[-2000:]}")
    return Sample(elapsed, usage.ru_maxrss / 1024)


def repeat(case: str, tool: str, times: int, action: Callable[[], Sample],
           setup: Callable[[], None] | None = None, note: str = "") -> Measure:  # fmt: skip
    """Run `action` `times` times (calling `setup` before each) and collect the samples."""
    measure = Measure(case, tool, note=note)
    for _ in range(times):
        if setup is not None:
            setup()
        measure.samples.append(action())
    return measure


def time_call(action: Callable[[], object]) -> Sample:
    """An in-process call: wall time and this process's peak RSS so far."""
    import resource

    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    return Sample(elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _fmt(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def table(measures: list[Measure], ours: str = "run-project") -> str:
    """Markdown: one row per (case, tool), with the ratio of each tool's median to ours."""
    lines = [
        "| case | tool | median | min–max | peak RSS | vs run-project |",
        "|---|---|---:|---:|---:|---:|",
    ]
    by_case: dict[str, list[Measure]] = {}
    for m in measures:
        by_case.setdefault(m.case, []).append(m)
    for case, group in by_case.items():
        base = next((m.median for m in group if m.tool == ours), None)
        for m in group:
            ratio = "" if base is None or m.tool == ours or base == 0 else f"{m.median / base:.1f}x"
            tool = m.tool + (f" ({m.note})" if m.note else "")
            lines.append(f"| {case} | {tool} | {_fmt(m.median)} | {m.spread} | "
                         f"{m.peak:.0f} MiB | {ratio} |")  # fmt: skip
    return "\n".join(lines)
