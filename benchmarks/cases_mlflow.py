"""MLflow logging inside a run: run-project's per-run endpoint against `mlflow run` with
MLflow's default local store, the same project and the same MLflow client for both.

The project times its own logging (interpreter and `import mlflow` excluded) and reports, on
its last stdout line: the logging's wall time; the CPU time it cost the client and the process
that started it (run-project's runner serves the endpoint; under `mlflow run` the store is in
the client itself and its parent idles); and the peak RSS of the process that keeps the
points (run-project: the runner; MLflow: the client, whose store is in-process).
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from pathlib import Path

from workspace import WORK, base_env, runner_argv
from harness import Measure, Sample, TimedOut, repeat

LOG = """\
import os, sys, time
import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

mode, n = sys.argv[1], int(sys.argv[2])


def cpu_of(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


with mlflow.start_run() as run:  # resumes the run the tool made (MLFLOW_RUN_ID)
    client, run_id, parent = MlflowClient(), run.info.run_id, os.getppid()
    mlflow.log_metric("warm-up", 0.0)  # the first request opens the connection or the database
    started, cpu, parent_cpu = time.perf_counter(), time.process_time(), cpu_of(parent)
    if mode == "calls":
        for i in range(n):
            mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
    else:
        stamp = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric("loss", 1.0 / (i + 1), stamp, i)
                                          for i in range(n)])
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu + cpu_of(parent) - parent_cpu
    serving = parent if os.environ.get("RUN_PROJECT_MLFLOW_URI") else os.getpid()
    peak = peak_mib(serving)  # before the check below: reading a history back costs its own
    points = len(client.get_metric_history(run_id, "loss"))
print(f"seconds={seconds:.6f},cpu={cpu:.6f},peak={peak:.1f},points={points},"
      f"peak_read={peak_mib(serving):.1f}")
"""

MLPROJECT = """\
name: logging
entry_points:
  main:
    parameters: {mode: string, n: int}
    command: "PYTHON log.py {mode} {n}"
"""


def mlflow_logging(peers: Path, times: int, quick: bool) -> list[Measure]:
    """10,000 `mlflow.log_metric` calls; one `log_batch` of 10,000 points (the client sends
    1000 a request, MLflow's limit); one of 1,000,000 points for the peak memory."""
    tmp = Path(tempfile.mkdtemp(dir=WORK, prefix="mlflow-"))
    project = tmp / "logging"
    project.mkdir()
    (project / "MLproject").write_text(MLPROJECT.replace("PYTHON", str(peers)))
    (project / "log.py").write_text(LOG)
    env = base_env(tmp)
    env.pop("MLFLOW_TRACKING_URI")  # each tool's own default: the endpoint, or MLflow's store
    env["MLFLOW_ENABLE_ASYNC_LOGGING"] = "false"

    def tools(mode: str, n: int) -> dict[str, list[str]]:
        args = ["-P", f"mode={mode}", "-P", f"n={n}"]
        ours = [*runner_argv(), str(project), "--env-manager", "local", "-q", *args]
        theirs = [str(peers.parent / "mlflow"), "run", str(project), "--env-manager", "local",
                  *args]  # fmt: skip
        return {"run-project": ours, "mlflow run (default local store)": theirs}

    calls, batch, big = (2_000, 2_000, 100_000) if quick else (10_000, 10_000, 1_000_000)
    measures: list[Measure] = []
    for case, mode, n, repeats in (
        (f"{calls:,} mlflow.log_metric calls in a run", "calls", calls, times),
        (f"one log_batch of {batch:,} points in a run", "batch", batch, times),
        (f"one log_batch of {big:,} points (peak memory)", "batch", big, 1),
    ):
        for tool, argv in tools(mode, n).items():
            cwd = tmp / tool.split()[0]
            cwd.mkdir(exist_ok=True)
            note = "" if tool == "run-project" else "store in the client"
            run = lambda a=argv, c=cwd, k=n: _logged(a, env, c, k)  # noqa: E731
            measures.append(repeat(case, tool, repeats, run, note=note))
    return measures


def _logged(argv: list[str], env: dict[str, str], cwd: Path, points: int) -> Sample:
    """One run of the project: the times and peak memory it reports (see module docstring)."""
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    killer = threading.Timer(1800, proc.kill)
    killer.start()
    started = time.perf_counter()
    out, err = proc.communicate()
    killer.cancel()
    if time.perf_counter() - started >= 1800:
        raise TimedOut(Sample(1800, 0))
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err.decode()[-2000:]}")
    line = next(x for x in reversed(out.decode().splitlines()) if x.startswith("seconds="))
    fields = dict(item.split("=", 1) for item in line.split(","))
    if int(fields["points"]) != points:
        raise RuntimeError(f"{argv[0]}: {fields['points']} points logged, {points} expected")
    return Sample(float(fields["seconds"]), float(fields["peak"]), float(fields["cpu"]))
