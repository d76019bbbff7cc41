"""Put on a run's PYTHONPATH by run-project: records which files the run's Python code opens.

It installs the audit hook of run_project_client and, when run-project can be started from the
run, a finder that turns `mlflow.projects.run` into run-project runs (docs/tracking.md#workflows);
then it runs the sitecustomize that would have run without us (the environment's own, found
further along sys.path), so nothing is lost.
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


class _MlflowProjectsFinder:
    """Patches `mlflow.projects` right after it is executed, before `mlflow` binds `mlflow.run`
    to its `run`. It costs a run that never imports MLflow one string comparison per import;
    the patch itself (run_project_mlflow_projects) loads only with `mlflow.projects`."""

    name = "mlflow.projects"

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        if name != self.name:
            return None
        finders: list[object] = list(sys.meta_path)
        for finder in finders:
            find = getattr(finder, "find_spec", None)
            spec = None if finder is self or find is None else find(name, path, target)
            if spec is not None:
                break
        else:
            return None
        sys.meta_path.remove(self)  # type: ignore[arg-type]  # one module, patched once
        loader = spec.loader
        if loader is not None and hasattr(loader, "exec_module"):
            spec.loader = _Patching(loader)
        return spec


class _Patching:
    """The loader of `mlflow.projects`, with the patch applied after it executed."""

    def __init__(self, loader: object) -> None:
        self.loader = loader

    def __getattr__(self, name: str) -> object:
        return getattr(self.loader, name)

    def create_module(self, spec: object) -> object:
        return self.loader.create_module(spec)  # type: ignore[attr-defined]

    def exec_module(self, module: object) -> None:
        module.__loader__ = module.__spec__.loader = self.loader  # type: ignore[attr-defined]
        self.loader.exec_module(module)  # type: ignore[attr-defined]
        try:
            import run_project_mlflow_projects  # type: ignore[import-not-found, unused-ignore]

            run_project_mlflow_projects.patch(module)
        except Exception as exc:  # MLflow as it is is better than no run at all
            sys.stderr.write(f"run-project: mlflow.projects.run not redirected: {exc}\n")


def _hook_mlflow_projects() -> None:
    # In every run: where run-project cannot be started (a container, a cluster worker) the
    # patched `run` refuses with MLflow's exception instead of running MLflow's own project.
    if os.environ.get("RUN_PROJECT_EVENTS"):
        sys.meta_path.insert(0, _MlflowProjectsFinder())  # type: ignore[arg-type]


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
_hook_mlflow_projects()
_chain()
