"""The web UI beside MLflow's own server on the same data: the runs page and a long curve.

    python benchmarks/ui_bench.py [--runs 100000] [--points 1000000] [--repeat 7] [--write]
                                  [--skip-mlflow]

Fills a run-project store and an MLflow SQLite store with the same N runs (store_ops.py's
populate helpers, bulk SQL) plus one run with a metric of P points, starts `run-project ui`
and `mlflow server` on 127.0.0.1, and times HTTP requests from this process (median of the
repeats after one warm-up; a request to 127.0.0.1 adds well under a millisecond):

- the first page of the runs table, newest first (ours: `/`; MLflow: `runs/search`, 50 runs,
  ordered by start time, as its UI asks);
- the table filtered and sorted (`acc > 0.5`, by acc descending, 100 runs);
- the page of the run with the long curve (ours: the whole run page, its curve cut to 1,280
  points in SQL; MLflow: `metrics/get-history` for that metric, every point, which is what its
  UI's chart fetches for one run, and `get-history-bulk-interval`, its sampled variant).

MLflow comes from PyPI into benchmarks/work/peers-venv (as bench.py). `--write` puts the table
in RESULTS.md between the `web UI` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work" / "ui"
CURVE_RUN = "f" * 32
TIMEOUT = 300.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--skip-mlflow", action="store_true", help="measure run-project only")
    ns = parser.parse_args()
    mlflow_python = _peers()
    ours_dir, theirs_dir = _populate(ns.runs, ns.points, mlflow_python)
    rows: list[tuple[str, str, list[float]]] = []
    with _ours(ours_dir) as base:
        rows += _measure_ours(base, ns.repeat)
    if not ns.skip_mlflow:
        with _mlflow(theirs_dir, mlflow_python) as base:
            rows += _measure_mlflow(base, ns.repeat)
    text = _table(rows, ns.runs, ns.points)
    print(text)
    if ns.write:
        _write(text)
    return 0


def _peers() -> Path:
    """bench.py's peers venv (made once), through the uv it finds off PATH too."""
    sys.path.insert(0, str(HERE))
    from workspace import peers_python

    return peers_python()


def _populate(runs: int, points: int, mlflow_python: Path) -> tuple[Path, Path]:
    ours, theirs = WORK / f"ours-{runs}-{points}", WORK / f"mlflow-{runs}-{points}"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if not (ours / "done").exists():
        subprocess.run([sys.executable, str(HERE / "store_ops.py"), "ours", "populate",
                        str(ours), str(runs)], check=True, env=env)  # fmt: skip
        _ours_curve(ours, points)
        (ours / "done").write_text("")
    if not (theirs / "done").exists():
        subprocess.run([str(mlflow_python), str(HERE / "store_ops.py"), "mlflow", "populate",
                        str(theirs), str(runs)], check=True)  # fmt: skip
        _mlflow_curve(theirs, points)
        (theirs / "done").write_text("")
    return ours, theirs


def _ours_curve(root: Path, points: int) -> None:
    """One more run whose metric `loss` has `points` points (bulk SQL, as populate does)."""
    sys.path.insert(0, str(REPO))
    from runner.tracking import runindex

    with sqlite3.connect(root / "runs.db") as conn:
        record = json.loads(conn.execute("SELECT record FROM runs LIMIT 1").fetchone()[0])
        record.update(id=CURVE_RUN, run_name="long-curve",
                      metrics={"loss": {"last": 1.0 / points, "count": points}})  # fmt: skip
        conn.execute("INSERT INTO runs (id, experiment, run_name, status, start_time, end_time,"
                     " heartbeat_at, host, runner_pid, exit_code, record) VALUES"
                     " (?, 'curve', 'long-curve', 'FINISHED', 0, 0, 0, 'bench', 1, 0, ?)",
                     (CURVE_RUN, json.dumps(record)))  # fmt: skip
        conn.executemany(f"INSERT INTO run_values ({', '.join(runindex.COLUMNS)})"
                         " VALUES (?,?,?,?,?,?)",
                         [(CURVE_RUN, *v) for v in runindex.values(record)])  # fmt: skip
        conn.executemany("INSERT INTO metrics (run_id, key, value, step, ts) VALUES (?,?,?,?,?)",
                         ((CURVE_RUN, "loss", 1.0 / (i + 1), i, 1e9 + i / 1000)
                          for i in range(points)))  # fmt: skip


