"""The runner's side of `conda_worker`: hand it a request, relay its progress, read its
result, and turn its failures into EnvErrors that say what to fix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from runner import settings
from runner.envs.conda import channels
from runner.errors import EnvError
from runner.pids import die_with_parent
from runner.progress import Progress


def run_worker(
    request: dict[str, Any], into: Path, final: Path, work: Path, progress: Progress
) -> list[dict[str, Any]]:
    """Run `conda_worker` on `request`; its records, or an EnvError saying what failed."""
    pkgs = settings.cache_dir() / "conda-pkgs"
    request = {**request, "prefix": str(into), "final": str(final), "pkgs_dir": str(pkgs),
               "repodata_dir": str(settings.cache_dir() / "conda-repodata")}  # fmt: skip
    (work / "request.json").write_text(json.dumps(request))
    result_path = work / "result.json"
    code = _spawn([str(work / "request.json"), str(result_path)], work, progress)
    try:
        result = json.loads(result_path.read_text())
    except (OSError, ValueError):
        stderr = (work / "worker.stderr").read_text(errors="replace")[-2000:]
        raise EnvError(
            f"the conda installer (py-rattler) died with exit code {code} before finishing:\n"
            + channels.redact(stderr),
            "run again; if it repeats, report it with this output",
        ) from None
    if not result["ok"]:
        raise _worker_error(result)
    records: list[dict[str, Any]] = result["records"]
    return records


def _spawn(args: list[str], work: Path, progress: Progress) -> int:
    import importlib.util

    if importlib.util.find_spec("rattler") is None:
        raise EnvError(
            "conda environments need py-rattler, which is not installed",
            "pip install 'run-project[conda]' (or: pip install py-rattler)",
        )
    env = dict(os.environ)
    # The worker imports this very package, wherever it was run from.
    root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    with open(work / "worker.stderr", "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner.envs.conda.worker", *args],
            stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, env=env, text=True,
            preexec_fn=die_with_parent(signal.SIGKILL),
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                _relay(line, progress)
            return proc.wait()
        except BaseException:  # Ctrl-C or SIGTERM: stop the worker before cache.py cleans up
            proc.kill()
            proc.wait()
            raise


def _relay(line: str, progress: Progress) -> None:
    try:
        event = json.loads(line)
    except ValueError:
        return
    if isinstance(event, dict) and event.get("step"):
        progress.step(str(event["step"]))
    elif isinstance(event, dict) and event.get("update"):
        progress.update(str(event["update"]))


def _worker_error(result: dict[str, Any]) -> EnvError:
    message = channels.redact(str(result.get("message", "")))
    kind = result.get("error")
    hints = {
        "unsatisfiable": "relax the version constraints named above in the conda environment file",
        "spec": "fix that dependency line: conda match specs look like `numpy >=1.26,<2`",
        "channel": "check the channels: list",
        "fetch": "check the channel names and the channel alias (--channel-alias, "
        "RUN_PROJECT_CHANNEL_ALIAS); is the mirror reachable?",
        "hash": "the channel served a file other than the one it (or the lock) names; "
        "check the mirror, or regenerate the lock file",
        "install": "if it says hash mismatch, the channel or mirror serves corrupt or altered "
        "packages; otherwise check disk space and the package named above",
    }
    whats = {"unsatisfiable": "the conda environment cannot be solved",
             "hash": "a conda package failed its hash check",
             "spec": "the conda environment file has a malformed dependency"}  # fmt: skip
    what = whats.get(str(kind), "conda failed")
    return EnvError(f"{what}: {message}", hints.get(str(kind), "report this with the message"))
