"""Where the benchmarks work and the tools they install there: paths, uv, the peers venv
(MLflow and DVC from PyPI), run-project built into its own venv, and the environment every
measured command gets. Imported by bench.py, cases.py, cases_data.py and ui_bench.py; it
imports none of them, so the scripts form no import circle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work"
PEERS = WORK / "peers-venv"
# run-project installed as users get it from PyPI: a wheel in a venv, bytecode compiled.
OURS = WORK / "run-project-venv"


@cache
def uv_bin() -> str:
    """uv on PATH, else the binary of the `uv` package beside this Python (a venv that is
    not activated has it, off PATH); found once and used for every uv call."""
    found = shutil.which("uv")
    if found:
        return found
    import uv

    return str(uv.find_uv_bin())


def peers_python() -> Path:
    """A venv with mlflow and dvc from PyPI (made once; uv makes it in ~10 s)."""
    python = PEERS / "bin" / "python"
    if not (PEERS / "bin" / "mlflow").exists() or not (PEERS / "bin" / "dvc").exists():
        if not python.exists():
            subprocess.run([uv_bin(), "venv", "-q", "--python", sys.executable, str(PEERS)],
                           check=True)  # fmt: skip
        subprocess.run([uv_bin(), "pip", "install", "-q", "--python", str(python), "mlflow",
                        "dvc"], check=True)  # fmt: skip
    return python


def install_runner() -> None:
    """This checkout built and installed into OURS (not editable: an editable install adds an
    import hook to every Python start in that venv, the entry point's `python` included)."""
    if not (OURS / "bin" / "python").exists():
        subprocess.run([uv_bin(), "venv", "-q", "--python", sys.executable, str(OURS)],
                       check=True)  # fmt: skip
    subprocess.run([uv_bin(), "pip", "install", "-q", "--python", str(OURS / "bin" / "python"),
                    "--reinstall-package", "run-project", "--compile-bytecode", str(REPO)],
                   check=True)  # fmt: skip


def runner_argv() -> list[str]:
    """How users start run-project: the installed console script."""
    return [str(OURS / "bin" / "run-project")]


def base_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(RUN_PROJECT_CACHE=str(tmp / "cache"), RUN_PROJECT_STORE=str(tmp / "store"),
               MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}",
               GIT_PYTHON_REFRESH="quiet",
               RUN_PROJECT_IGNORE_OLD_GIT="1", MLFLOW_TRACKING_URI_WARNING="false")  # fmt: skip
    # Bytecode as an installed package has it: without .pyc files every start compiles source.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPATH", None)  # whole commands use the installed copy (workers set it)
    # Every tool's entry point `python -c pass` is the same venv interpreter, as with an
    # activated venv (a pyenv shim on PATH costs ~80 ms more per start); pyenv/bin for
    # mlflow's virtualenv manager.
    path = f"{OURS / 'bin'}:{Path.home() / '.pyenv' / 'bin'}:{env.get('PATH', '')}"
    env["PATH"] = path
    return env