def _mlflow_curve(root: Path, points: int) -> None:
    with sqlite3.connect(root / "mlflow.db") as conn:
        exp = conn.execute("SELECT experiment_id FROM experiments WHERE name='bench'").fetchone()
        cols = [c[1] for c in conn.execute("PRAGMA table_info(runs)").fetchall()]
        row = dict(zip(cols, conn.execute("SELECT * FROM runs LIMIT 1").fetchone(), strict=True))
        row.update(run_uuid=CURVE_RUN, name="long-curve", experiment_id=exp[0], start_time=0)
        conn.execute(f"INSERT INTO runs ({','.join(row)}) VALUES ({','.join('?' * len(row))})",
                     list(row.values()))  # fmt: skip
        conn.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan)"
                         " VALUES ('loss', ?, ?, ?, ?, 0)",
                         ((1.0 / (i + 1), 10**12 + i, CURVE_RUN, i) for i in range(points)))
        conn.execute("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
                     " VALUES ('loss', ?, ?, ?, 0, ?)",
                     (1.0 / points, 10**12 + points, points - 1, CURVE_RUN))  # fmt: skip


@contextmanager
def _server(argv: list[str], ready: str, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    log = open(WORK / f"server-{Path(argv[0]).name}.log", "w")  # noqa: SIM115 (kept open)
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 600  # mlflow server takes minutes on a busy machine
        while True:
            try:
                urllib.request.urlopen(ready, timeout=TIMEOUT).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server is not up; see {log.name}") from None
                time.sleep(0.5)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers, by process group
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # still busy with a request it will never finish
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def _ours(root: Path) -> Iterator[str]:
    base = "http://127.0.0.1:5071"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = [sys.executable, "-m", "runner", "ui", "--store", str(root), "--port", "5071"]
    with _server(argv, base + "/static/style.css", env):
        yield base


@contextmanager
def _mlflow(root: Path, python: Path) -> Iterator[str]:
    base = "http://127.0.0.1:5072"
    argv = [str(python.parent / "mlflow"), "server", "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}", "--host", "127.0.0.1", "--port", "5072",
            "--workers", "1"]  # fmt: skip
    with _server(argv, base + "/health", dict(os.environ)):
        yield base


FAILURES: dict[int, str] = {}  # id of a case's times list -> what went wrong


def _timed(call: Callable[[], bytes], repeat: int, warm: bool = True) -> list[float]:
    """Seconds per request; a request that fails ends the case (the table says how)."""
    times: list[float] = []
    started = time.perf_counter()
    try:
        if warm:
            call()  # warm-up: connections, caches, the database's pages
        for _ in range(repeat):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
    except OSError as exc:
        times.append(time.perf_counter() - started)
        FAILURES[id(times)] = f"failed after {_fmt(times[-1])}: {exc}"
    return times


SERVER_TIMES: dict[str, list[float]] = {}


def _get(url: str) -> Callable[[], bytes]:
    def call() -> bytes:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
            timing = answer.headers.get("Server-Timing", "")
            if "dur=" in timing:  # run-project ui says how long it worked on the answer
                wall, cpu = (float(part.split("dur=")[1]) / 1000 for part in timing.split(","))
                SERVER_TIMES.setdefault(url, []).append(wall)
                SERVER_TIMES.setdefault(url + "#cpu", []).append(cpu)
            return bytes(answer.read())

    return call


def _server_time(url: str) -> str:
    """`server W, CPU C`: medians after the warm-up, from the Server-Timing header."""
    wall, cpu = SERVER_TIMES.get(url, [])[1:], SERVER_TIMES.get(url + "#cpu", [])[1:]
    if not wall:
        return ""
    return f"server {_fmt(statistics.median(wall))}, CPU {_fmt(statistics.median(cpu))}"


def _post(url: str, body: dict[str, object]) -> Callable[[], bytes]:
    data = json.dumps(body).encode()

    def call() -> bytes:
        request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
        return urllib.request.urlopen(request, timeout=TIMEOUT).read()

    return call


def _measure_ours(base: str, repeat: int) -> list[tuple[str, str, list[float]]]:
    urls = [base + "/", base + "/?experiment=bench&metric=acc%3E0.5&sort=-metric.acc&per=100",
            f"{base}/runs/{CURVE_RUN}"]  # fmt: skip
    first, filtered, curve = (_get(u) for u in urls)
    assert b'id="shown"' in first()
    assert re.search(rb'class="curve"', curve())
    SERVER_TIMES.clear()
    rows = [
        ("runs page: newest 50", "run-project ui", _timed(first, repeat)),
        ("runs page: acc > 0.5, by acc, 100", "run-project ui", _timed(filtered, repeat)),
        ("run page with the long curve", "run-project ui (whole page)", _timed(curve, repeat)),
    ]
    return [(case, f"{tool} ({_server_time(u)})", t)
            for (case, tool, t), u in zip(rows, urls, strict=True)]  # fmt: skip


def _measure_mlflow(base: str, repeat: int) -> list[tuple[str, str, list[float]]]:
    search = base + "/api/2.0/mlflow/runs/search"
    exp = json.loads(_get(base + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=bench")())
    ids = [exp["experiment"]["experiment_id"]]
    first = _post(search, {"experiment_ids": ids, "max_results": 50,
                           "order_by": ["attributes.start_time DESC"]})  # fmt: skip
    filtered = _post(search, {"experiment_ids": ids, "max_results": 100,
                              "filter": "metrics.acc > 0.5", "order_by": ["metrics.acc DESC"]})
    history = _get(f"{base}/api/2.0/mlflow/metrics/get-history?run_id={CURVE_RUN}"
                   "&metric_key=loss&max_results=1000000")  # fmt: skip
    sampled = _get(f"{base}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?"
                   f"run_ids={CURVE_RUN}&metric_key=loss&max_results=1280")  # fmt: skip
    # Its filtered search and full history take minutes at full size: one request each, no
    # warm-up (the table says so).
    return [
        ("runs page: newest 50", "mlflow server (runs/search)", _timed(first, repeat)),
        ("runs page: acc > 0.5, by acc, 100", "mlflow server (runs/search; 1 request)",
         _timed(filtered, 1, warm=False)),
        ("run page with the long curve", "mlflow server (get-history, all points; 1 request)",
         _timed(history, 1, warm=False)),
        ("run page with the long curve", "mlflow server (get-history-bulk-interval)",
         _timed(sampled, repeat)),
    ]  # fmt: skip


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _table(rows: list[tuple[str, str, list[float]]], runs: int, points: int) -> str:
    ours = {case: statistics.median(t) for case, tool, t in rows if tool.startswith("run-")}
    lines = [
        "<!-- web UI: benchmarks/ui_bench.py -->",
        "## Web UI",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {runs:,} runs · a curve of "
        f"{points:,} points · `python benchmarks/ui_bench.py`. Time of one HTTP request from "
        "127.0.0.1 (median after a warm-up); `vs run-project` is the peer's median over ours.",
        "",
        "| case | server | median | min–max | vs run-project |",
        "|---|---|---:|---:|---:|",
    ]
    for case, tool, times in rows:
        if id(times) in FAILURES:
            lines.append(f"| {case} | {tool} | {FAILURES[id(times)]} | | |")
            continue
        median = statistics.median(times)
        ratio = "" if tool.startswith("run-") else f"{median / ours[case]:.1f}x"
        lines.append(f"| {case} | {tool} | {_fmt(median)} | {_fmt(min(times))}–"
                     f"{_fmt(max(times))} | {ratio} |")  # fmt: skip
    lines.append("<!-- end web UI -->")
    return "\n".join(lines)


def _write(text: str) -> None:
    results = HERE / "RESULTS.md"
    old = results.read_text()
    kept = re.sub(r"\n?<!-- web UI:.*?<!-- end web UI -->\n?", "\n", old, flags=re.S)
    results.write_text(kept.rstrip("\n") + "\n\n" + text + "\n")


if __name__ == "__main__":
    sys.exit(main())
