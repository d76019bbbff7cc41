"""The data cases: hashing inputs (vs hashlib and `dvc add`) and the run store (vs MLflow's
SQLite store). Workers time their own call so interpreter start-up is not counted, except
for `dvc add`, a whole command (its start-up is part of what a user waits for)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import Measure, repeat, run_timed, run_worker
from workspace import REPO, WORK, base_env

HERE = Path(__file__).resolve().parent
SLOW_PEER = 300.0


def _make_data(root: Path, quick: bool) -> tuple[Path, Path]:
    """One big file (1 GiB; quick 256 MiB) and 10,000 files of 10 kB (quick 2,000)."""
    big, small = root / "big", root / "small"
    big.mkdir()
    block = os.urandom(1 << 20)
    with open(big / "big.bin", "wb") as out:
        for i in range(256 if quick else 1024):
            out.write(block[i:] + block[:i])  # distinct blocks: no dedup shortcut anywhere
    for i in range(2_000 if quick else 10_000):
        folder = small / "data" / f"d{i % 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.bin").write_bytes(os.urandom(10_000))
    return big, small


def hashing(peers: Path, times: int, quick: bool) -> list[Measure]:
    """First hash and unchanged re-hash of a big file and of many small files."""
    tmp = Path(tempfile.mkdtemp(dir=WORK, prefix="hash-"))
    big, small = _make_data(tmp, quick)
    env = {**base_env(tmp), "PYTHONPATH": str(REPO)}  # workers import runner from here
    env["DVC_NO_ANALYTICS"] = "1"
    times = min(times, 3)
    measures: list[Measure] = []
    for label, data, target in (("1 GiB file" if not quick else "256 MiB file", big, big / "big.bin"),
                                ("10,000 files, 100 MB" if not quick else "2,000 files, 20 MB",
                                 small, small / "data")):  # fmt: skip
        db = tmp / f"{data.name}-hashes.db"
        ours = [sys.executable, str(HERE / "hash_ops.py"), "ours", str(db), str(target)]
        limit = [sys.executable, str(HERE / "hash_ops.py"), "hashlib", str(target)]
        run_worker(limit, env)  # page cache warm for everyone
        measures += [
            repeat(f"hash {label}, first", "hashlib sha256 (the limit)", times,
                   lambda a=limit: run_worker(a, env)),
            repeat(f"hash {label}, first", "run-project", times, lambda a=ours: run_worker(a, env),
                   setup=lambda d=db: d.unlink(missing_ok=True)),
            repeat(f"hash {label}, unchanged", "run-project", times,
                   lambda a=ours: run_worker(a, env)),
        ]  # fmt: skip
        measures += _dvc(peers, data, target, label, env, times)
    return measures


def _dvc(peers: Path, data: Path, target: Path, label: str, env: dict[str, str],
         times: int) -> list[Measure]:  # fmt: skip
    """`dvc add` in a scratch git+dvc repository holding the data (whole command)."""
    dvc = str(peers.parent / "dvc")
    repo = data
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([dvc, "init", "-q"], cwd=repo, env=env, check=True)
    subprocess.run([dvc, "config", "core.site_cache_dir", str(repo / ".dvc" / "site")], cwd=repo,
                   env=env, check=True)  # fmt: skip
    argv = [dvc, "add", "-q", target.name]

    def reset() -> None:
        for entry in ("cache", "tmp", "site"):
            shutil.rmtree(repo / ".dvc" / entry, ignore_errors=True)
        for dvcfile in repo.glob("*.dvc"):
            if dvcfile.is_file():  # not the .dvc directory itself
                dvcfile.unlink()

    note = "whole command; also copies the data into its cache"
    times = min(times, 2)  # dvc add of 1 GiB copies it too: two samples bound the total time
    first = repeat(f"hash {label}, first", "dvc add", times,
                   lambda: run_timed(argv, env, repo, timeout=SLOW_PEER), setup=reset, note=note)
    again = repeat(f"hash {label}, unchanged", "dvc add", times,
                   lambda: run_timed(argv, env, repo, timeout=SLOW_PEER), note="whole command")
    return [first, again]  # fmt: skip


def store(peers: Path, times: int, quick: bool) -> list[Measure]:
    """List/filter/sort over N runs and ingest N metric points (N = 100,000; quick 20,000)."""
    n = 20_000 if quick else 100_000
    tmp = Path(tempfile.mkdtemp(dir=WORK, prefix="store-"))
    env = {**base_env(tmp), "PYTHONPATH": str(REPO)}  # workers import runner from here
    times = min(times, 3)
    ops = str(HERE / "store_ops.py")
    ours_py, mlflow_py = sys.executable, str(peers)
    run_worker([ours_py, ops, "ours", "populate", str(tmp / "ours"), str(n)], env)
    run_worker([mlflow_py, ops, "mlflow", "populate", str(tmp / "mlflow"), str(n)], env)
    listing = f"list {n:,} runs: filter metric, sort, top 100"
    ingest = f"ingest {n:,} metric points"

    def worker(py: str, tool: str, action: str, root: str, count: int = 0) -> Measure:
        argv = [py, ops, tool, action, str(tmp / root), str(count)]
        case = listing if action == "list" else ingest
        name = "run-project" if tool == "ours" else "mlflow sqlite store"
        note = "" if tool == "ours" else ("search_runs" if action == "list" else "log_batch × 1000")
        # MLflow's search over 100k runs can take minutes: one bounded try says enough.
        limit = 30.0 if quick else 90.0
        return repeat(case, name, times, lambda: run_worker(argv, env, timeout=limit),
                      note=note)  # fmt: skip

    return [
        worker(ours_py, "ours", "list", "ours"),
        worker(mlflow_py, "mlflow", "list", "mlflow"),
        worker(ours_py, "ours", "ingest", "ours-ingest", n),
        worker(mlflow_py, "mlflow", "ingest", "mlflow-ingest", n),
    ]
