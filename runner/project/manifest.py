"""MLproject (YAML) → schema check → frozen dataclasses.

`schemas/manifest.schema.json` is the one source of truth for what a manifest may hold; this
module turns its errors into messages with the file, the line and a "did you mean" hint.
A manifest already validated (same bytes) is not validated again: the check is cached by
content hash, which keeps jsonschema off the warm-start path.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from runner import settings
from runner.errors import ManifestError, RunnerError, UsageError
from runner.project import params, yamlsafe
from runner.project.params import ParamSpec

SCRIPT_RUNNERS = {".py": "python", ".sh": "bash"}


class EntryPoint(NamedTuple):
    """A named command template with its declared parameters."""

    name: str
    command: str
    params: Mapping[str, ParamSpec] = MappingProxyType({})
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


class EnvSpec(NamedTuple):
    """What the manifest declares about the environment (kind "" when nothing is declared)."""

    kind: str = ""
    file: str | None = None
    image: str | None = None
    dockerfile: str | None = None
    volumes: tuple[str, ...] = ()
    environment: tuple[tuple[str, str | None], ...] = ()
    #: A recorded lock (pylock.toml, conda-lock.yml) a rerun builds from; each kind honours it.
    lock_file: Path | None = None
    #: The cache key of the environment that produced `lock_file`: reused when that entry
    #: still holds exactly this lock, instead of building an identical copy.
    lock_key: str | None = None


class Project(NamedTuple):
    """A project directory and what its manifest (if any) says."""

    path: Path
    name: str
    manifest: Path | None
    entry_points: dict[str, EntryPoint]
    env: EnvSpec

    def entry_point(self, name: str) -> EntryPoint:
        """The declared entry point, or a bare `*.py` / `*.sh` script (as MLflow does)."""
        if name in self.entry_points:
            return self.entry_points[name]
        suffix = Path(name).suffix
        script = self.path / name
        if suffix in SCRIPT_RUNNERS and _is_inside(script, self.path) and script.is_file():
            runner = SCRIPT_RUNNERS[suffix]
            return EntryPoint(name=name, command=f"{runner} {_quote_braces(name)}")
        declared = ", ".join(sorted(self.entry_points)) or "none"
        where = f"in {self.manifest}" if self.manifest else f"(no MLproject in {self.path})"
        raise UsageError(
            f"no entry point '{name}' {where}, and no script {name} in the project",
            f"declared entry points: {declared}; or name a .py/.sh file inside the project"
            + self._folders_hint(),
        )

    def _folders_hint(self) -> str:
        """A project of folders only and no MLproject is most likely their parent: say how to
        run one of them."""
        if self.manifest is not None:
            return ""
        children = [c for c in self.path.iterdir() if not c.name.startswith(".")]
        folders = sorted(c.name + "/" for c in children if c.is_dir() and not c.is_symlink())
        if not folders or len(folders) < len(children):
            return ""
        return f"; its top holds only folders ({', '.join(folders)}): add #FOLDER to the URI"

    def problems_beside(self, name: str) -> list[str]:
        """What running each other entry point would refuse. Only the entry point being run
        is checked strictly: MLflow runs one entry point of a project whose others it would
        refuse, so for these the caller warns."""
        return [
            f"entry point '{other}' (not run): {problem}"
            for other, entry in self.entry_points.items()
            if other != name
            for problem in params.shell_problems(entry.command, entry.params)
        ]


def load_project(path: Path) -> Project:
    """Read the project at `path`: its MLproject if there is one, else an empty project."""
    manifest = find_manifest(path)
    if manifest is None:
        return Project(path=path, name=path.name, manifest=None, entry_points={}, env=EnvSpec())
    from runner.project import manifest_cache

    doc = manifest_cache.load(manifest) or yamlsafe.load_file(manifest, "MLproject")
    if not isinstance(doc.value, dict):
        raise ManifestError(
            f"{manifest}:1: MLproject must be a mapping (key: value), not a "
            f"{type(doc.value).__name__}",
            "start it with `name: my-project` and `entry_points:`",
        )
    _validate(doc)
    return _build(path, manifest, doc)


def find_manifest(path: Path) -> Path | None:
    """`MLproject` in `path`, matched case-insensitively as MLflow does."""
    exact = path / "MLproject"
    if exact.is_file():
        return exact
    try:
        names = os.listdir(path)
    except OSError:
        return None
    for name in names:
        if name.lower() == "mlproject" and (path / name).is_file():
            return path / name
    return None


def _validate(doc: yamlsafe.Document) -> None:
    from runner.project import manifest_cache

    digest = hashlib.sha256(doc.path.read_bytes()).hexdigest()
    marker = _validated_marker(digest)
    if marker is not None and marker.exists():
        # Valid already, but parsed with PyYAML just now (no JSON entry yet, e.g. a cache
        # from an earlier version): keep it, so the next run skips PyYAML.
        manifest_cache.save(doc)
        return
    from runner.project.schemas import load_schema, schema_errors

    errors = schema_errors("manifest", doc.value)
    if errors:
        raise _explain(errors[0], doc, load_schema("manifest"))
    if marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:
            pass  # a read-only cache only costs the next run a validation
        manifest_cache.save(doc)  # the next run skips PyYAML too


def _validated_marker(digest: str) -> Path | None:
    try:
        return settings.cache_dir() / "manifests" / f"{digest}.valid"
    except RunnerError:
        return None


def _explain(error: Any, doc: yamlsafe.Document, schema: dict[str, Any]) -> ManifestError:
    if error.validator == "oneOf" and isinstance(error.instance, dict):
        # A long-form parameter with a bad key: explain the key, not "matches no form".
        inner = [e for e in error.context or () if e.validator == "additionalProperties"]
        inner += [e for e in error.context or () if e.validator == "enum" and e.path]
        if inner:
            inner[0].path.extendleft(reversed(error.path))
            error = inner[0]
    path = tuple(error.path)
    dotted = ".".join(map(str, path)) or "top level"
    if error.validator == "additionalProperties":
        known = _known_keys(path, schema)
        extra = [k for k in error.instance if k not in known]
        key = extra[0] if extra else "?"
        import difflib

        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean `{close[0]}`?" if close else "allowed keys: " + ", ".join(known)
        return ManifestError(f"{doc.where((*path, key))}: unknown key '{key}' in {dotted}", hint)
    if error.validator == "pattern" and path and path[-1] == "parameters":
        return ManifestError(
            f"{doc.where(path)}: parameter name {error.instance!r} in {dotted} is not allowed",
            "names start with a letter or _ and hold only letters, digits, _ . and -",
        )
    if error.validator in ("oneOf", "enum") and path and "parameters" in path:
        return _bad_parameter(path, error.instance, doc)
    return ManifestError(
        f"{doc.where(path)}: {dotted}: {error.message}", "see the MLproject format in the README"
    )


def _bad_parameter(path: tuple[Any, ...], value: Any, doc: yamlsafe.Document) -> ManifestError:
    """A parameter whose type is misspelt (`lr: flaot`, `{type: flaot}`) or whose form is
    neither: named with its entry point, and the type it most likely meant."""
    at = path.index("parameters")
    entry, name = path[at - 1], path[at + 1] if len(path) > at + 1 else "?"
    typed = value.get("type") if isinstance(value, dict) else value
    if isinstance(typed, str):
        import difflib

        close = difflib.get_close_matches(typed, list(params.TYPE_ALIASES), n=1, cutoff=0.5)
        return ManifestError(
            f"{doc.where(path)}: parameter '{name}' of entry point '{entry}' has an unknown "
            f"type {typed!r}",
            (f"did you mean `{close[0]}`? " if close else "")
            + "types: string, float, int, bool, path, uri",
        )
    return ManifestError(
        f"{doc.where(path)}: parameter '{name}' of entry point '{entry}' has an unknown form",
        "write `name: float` or `name: {type: float, default: 0.1}`; types: "
        "string, float, int, bool, path, uri",
    )


def _known_keys(path: tuple[Any, ...], schema: dict[str, Any]) -> list[str]:
    """Keys the schema allows at `path` (enough for the did-you-mean hint)."""
    defs = schema["$defs"]
    if not path:
        return list(schema["properties"])
    if path[0] == "docker_env":
        return list(defs["docker_env"]["properties"])
    if path[0] == "entry_points" and len(path) == 2:
        return list(defs["entry_point"]["properties"])
    if path[0] == "entry_points" and len(path) >= 4:
        return list(defs["parameter"]["oneOf"][1]["properties"])
    return []


def _build(path: Path, manifest: Path, doc: yamlsafe.Document) -> Project:
    data: dict[str, Any] = doc.value
    entry_points = {
        name: _entry_point(name, ep, doc) for name, ep in (data.get("entry_points") or {}).items()
    }
    return Project(
        path=path,
        name=str(data.get("name") or path.name),
        manifest=manifest,
        entry_points=entry_points,
        env=_env_spec(data, doc),
    )


def _entry_point(name: str, data: dict[str, Any], doc: yamlsafe.Document) -> EntryPoint:
    specs: dict[str, ParamSpec] = {}
    for pname, pdata in (data.get("parameters") or {}).items():
        specs[pname] = _param_spec(name, pname, pdata, doc)
    where = doc.where(("entry_points", name, "command"))
    used = params.template_placeholders(data["command"])
    undeclared = sorted(used - set(specs))
    if undeclared:
        raise ManifestError(
            f"{where}: command uses {{{undeclared[0]}}} but entry point '{name}' declares no "
            "such parameter",
            f"add `{undeclared[0]}: string` under parameters, or write {{{{ }}}} for literal "
            "braces",
        )
    return EntryPoint(
        name=name,
        command=data["command"],
        params=specs,
        inputs=tuple(data.get("inputs") or ()),
        outputs=tuple(data.get("outputs") or ()),
    )


def _param_spec(entry: str, name: str, data: Any, doc: yamlsafe.Document) -> ParamSpec:
    base = ("entry_points", entry, "parameters", name)
    if isinstance(data, str):
        return ParamSpec(name=name, type=params.TYPE_ALIASES[data], default=None)
    ptype = params.TYPE_ALIASES[data.get("type", "string")]
    default = None
    if "default" in data and data["default"] is not None:
        # The raw YAML text, so the declared type converts it (`1e-3`, `no`), not YAML's guess.
        default = doc.raw.get((*base, "default"), str(data["default"]))
    choices = None
    if "choices" in data:
        choices = tuple(
            doc.raw.get((*base, "choices", i), str(c)) for i, c in enumerate(data["choices"])
        )
    return ParamSpec(name=name, type=ptype, default=default, choices=choices)


def _env_spec(data: dict[str, Any], doc: yamlsafe.Document) -> EnvSpec:
    declared = [k for k in ("python_env", "conda_env", "docker_env") if k in data]
    if len(declared) > 1:
        raise ManifestError(
            f"{doc.where((declared[1],))}: MLproject declares both {declared[0]} and {declared[1]}",
            "keep one environment: python_env, conda_env or docker_env",
        )
    if "python_env" in data:
        return EnvSpec(kind="virtualenv", file=data["python_env"])
    if "conda_env" in data:
        return EnvSpec(kind="conda", file=data["conda_env"])
    if "docker_env" in data:
        docker = data["docker_env"]
        environment = tuple(
            (e, None) if isinstance(e, str) else (e[0], e[1]) for e in docker.get("environment", [])
        )
        return EnvSpec(
            kind="docker",
            image=docker.get("image"),
            dockerfile=docker.get("dockerfile"),
            volumes=tuple(docker.get("volumes", [])),
            environment=environment,
        )
    return EnvSpec()


def _is_inside(path: Path, root: Path) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([real, base]) == base


def _quote_braces(text: str) -> str:
    import shlex

    return shlex.quote(text.replace("{", "{{").replace("}", "}}"))
