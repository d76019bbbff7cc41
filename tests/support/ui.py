"""The web UI under test: a store with real runs (some hostile), and `run-project ui` started
as a user starts it, in a subprocess on a free 127.0.0.1 port, stopped by its PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.cli import REPO, cli
from support.git_servers import commit

# Each payload sets window.__pwned if the page ever runs it as code.
SCRIPT = "<script>window.__pwned=1</script>"
IMG = "<img src=x onerror=window.__pwned=2>"
ATTR = "\"'><svg onload=window.__pwned=3>"
FILE_NAME = "<img src=x onerror=window.__pwned=4>.txt"

TRAIN = f"""\
import os, sys
import run_project_client as rp

lr, note = float(sys.argv[1]), sys.argv[2]
steps = int(sys.argv[3])
rp.log_metrics({{"loss": 1.0 / (lr * 10 + 1), "acc": lr}}, step=0)
for step in range(1, steps):
    rp.log_metric("loss", 1.0 / (step * lr * 10 + 1), step=step)
rp.log_param("hostile", {ATTR!r})
rp.set_tag("note", {IMG!r})
out = os.environ["RUN_PROJECT_OUTPUT_DIR"]
with open(os.path.join(out, {FILE_NAME!r}), "w") as f:
    f.write("payload file")
with open("model.txt", "w") as f:
    f.write(f"model {{lr}}")
print("trained", lr, note)
"""

MLPROJECT = """\
name: ui-demo
entry_points:
  main:
    parameters:
      lr: {type: float, default: 0.1}
      note: {type: string, default: plain}
      steps: {type: int, default: 50}
    command: "python train.py {lr} {note} {steps}"
  wait:
    parameters:
      gate: {type: string}
    command: "python wait.py {gate}"
"""

WAIT = """\
import os, sys, time
print("first line", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.1)
print("second line after the gate", flush=True)
while os.path.exists(sys.argv[1]):
    time.sleep(0.1)
"""


def demo_project(root: Path) -> Path:
    """A git project (with an uncommitted edit) that logs curves, a hostile param, tag and file
    name; and an entry point that waits."""
    commit(root, {"MLproject": MLPROJECT, "train.py": TRAIN, "wait.py": WAIT})
    with open(root / "train.py", "a") as edit:
        edit.write("# an uncommitted edit\n")
    return root


def fill_store(project: Path, store: str, cwd: Path) -> list[str]:
    """Three finished runs (lr 0.1, 0.2, 0.3; the first with a <script> param value); their ids,
    newest last."""
    ids = []
    for lr, note in (("0.1", SCRIPT), ("0.2", "plain"), ("0.3", "plain")):
        result = cli(str(project), "-q", "-P", f"lr={lr}", "-P", f"note={note}", "--store", store,
                     cwd=cwd)  # fmt: skip
        assert result.code == 0, result.text
        listed = cli("runs", "list", "--store", store, "--json", "--limit", "1", cwd=cwd)
        ids.append(json.loads(listed.out)[0]["id"])
    return ids


@contextmanager
def ui_server(
    store: str, cwd: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[str]:
    """`run-project ui --port 0`; yields its URL (from its first line); stopped by PID."""
    env = dict(os.environ, **(env or {}), PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "ui", "--store", store, "--port", "0", *extra],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line.startswith("run-project ui: http://"), line + proc.stderr.read()
        yield line.split(": ", 1)[1].strip().rstrip("/")
    finally:
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
