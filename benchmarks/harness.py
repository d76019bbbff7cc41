"""Timing and memory of whole commands, medians over repeats, and the markdown report."""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Sample:
    """One measured command: wall seconds and peak RSS (MiB) of the process tree it waited for."""

    seconds: float
    peak_mib: float
    cpu: float = 0.0  # user + system seconds: steadier than wall time on a loaded machine


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
    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)

    @property
    def peak(self) -> float:
        return max(s.peak_mib for s in self.samples)


class TimedOut(Exception):
    """A peer took longer than the case allows: its sample is a lower bound."""

    def __init__(self, sample: Sample) -> None:
        super().__init__(f"timed out after {sample.seconds:.0f} s")
        self.sample = sample


def run_timed(argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None,
              check: bool = True, timeout: float | None = None) -> Sample:  # fmt: skip
    """Run argv once; wall time, and peak RSS from wait4 (the child and what it waited for)."""
    started = time.perf_counter()
    proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stderr is not None
    killer = threading.Timer(timeout or 1e9, proc.kill)
    killer.start()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    killer.cancel()
    elapsed = time.perf_counter() - started
    if timeout and elapsed >= timeout:
        raise TimedOut(Sample(timeout, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime))
    proc.returncode = os.waitstatus_to_exitcode(status)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err.decode()[-2000:]}")
    return Sample(elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)


def run_worker(argv: Sequence[str], env: dict[str, str] | None = None,
               cwd: Path | None = None, timeout: float | None = None) -> Sample:  # fmt: skip
    """Run a worker that times its own call and prints `seconds=<float>` last: the call's time
    (interpreter and library start-up excluded), and the worker's peak RSS from wait4."""
    import tempfile

    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        started = time.perf_counter()
        killer = threading.Timer(timeout or 1e9, proc.kill)
        killer.start()
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        killer.cancel()
        if timeout and time.perf_counter() - started >= timeout:
            raise TimedOut(Sample(timeout, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime))
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: "
                               f"{err.read().decode()[-2000:]}")  # fmt: skip
    fields = dict(item.split("=", 1) for item in out.decode().split()[-1].split(","))
    return Sample(float(fields["seconds"]), usage.ru_maxrss / 1024, float(fields.get("cpu", 0)))


def repeat(case: str, tool: str, times: int, action: Callable[[], Sample],
           setup: Callable[[], None] | None = None, note: str = "") -> Measure:  # fmt: skip
    """Run `action` `times` times (calling `setup` before each) and collect the samples."""
    measure = Measure(case, tool, note=note)
    for _ in range(times):
        if setup is not None:
            setup()
        try:
            measure.samples.append(action())
        except TimedOut as exc:  # one lower bound is enough: do not wait again
            measure.samples.append(exc.sample)
            measure.note = (note + "; " if note else "") + f"stopped at {exc} (a lower bound)"
            break
    return measure


def timed(action: Callable[[], object]) -> str:
    """For workers: run `action` and return the `seconds=…,cpu=…` line run_worker reads."""
    started, cpu = time.perf_counter(), time.process_time()
    action()
    return f"seconds={time.perf_counter() - started:.6f},cpu={time.process_time() - cpu:.6f}"


def _fmt(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def table(measures: list[Measure], ours: str = "run-project") -> str:
    """Markdown: one row per (case, tool), with the ratio of each tool's median to ours."""
    lines = [
        "| case | tool | median | min–max | CPU | peak RSS | vs run-project |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    by_case: dict[str, list[Measure]] = {}
    for m in measures:
        by_case.setdefault(m.case, []).append(m)
    for case, group in by_case.items():
        base = next((m for m in group if m.tool == ours and m.samples), None)
        for m in group:
            ratio = ""
            if base is not None and m.tool != ours and base.median > 0:
                ratio = f"{m.median / base.median:.1f}x"
                if base.cpu > 0 and m.cpu > 0:
                    ratio += f" (CPU {m.cpu / base.cpu:.1f}x)"
            tool = m.tool + (f" ({m.note})" if m.note else "")
            if not m.samples:
                lines.append(f"| {case} | {tool} | — | — | — | — | |")
                continue
            lines.append(f"| {case} | {tool} | {_fmt(m.median)} | {m.spread} | {_fmt(m.cpu)} | "
                         f"{m.peak:.0f} MiB | {ratio} |")  # fmt: skip
    return "\n".join(lines)
