"""What decides a Python environment, detected in a fixed order (as repo2docker does).

1. the manifest's `python_env` (python_env.yaml: python, build_dependencies, dependencies);
   under `--env-manager virtualenv` a declared `conda_env` is converted as MLflow does;
2. else `requirements.txt`; 3. else `pyproject.toml`'s `[project] dependencies`.
A project's own `pylock.toml` (PEP 751) or `uv.lock` wins over 1-3 for the packages: it is
installed exactly. Every file read (and every file a `-r`/`-c` line names, recursively) is
kept with its bytes, so the cache key changes when any of them changes. No file outside the
project is read: paths that leave it, directly or through a symlink, are refused, and so are
requirements naming a local package outside it (`pkg @ file:///...`, `-e /abs`, `../pkg`),
which uv would build by running its build backend.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from runner.envs.base import LOCK_FILES
from runner.envs.python.conda_yaml import from_conda_yaml
from runner.envs.python.requested import PythonInputs
from runner.errors import ManifestError
from runner.project import yamlsafe
from runner.project.manifest import EnvSpec

PYTHON_ENV_KEYS = ("python", "build_dependencies", "dependencies")
_INCLUDE = re.compile(r"^\s*(-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+)(\S+)\s*$")
_EDITABLE = re.compile(r"^(?:-e|--editable)(?:\s*=\s*|\s+)(\S+)")
_FILE_REFERENCE = re.compile(r"@\s*(file:\S+)")


def has_python_files(project: Path) -> bool:
    """True when a project without a declared environment still names Python packages."""
    return (
        (project / "requirements.txt").is_file()
        or _lock_file(project) is not None
        or ((project / "pyproject.toml").is_file() and _pyproject_deps(project) is not None)
    )


def detect(spec: EnvSpec, project: Path) -> PythonInputs:
    """The inputs of a virtualenv for the project at `project` with declared env `spec`."""
    if not spec.kind and (project / "conda.yaml").is_file():
        spec = EnvSpec(kind="conda", file="conda.yaml")  # MLflow's default environment file
    if spec.kind == "virtualenv" and spec.file:
        inputs = _from_python_env(project, spec.file)
    elif spec.kind == "conda" and spec.file:
        path = inside(project, spec.file, "conda_env")
        inputs = from_conda_yaml(path, _rel(project, path))
        inputs.files[_rel(project, path)] = path.read_bytes()
        inputs.requirements = _expand_lines(project, path.parent, inputs.requirements, inputs)
    elif (project / "requirements.txt").is_file():
        inputs = PythonInputs(source="requirements.txt")
        inputs.requirements = _expand_lines(project, project, ["-r requirements.txt"], inputs)
    elif (project / "pyproject.toml").is_file() and _pyproject_deps(project) is not None:
        inputs = PythonInputs(source="pyproject.toml", pyproject=project / "pyproject.toml")
        inputs.files["pyproject.toml"] = inputs.pyproject.read_bytes()  # type: ignore[union-attr]
    else:
        inputs = PythonInputs(source="no requirements")
    _add_lock(project, inputs, spec.lock_file)
    for extra in ("uv.toml", ".python-version", "pyproject.toml"):
        path = project / extra
        if extra in inputs.files or not path.is_file():
            continue
        data = path.read_bytes()
        # uv reads these from the project directory; pyproject.toml only through [tool.uv].
        if extra != "pyproject.toml" or b"[tool.uv" in data:
            inputs.files[extra] = data
    return inputs


def inside(project: Path, name: str, what: str, base: Path | None = None) -> Path:
    """`name` (relative to `base`, default the project) if it stays inside the project after
    resolving symlinks; else a refusal naming it."""
    root = os.path.realpath(project)
    path = Path(base or project) / name
    real = os.path.realpath(path)
    if os.path.isabs(name) or os.path.commonpath([real, root]) != root:
        raise ManifestError(
            f"{what} path {name!r} leaves the project directory {project}",
            "name a file inside the project (no '..', absolute paths or symlinks out)",
        )
    if not os.path.isfile(real):
        raise ManifestError(
            f"{what} file {name!r} does not exist in {project}", "check the path and its case"
        )
    return Path(real)


def _from_python_env(project: Path, name: str) -> PythonInputs:
    path = inside(project, name, "python_env")
    from runner.project import manifest_cache

    doc = manifest_cache.load(path)  # same bytes parsed before: no PyYAML on a warm run
    if doc is None:
        doc = yamlsafe.load_file(path, "python_env file")
        manifest_cache.save(doc)
    data = doc.value
    if not isinstance(data, dict):
        raise ManifestError(f"{path}:1: python_env must be a mapping", "see MLflow's python_env")
    for key in data:
        if key not in PYTHON_ENV_KEYS:
            raise ManifestError(
                f"{doc.where((key,))}: unknown key '{key}' in python_env",
                "allowed keys: " + ", ".join(PYTHON_ENV_KEYS),
            )
    inputs = PythonInputs(source=_rel(project, path), python_from=_rel(project, path))
    inputs.files[_rel(project, path)] = path.read_bytes()
    if data.get("python") is not None:
        inputs.python = str(data["python"])
    lines: list[str] = []
    for key in ("build_dependencies", "dependencies"):
        value = data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ManifestError(
                f"{doc.where((key,))}: {key} must be a list of requirement strings",
                f"write `{key}:` followed by lines like `- six==1.16.0`",
            )
        lines += value
    # MLflow writes these lines into a file in the project root, so -r is relative to it.
    inputs.requirements = _expand_lines(project, project, lines, inputs)
    return inputs


def _expand_lines(project: Path, base: Path, lines: list[str], inputs: PythonInputs) -> list[str]:
    """Requirement lines with -r/-c paths checked, made absolute and their files recorded."""
    out: list[str] = []
    for line in lines:
        match = _INCLUDE.match(line)
        if match is None:
            _check_local_package(project, base, line)
            out.append(line)
            continue
        flag, name = match.groups()
        path = inside(project, name, f"requirement file ({flag})", base)
        _record_file(project, path, inputs, depth=0)
        out.append(f"{flag} {path}")
    return out


def _record_file(project: Path, path: Path, inputs: PythonInputs, depth: int) -> None:
    """Keep the bytes of a requirements file and, recursively, of the files it includes."""
    rel = _rel(project, path)
    if rel in inputs.files or depth > 20:
        return
    data = path.read_bytes()
    inputs.files[rel] = data
    for line in data.decode("utf-8", errors="replace").splitlines():
        match = _INCLUDE.match(line)
        if match is not None:
            nested = inside(project, match.group(2), f"requirement file ({rel})", path.parent)
            _record_file(project, nested, inputs, depth + 1)
        else:
            _check_local_package(project, path.parent, line)


def _check_local_package(project: Path, base: Path, line: str) -> None:
    """A requirement naming a local directory or archive must name one inside the project."""
    text = line.split(" #", 1)[0].strip()
    editable = _EDITABLE.match(text)
    reference = _FILE_REFERENCE.search(text)
    if editable:
        target = editable.group(1)
    elif reference:
        target = reference.group(1)
    elif text.startswith((".", "/", "~", "file:")):
        target = text.split(";", 1)[0].split()[0]
    else:
        return  # a name from the index, or a remote URL
    if target.startswith("file:"):
        from urllib.parse import unquote, urlsplit  # only local-package lines pay for it

        local = unquote(urlsplit(target).path)
    elif "://" in target or "+" in target.split("/", 1)[0]:
        return  # -e git+https://..., a remote URL
    else:
        local = os.path.expanduser(target)
    root = os.path.realpath(project)
    real = os.path.realpath(os.path.join(base, local))
    if os.path.commonpath([real, root]) != root:
        raise ManifestError(
            f"requirement path {target!r} leaves the project directory {project}",
            "name a file inside the project (no '..', absolute paths or symlinks out) as the "
            "local package, or a package from the index",
        )


def _add_lock(project: Path, inputs: PythonInputs, recorded: Path | None = None) -> None:
    # A rerun's recorded pylock.toml wins over the project's files: installed as recorded.
    lock = recorded if recorded is not None and recorded.name == "pylock.toml" else None
    lock = lock or _lock_file(project)
    if lock is None:
        return
    inputs.lock = lock
    inputs.files[lock.name] = lock.read_bytes()
    if lock.name == "uv.lock" and (project / "pyproject.toml").is_file():
        inputs.files["pyproject.toml"] = (project / "pyproject.toml").read_bytes()
    if inputs.requirements:
        inputs.warnings.append(
            f"{lock.name} is installed exactly; the requirements in {inputs.source} are not "
            "resolved again"
        )


def _lock_file(project: Path) -> Path | None:
    for name in LOCK_FILES:
        if (project / name).is_file():
            return inside(project, name, "lock file")
    return None


def _pyproject_deps(project: Path) -> list[str] | None:
    try:
        import tomllib  # only when a project has a pyproject.toml

        data = tomllib.loads((project / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(
            f"cannot read {project / 'pyproject.toml'}: {exc}", "fix its TOML syntax"
        ) from exc
    deps = data.get("project", {}).get("dependencies")
    return list(deps) if isinstance(deps, list) else None


def _rel(project: Path, path: Path) -> str:
    return os.path.relpath(path, os.path.realpath(project))
