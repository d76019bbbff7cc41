"""Side-by-side benchmarks of run-project against MLflow (and DVC, hashlib) in one run.

    python benchmarks/bench.py [--quick] [--repeat N] [--only warm,env,git,hash,store,mlflow]

Installs MLflow and DVC from PyPI into benchmarks/work/peers-venv (once), runs every case for
every tool on the same inputs, and prints a markdown table of medians (min–max) and peak RSS,
with each peer's time as a multiple of run-project's. `--write` also saves it to RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases
import harness
from harness import Measure, table
from workspace import HERE, PEERS, WORK, install_runner, peers_python, uv_bin


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--repeat", type=int, default=0, help="repeats per measurement")
    parser.add_argument("--only", default="warm,env,git,hash,store,mlflow")
    parser.add_argument("--keep", action="store_true", help="keep benchmarks/work/ scratch dirs")
    parser.add_argument("--write", action="store_true", help="also write benchmarks/RESULTS.md")
    args = parser.parse_args()
    repeat = args.repeat or (3 if args.quick else 5)
    WORK.mkdir(parents=True, exist_ok=True)
    peers = peers_python()
    install_runner()
    started = time.monotonic()
    load_before = os.getloadavg()
    measures: list[Measure] = []
    for name in args.only.split(","):
        print(f"== {name} ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
        measures += cases.CASES[name](peers, repeat, args.quick)
        print(harness.table(measures[-8:]), file=sys.stderr, flush=True)
    if not args.keep:
        for scratch in WORK.iterdir():
            if scratch != PEERS:
                shutil.rmtree(scratch, ignore_errors=True)
    report = render(measures, time.monotonic() - started, args.quick, load_before, peers)
    print(report)
    if args.write:
        (HERE / "RESULTS.md").write_text(report + "\n")
    return 0


def render(measures: list[Measure], seconds: float, quick: bool,
           load_before: tuple[float, float, float], peers: Path) -> str:  # fmt: skip
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    head = (
        f"# Benchmark results\n\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · "
        f"{platform.system()} {platform.machine()} · {os.cpu_count()} cores · {cpu} · "
        f"Python {platform.python_version()} · {'quick' if quick else 'full'} sizes · "
        f"whole run {seconds:.0f} s\n\n"
        f"Load average (1/5/15 min) at the start {_load(load_before)}, at the end "
        f"{_load(os.getloadavg())}. Wall times grow with other work on the machine; CPU "
        "(user+system) times and the ratios are steadier.\n\n"
        f"Peers: {_versions(peers)}.\n\n"
        "Medians of repeated runs (min–max shown); `vs run-project` is the peer's median "
        "divided by run-project's (higher is better for run-project). Peak RSS is the largest "
        "resident set of the measured process tree.\n\n"
    )
    return head + table(measures)


def _load(avg: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.1f}" for x in avg)


def _versions(peers: Path) -> str:
    code = "import mlflow, dvc.version; print(mlflow.__version__, dvc.version.__version__)"
    out = subprocess.run([str(peers), "-c", code], capture_output=True, text=True).stdout.split()
    uv = subprocess.run([uv_bin(), "--version"], capture_output=True, text=True)
    names = ("mlflow", "dvc")
    return ", ".join(f"{n} {v}" for n, v in zip(names, out)) + f", {uv.stdout.strip()}"


if __name__ == "__main__":
    sys.exit(main())
