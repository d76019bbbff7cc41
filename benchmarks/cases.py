"""The benchmark cases. Each takes (peers venv python, repeats, quick) → measures."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from bench import WORK, base_env, runner_argv
from harness import Measure, repeat, run_timed


def warm_start(peers: Path, times: int, quick: bool) -> list[Measure]:
    """A trivial entry point (`python -c pass`), environments warm: pure runner overhead."""
    tmp = Path(tempfile.mkdtemp(dir=WORK, prefix="warm-"))
    project = tmp / "trivial"
    project.mkdir()
    (project / "MLproject").write_text(
        "name: trivial\nentry_points:\n  main:\n    command: \"python -c pass\"\n"
    )
    env = base_env(tmp)
    ours = [*runner_argv(), str(project), "-e", "main", "--env-manager", "local", "-q"]
    mlflow = [str(peers.parent / "mlflow"), "run", str(project), "-e", "main",
              "--env-manager", "local"]  # fmt: skip
    run_timed(ours, env, tmp)  # first run validates and caches the manifest
    run_timed(mlflow, env, tmp)
    return [
        repeat("warm start (python -c pass)", "bare command", times,
               lambda: run_timed(["python", "-c", "pass"], env, project)),
        repeat("warm start (python -c pass)", "run-project", times, lambda: run_timed(ours, env, tmp)),
        repeat("warm start (python -c pass)", "mlflow run", times, lambda: run_timed(mlflow, env, tmp)),
    ]  # fmt: skip


CASES: dict[str, Callable[[Path, int, bool], list[Measure]]] = {
    "warm": warm_start,
}
