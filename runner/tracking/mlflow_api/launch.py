"""How run-project starts the command behind the endpoint (imported by the runner; cheap).

The wrapper runs with `-I -S` (isolated, no site: the project's PYTHONPATH, PYTHONSTARTUP,
user site and .pth files neither reach it nor cost it time; it needs only the stdlib). On
this machine it imports this package from run-project's own tree; elsewhere this directory
alone is mounted as `run_project_mlflow` (read-only inside a container), and later shipped
beside a cluster job.
"""

from __future__ import annotations

import os

HERE = "runner.tracking.mlflow_api"  # on this machine: run-project's own package
MOUNTED = "run_project_mlflow"  # this directory alone, mounted into a container


def boot_code(parent: str, package: str) -> str:
    """`python -I -S -c` code that imports the wrapper as `package` from `parent`."""
    return (
        f"import sys; sys.path.insert(0, {parent!r}); "
        f"from {package}.wrap import main; sys.exit(main(sys.argv[1:]))"
    )


def package_dir() -> str:
    """This directory (mounted read-only into containers)."""
    return os.path.dirname(os.path.abspath(__file__))


def wrapped_here(python: str, argv: tuple[str, ...]) -> tuple[str, ...]:
    """argv behind the endpoint, run by this machine's `python` (the local kinds)."""
    parent = os.path.dirname(os.path.dirname(os.path.dirname(package_dir())))
    return (python, "-I", "-S", "-c", boot_code(parent, HERE), "--", *argv)


def wrapped_mounted(python: str, parent: str, argv: tuple[str, ...]) -> tuple[str, ...]:
    """argv behind the endpoint where this directory is mounted as `parent`/run_project_mlflow
    and signals reach the wrapper alone (docker --init)."""
    return (python, "-I", "-S", "-c", boot_code(parent, MOUNTED), "--forward-signals", "--", *argv)
