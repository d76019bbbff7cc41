"""Put on a run's PYTHONPATH by run-project: records which files the run's Python code opens.

It installs the audit hook of run_project_client, then runs the sitecustomize that would have
run without us (the environment's own, found further along sys.path), so nothing is lost.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys


def _install() -> None:
    try:
        import run_project_client  # type: ignore[import-not-found, unused-ignore]

        run_project_client.install_audit_hook()
        import atexit  # built in: free for a run that never imports MLflow

        atexit.register(run_project_client.report_mlflow_uri)
    except Exception as exc:  # capture is best effort; the run itself must go on
        sys.stderr.write(f"run-project: file capture disabled: {exc}\n")


def _chain() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    from importlib.util import module_from_spec  # only when there is another to run

    module = module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


_install()
_chain()
