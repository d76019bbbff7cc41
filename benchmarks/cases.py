"""The benchmark cases that run whole commands: warm start, environment build, git.
Each takes (peers venv python, repeats, quick) → measures."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cases_data
import cases_mlflow
from harness import Measure, repeat, run_timed
from workspace import WORK, base_env, runner_argv

TRIVIAL = 'name: trivial\nentry_points:\n  main:\n    command: "python -c pass"\n'
SLOW_PEER = 300.0  # a peer command slower than this is stopped and shown as a lower bound


def _mlflow(peers: Path, uri: str, manager: str) -> list[str]:
    return [str(peers.parent / "mlflow"), "run", uri, "-e", "main", "--env-manager", manager]


def warm_start(peers: Path, times: int, quick: bool) -> list[Measure]:
    """A trivial entry point (`python -c pass`), environments warm: pure runner overhead."""
    tmp = Path(tempfile.mkdtemp(dir=WORK, prefix="warm-"))
    project = tmp / "trivial"
    project.mkdir()
    (project / "MLproject").write_text(TRIVIAL)
    env = base_env(tmp)
    ours = [*runner_argv(), str(project), "-e", "main", "--env-manager", "local", "-q"]
    mlflow = _mlflow(peers, str(project), "local")
    run_timed(ours, env, tmp)  # first run validates and caches the manifest
    run_timed(mlflow, env, tmp)
    case = "warm start (python -c pass)"
    return [
        repeat(case, "bare command", times, lambda: run_timed(["python", "-c", "pass"], env, project)),
        repeat(case, "run-project", times, lambda: run_timed(ours, env, tmp)),
        repeat(case, "mlflow run --env-manager local", times, lambda: run_timed(mlflow, env, tmp)),
    ]  # fmt: skip


def env_build(peers: Path, times: int, quick: bool) -> list[Measure]:
    """numpy + scikit-learn + pyyaml: cold (empty env cache, warm package cache) and warm."""
    tmp = Path(tempfile.mkdtemp(dir=WORK, prefix="env-"))
    project = tmp / "envproj"
    project.mkdir()
    (project / "MLproject").write_text(
        "name: envproj\npython_env: python_env.yaml\n"
        'entry_points:\n  main:\n    command: "python -c pass"\n'
    )
    (project / "python_env.yaml").write_text(
        'python: "3.11.7"\nbuild_dependencies:\n  - pip\n'
        "dependencies:\n  - numpy\n  - scikit-learn\n  - pyyaml\n"
    )
    env = base_env(tmp)
    env["MLFLOW_ENV_ROOT"] = str(tmp / "mlflow-envs")
    ours = [*runner_argv(), str(project), "-e", "main", "--env-manager", "virtualenv", "-q"]
    tools = [("run-project", ours, tmp / "cache")]
    for manager in ("virtualenv", "uv"):
        tools.append((f"mlflow run --env-manager {manager}", _mlflow(peers, str(project), manager),
                      tmp / "mlflow-envs"))  # fmt: skip
    cold_times = 1 if quick else 2  # MLflow's pip builds take most of the whole run
    times = min(times, 3)
    measures = []
    for tool, argv, cache in tools:
        _wipe(cache)
        try:
            run_timed(argv, env, tmp, timeout=SLOW_PEER)  # warms uv's / pip's package cache
        except Exception as exc:  # e.g. mlflow's virtualenv manager without pyenv
            measures.append(Measure("env build cold", tool, note=f"failed: {str(exc)[:160]}"))
            continue
        measures.append(repeat("env build cold (numpy+scikit-learn+pyyaml)", tool, cold_times,
                               lambda a=argv: run_timed(a, env, tmp, timeout=SLOW_PEER),
                               setup=lambda c=cache: _wipe(c)))  # fmt: skip
        measures.append(repeat("env warm (cached env)", tool, times,
                               lambda a=argv: run_timed(a, env, tmp, timeout=SLOW_PEER)))  # fmt: skip
    return measures


def _wipe(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def git_runs(peers: Path, times: int, quick: bool) -> list[Measure]:
    """A project served by `git daemon` on 127.0.0.1: first run (empty cache) and second."""
    tmp = Path(tempfile.mkdtemp(dir=WORK, prefix="git-"))
    src, served = tmp / "src", tmp / "served"
    src.mkdir()
    (src / "MLproject").write_text(TRIVIAL)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q", "-b", "main", str(src)], check=True)
    subprocess.run([*git, "-C", str(src), "add", "."], check=True)
    subprocess.run([*git, "-C", str(src), "commit", "-qm", "trivial"], check=True)
    served.mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(src), str(served / "proj.git")], check=True)
    sha = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip
    env = base_env(tmp)
    with _git_daemon(served) as url:
        ours = [*runner_argv(), url, "-e", "main", "--env-manager", "local", "-q"]
        pinned = [*ours, "-v", sha]  # a known commit: answered from the mirror, no fetch
        mlflow = _mlflow(peers, url, "local")
        cache = tmp / "cache"
        run_timed(mlflow, env, tmp)
        return [
            repeat("git first run (empty cache)", "run-project", times,
                   lambda: run_timed(ours, env, tmp), setup=lambda: _wipe(cache)),
            repeat("git first run (empty cache)", "mlflow run", times,
                   lambda: run_timed(mlflow, env, tmp)),
            repeat("git second run (same commit)", "run-project", times,
                   lambda: run_timed(ours, env, tmp), note="asks the server for the branch"),
            repeat("git second run (same commit)", "run-project -v SHA", times,
                   lambda: run_timed(pinned, env, tmp), note="no fetch"),
            repeat("git second run (same commit)", "mlflow run", times,
                   lambda: run_timed(mlflow, env, tmp), note="clones again every run"),
        ]  # fmt: skip


@contextmanager
def _git_daemon(base: Path) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={base}",
                             "--listen=127.0.0.1", f"--port={port}", str(base)])  # fmt: skip
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"git://127.0.0.1:{port}/proj.git"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


CASES: dict[str, Callable[[Path, int, bool], list[Measure]]] = {
    "warm": warm_start,
    "env": env_build,
    "git": git_runs,
    "hash": cases_data.hashing,
    "store": cases_data.store,
    "mlflow": cases_mlflow.mlflow_logging,
}
