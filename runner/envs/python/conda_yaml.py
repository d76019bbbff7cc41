"""`conda.yaml` read for a virtualenv, as MLflow converts it under `--env-manager virtualenv`:
the `python=` pin is kept, `pip`, `setuptools` and `wheel` become build dependencies, the
`pip:` section becomes the requirements, and every other conda package is named in a warning
(it cannot be installed from PyPI by name with any certainty)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from runner.envs.python.requested import PythonInputs
from runner.errors import ManifestError
from runner.project import yamlsafe

_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:(==|=|>=|<=|>|<|!=)\s*([^\s=]+))?")
_BUILD = ("pip", "setuptools", "wheel")


def from_conda_yaml(path: Path, rel: str) -> PythonInputs:
    """Python inputs from the conda environment file at `path` (`rel` names it in messages)."""

    doc = yamlsafe.load_file(path, "conda environment file")
    deps = doc.value.get("dependencies") if isinstance(doc.value, dict) else None
    if not isinstance(deps, list):
        raise ManifestError(
            f"{path}:1: conda environment has no `dependencies:` list",
            "list packages under `dependencies:` (and pip packages under `- pip:`)",
        )
    inputs = PythonInputs(source=f"{rel} (converted from conda)", python_from=rel)
    build, pip_lines, dropped = _split(deps, doc)
    for name, op, version in build:
        if name == "python":
            inputs.python = _python_pin(op, version, rel, inputs)
        else:
            inputs.requirements.append(name + (f"=={version}" if version else ""))
    inputs.requirements += pip_lines
    if dropped:
        inputs.warnings.append(
            f"{rel}: conda packages not installed in a virtualenv: {', '.join(dropped)} "
            "(list them under `pip:` or use --env-manager conda)"
        )
    return inputs


def _split(
    deps: list[Any], doc: yamlsafe.Document
) -> tuple[list[tuple[str, str, str]], list[str], list[str]]:
    build: list[tuple[str, str, str]] = []
    pip_lines: list[str] = []
    dropped: list[str] = []
    for i, dep in enumerate(deps):
        if isinstance(dep, dict) and isinstance(dep.get("pip"), list):
            pip_lines += [str(line) for line in dep["pip"]]
            continue
        match = _SPEC.match(str(dep)) if isinstance(dep, str | int | float) else None
        if match is None:
            raise ManifestError(
                f"{doc.where(('dependencies', i))}: cannot read conda dependency {dep!r}",
                "write `- name=version` or `- pip: [...]`",
            )
        name, op, version = match.group(1), match.group(2) or "", match.group(3) or ""
        name = name.split("::")[-1]
        if name == "python" or name in _BUILD:
            build.append((name, op, version.rstrip(".*")))
        else:
            dropped.append(str(dep))
    return build, pip_lines, dropped


def _python_pin(op: str, version: str, rel: str, inputs: PythonInputs) -> str | None:
    if op in ("=", "==") and version:
        return version
    if version:
        inputs.warnings.append(f"{rel}: python {op}{version} is not a pin; using this Python")
    return None
