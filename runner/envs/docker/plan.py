"""What to build for a docker environment: an optional environment layer, then the code layer.

    base image ──▶ env image (requirements installed, or the project's own Dockerfile)
               ──▶ code image (the project's files at /project)

Each image is tagged by a hash of what decides it, so an unchanged one is never rebuilt, and a
change to the code alone rebuilds only the code image on top of the same env image.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from runner import settings
from runner.envs.docker import context as docker_context
from runner.envs.docker.context import Item
from runner.errors import EnvError
from runner.project import yamlsafe
from runner.project.manifest import EnvSpec

RECIPE_VERSION = "1"  # bump when the generated Dockerfiles change meaning
ENV_DIR = "/run-project-env"
PROJECT_DIR = "/project"
# Not PIP_FIND_LINKS: a host path means nothing in a build (RUN_PROJECT_DOCKER_WHEELHOUSE does).
PASSED_SETTINGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST",
                   "PIP_DEFAULT_TIMEOUT", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                   "http_proxy", "https_proxy", "no_proxy")  # fmt: skip
PROXIES = ("http_proxy", "https_proxy", "no_proxy")
CA_VARIABLES = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


@dataclass(frozen=True)
class Layer:
    """One image to build: its tag, the Dockerfile (FROM `{parent}`) and its context."""

    role: str  # "env" or "code"
    tag: str
    key: str
    dockerfile: str
    dockerfile_name: str
    items: tuple[Item, ...] = ()
    prefix: str = ""
    extra: dict[str, bytes] = field(default_factory=dict)
    build_args: dict[str, str] = field(default_factory=dict)
    offline: bool = False


@dataclass(frozen=True)
class Plan:
    """The images for one project state, env layer first; `key` names the final image."""

    base_image: str
    layers: tuple[Layer, ...]

    @property
    def key(self) -> str:
        return self.layers[-1].key


def make_plan(spec: EnvSpec, root: Path, project: str, base_id: str | None, base: str) -> Plan:
    """The layers for the project at `root` on the base image `base` (id `base_id`)."""
    items = tuple(docker_context.collect(root))
    if spec.dockerfile:
        env: Layer | None = _dockerfile_layer(spec.dockerfile, root, items)
    else:
        env = _requirements_layer(spec, root, base_id or base)
    parent_key = env.key if env else (base_id or base)
    owner = f"{os.getuid()}:{os.getgid()}" if os.getuid() != 0 else ""
    chown = f"--chown={owner} " if owner else ""
    code_key = docker_context.digest(items, "code", RECIPE_VERSION, parent_key, owner)
    code = Layer(
        role="code",
        tag=f"run-project/{_repo_name(project)}:{code_key[:20]}",
        key=code_key,
        dockerfile=(
            f"FROM {{parent}}\nCOPY {chown}project/ {PROJECT_DIR}/\nWORKDIR {PROJECT_DIR}\n"
        ),
        dockerfile_name=".run-project.Dockerfile",
        items=items,
        prefix="project/",
    )
    return Plan(base_image=base, layers=(env, code) if env else (code,))


def _repo_name(project: str) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", project.lower()).strip("._-")
    return name[:60] or "project"


def _dockerfile_layer(dockerfile: str, root: Path, items: tuple[Item, ...]) -> Layer:
    rel = os.path.normpath(dockerfile).replace(os.sep, "/")
    source = inside(root, rel, "docker_env.dockerfile")
    extra: dict[str, bytes] = {}
    if rel not in {item.name for item in items if item.kind == "file"}:
        extra[rel] = source.read_bytes()  # as docker does: sent even if .dockerignore'd
    key = _hash_files(extra, docker_context.digest(items, "dockerfile", RECIPE_VERSION, rel))
    return Layer(role="env", tag=f"run-project-env:{key[:20]}", key=key, dockerfile="",
                 dockerfile_name=rel, items=items, extra=extra,
                 build_args=_build_args({}))  # fmt: skip


def _requirements_layer(spec: EnvSpec, root: Path, parent: str) -> Layer | None:
    """pip requirements from python_env (MLflow's file) or requirements.txt, else None."""
    if spec.kind == "conda":
        raise EnvError(
            f"conda environment {spec.file} cannot be installed into a docker image yet",
            "use docker_env with a Dockerfile that installs conda, or --env-manager conda",
        )
    lines, files = _requirement_lines(spec, root)
    if lines is None:
        return None
    extra = {f"env/{name}": data for name, data in files.items()}
    extra["env/requirements.txt"] = ("\n".join(lines) + "\n").encode()
    wheelhouse = settings.get("docker_wheelhouse")
    install = ["python", "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
               "--no-input", "-r", f"{ENV_DIR}/requirements.txt"]  # fmt: skip
    if wheelhouse:
        extra.update(_wheelhouse(Path(wheelhouse)))
        install += ["--no-index", "--find-links", f"{ENV_DIR}/wheels"]
    key = _hash_files(extra, "requirements", RECIPE_VERSION, parent, " ".join(install))
    build_args: dict[str, str] = {}
    ca = _ca_bundle()
    if ca is not None and not wheelhouse:
        extra["env/ca.pem"] = ca  # not in the key: it changes how files are fetched, not what
        build_args = {name: f"{ENV_DIR}/ca.pem" for name in CA_VARIABLES}
    args = _build_args(build_args)
    run = "[" + ", ".join(f'"{arg}"' for arg in install) + "]"
    declared = sorted(n for n in args if n.lower() not in PROXIES)  # proxies are predefined
    dockerfile = "FROM {parent}\n" + "".join(f"ARG {n}\n" for n in declared)
    dockerfile += f"COPY env/ {ENV_DIR}/\nRUN {run}\n"
    return Layer(role="env", tag=f"run-project-env:{key[:20]}", key=key, dockerfile=dockerfile,
                 dockerfile_name=".run-project.Dockerfile", extra=extra,
                 build_args=args, offline=bool(wheelhouse))  # fmt: skip


def _requirement_lines(spec: EnvSpec, root: Path) -> tuple[list[str] | None, dict[str, bytes]]:
    """Requirement lines, with `-r FILE` rewritten to copies of FILE kept in the context."""
    if spec.kind == "virtualenv" and spec.file:
        source = inside(root, spec.file, "python_env")
        doc = yamlsafe.load_file(source, "python_env file").value
        deps = doc.get("dependencies") if isinstance(doc, dict) else None
        raw = [str(d) for d in deps or []]
    elif (root / "requirements.txt").is_file():
        raw = ["-r requirements.txt"]
    else:
        return None, {}
    lines: list[str] = []
    files: dict[str, bytes] = {}
    for line in raw:
        match = re.match(r"^(-r|--requirement)[ =]?\s*(\S+)$", line.strip())
        if match:
            path = inside(root, match.group(2), "requirements")
            name = f"req/{len(files)}-{path.name}"
            files[name] = path.read_bytes()
            line = f"-r {ENV_DIR}/{name}"
        lines.append(line)
    return lines, files


def inside(root: Path, name: str, what: str) -> Path:
    """`root/name` resolved, refused unless it is a file inside the project."""
    real_root = os.path.realpath(root)
    path = os.path.realpath(root / name)
    if os.path.commonpath([path, real_root]) != real_root or not os.path.isfile(path):
        raise EnvError(
            f"{what} file '{name}' is not a file inside the project",
            "name a file by a relative path inside the project (no .., no symlink out)",
        )
    return Path(path)


def _wheelhouse(path: Path) -> dict[str, bytes]:
    if not path.is_dir():
        raise EnvError(
            f"wheelhouse {path} (RUN_PROJECT_DOCKER_WHEELHOUSE) is not a directory",
            "point it at a directory of .whl / sdist files",
        )
    return {f"env/wheels/{p.name}": p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


def _ca_bundle() -> bytes | None:
    for name in CA_VARIABLES:
        value = os.environ.get(name)
        if value and os.path.isfile(value):
            return Path(value).read_bytes()
    return None


def _build_args(extra: dict[str, str]) -> dict[str, str]:
    """Proxy and index settings of this machine, passed to the build (not kept in the image's
    environment; note that Docker keeps non-proxy build args in the image history)."""
    found = {name: os.environ[name] for name in PASSED_SETTINGS if os.environ.get(name)}
    return {**found, **extra}


def _hash_files(files: dict[str, bytes], *extra: str) -> str:
    hasher = hashlib.sha256("\0".join(extra).encode())
    for name, data in sorted(files.items()):
        hasher.update(f"\0{name}\0{len(data)}\0".encode() + hashlib.sha256(data).digest())
    return hasher.hexdigest()
