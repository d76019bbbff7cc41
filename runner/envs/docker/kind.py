"""The `docker` kind (MLflow's `docker_env`): the project is built into an image tagged by a
hash of its content, and the entry point runs inside a container of that image.

The cache entry (`<cache>/envs/docker/<key>/`) is small: `image.json` names the image and its
parents. The image itself lives in dockerd. Going through `cache.use` anyway gives docker
builds the same lock → check again → build → mark discipline as every other kind, so ten
runs of a new project state make one build, and a removed image fails the health check
(and is rebuilt) instead of failing the run.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import cache, settings
from runner.envs.base import EnvLock, EnvRow, KindDefaults, KindOptions, Launch, Packed, PackInto
from runner.envs.docker import cli as docker_cli
from runner.envs.docker import run as docker_run
from runner.envs.docker.cli import ImageInfo, list_images, remove_image
from runner.envs.docker.run import DockerOptions
from runner.errors import EnvError
from runner.progress import Progress
from runner.project.manifest import EnvSpec
from runner.sources.checkout import Checkout

if TYPE_CHECKING:  # building modules load only when a docker run needs them (warm start)
    from runner.envs.docker import build as docker_build
    from runner.envs.docker import plan as docker_plan
    from runner.tracking.store import Store

__all__ = ["DockerEnv", "DockerOptions", "ImageInfo", "entry_images", "list_images",
           "remove_image"]  # fmt: skip
IMAGE_FILE = "image.json"


@dataclass
class _State:
    """What one run's key() learned and command() needs (a kind is configured per run)."""

    plan: docker_plan.Plan | None = None
    base_id: str = ""
    base_digest: str = ""
    project: str = ""
    workdir: Path | None = None  # where the command's working-directory files are copied out
    manifest_args: list[str] = field(default_factory=list)


class DockerEnv(KindDefaults):
    """Images built from the project; commands run in `docker run --init` containers, removed
    once the files they wrote in /project are copied out."""

    name = "docker"
    builds = True
    relocatable = True  # the entry holds only facts; the image is in dockerd

    def __init__(self, options: DockerOptions | None = None) -> None:
        self.options = options or DockerOptions()
        self._state = _State()

    def configured(self, options: KindOptions) -> DockerEnv:
        """A fresh instance for one run (key() keeps per-run state), with what its command
        line allowed: -A, --allow-docker-volumes, --allow-host-env."""
        return DockerEnv(
            DockerOptions(
                docker_args=options.get("docker_args", ()),
                allow_volumes=options.get("allow_docker_volumes", False),
                allow_host_env=options.get("allow_host_env", False),
            )
        )

    def key(self, spec: EnvSpec, checkout: Checkout) -> str:
        """Refuse what the manifest may not ask for, then hash the images' contents."""
        from runner.envs.docker import plan as docker_plan

        state = self._state
        state.manifest_args = docker_run.check_manifest(spec, self.options, checkout.path)
        docker_run.user_args(self.options.docker_args)  # a malformed -A fails before a build
        base = _base_image(spec)
        if spec.dockerfile:  # its FROM decides; known only if already here (build may pull)
            dockerfile = docker_plan.inside(checkout.path, spec.dockerfile, "docker_env.dockerfile")
            base = _dockerfile_base(dockerfile) or base
            info = _inspect_quietly(base)
        else:
            info = _find_base(base)
        state.base_id = str(info["Id"]) if info else ""
        state.base_digest = docker_cli.image_digest(info) if info else ""
        state.project = _project_name(checkout)
        state.workdir = checkout.path
        state.plan = docker_plan.make_plan(spec, checkout.path, state.project, state.base_id, base)
        return state.plan.key

    def build(self, spec: EnvSpec, checkout: Checkout, into: Path, progress: Progress) -> EnvLock:
        """Build (or find by tag) the env and code images; record them in `into/image.json`."""
        from runner.envs.docker import build as docker_build

        state = self._state
        if state.plan is None:
            self.key(spec, checkout)
        assert state.plan is not None
        log = into.parent / "build-logs" / f"{state.plan.key[:20]}.log"
        images = docker_build.ensure_images(state.plan, state.base_id, state.project, log, progress)
        facts = _facts(state, images)
        (into / IMAGE_FILE).write_text(json.dumps(facts, indent=2))
        dockerfiles = docker_build.describe(state.plan, state.base_id, images)
        return EnvLock(lock_name="Dockerfile", lock_text=dockerfiles, facts=facts)

    def healthy(self, env_dir: Path) -> bool:
        """The recorded image is still in dockerd (someone may have removed it)."""
        try:
            facts = json.loads((env_dir / IMAGE_FILE).read_text())
            info = docker_cli.inspect_image(facts["image_id"])
        except (OSError, ValueError, KeyError, EnvError):
            return False
        return info is not None

    def command(
        self, env_dir: Path | None, argv: tuple[str, ...], env: Mapping[str, str]
    ) -> Launch:
        """`docker run` of the image with the run's variables, events file and output dir."""
        if env_dir is None:
            raise EnvError("the docker environment was not prepared", "this is a bug; report it")
        facts = json.loads((env_dir / IMAGE_FILE).read_text())
        run_args, name = docker_run.run_argv(
            facts["image_id"], argv, env, self._state.manifest_args, self.options
        )
        # The client gets this machine's variables (DOCKER_HOST, and the values that
        # --allow-host-env passes through by name); the container only gets those named.
        client_env = {**env, **docker_cli.client_env()}
        workdir = self._state.workdir

        def cleanup() -> None:
            try:
                if workdir is not None:
                    for warning in docker_run.copy_out_changes(name, workdir):
                        sys.stderr.write(f"warning: {warning}\n")
            finally:
                docker_cli.remove_container(name)

        return Launch(argv=tuple(run_args), env=client_env, wrapped=True, cleanup=cleanup,
                      view=docker_run.CONTAINER_VIEW)  # fmt: skip

    def inventory(self) -> list[EnvRow]:
        """Images built by run-project (labelled as ours; never anyone else's)."""
        from runner.envs.docker.images import image_rows

        return image_rows()

    def remove(self, entry: Path) -> list[str] | None:
        """The entry, then the images it names (an image a container uses stays)."""
        from runner.envs.docker.images import remove_images

        images = entry_images(entry)  # read before the entry goes
        if not cache.try_remove(entry.parent, entry):
            return None
        return [f"kept image {ref}: a container still uses it" for ref in remove_images(images)]

    def collect(self, store: Store, dry_run: bool) -> list[str]:
        """Containers of runs that are over (a runner killed with -9 leaves them running)."""
        from runner.envs.docker.orphans import remove_orphans

        return remove_orphans(store, dry_run)

    def pack_lock(
        self, spec: EnvSpec, checkout: Checkout, into: PackInto, progress: Progress
    ) -> Packed:
        """No lock: the packages are in the image, which `pack --image TAG` builds."""
        if into.with_deps:
            progress.warn("--with-deps: a docker project's packages are in its image; "
                          "use --image TAG")  # fmt: skip
        return Packed()


def _project_name(checkout: Checkout) -> str:
    """A readable name for image tags: the repository or directory name."""
    name = checkout.uri.rstrip("/").rsplit("/", 1)[-1].split("#")[0].removesuffix(".git")
    if checkout.subdirectory:
        name = f"{name}-{checkout.subdirectory.strip('/').replace('/', '-')}"
    return name or checkout.path.name


def entry_images(env_dir: Path) -> list[str]:
    """The images a docker cache entry names (code image first): what `envs gc` may remove
    with `remove_image` once it has removed the entry."""
    try:
        facts = json.loads((env_dir / IMAGE_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [str(facts[k]) for k in ("image", "env_image") if facts.get(k)]


def _base_image(spec: EnvSpec) -> str:
    image = spec.image or settings.get("docker_image")
    if not image and not spec.dockerfile:
        raise EnvError(
            "no base image: docker_env.image is not set in the MLproject file",
            "add `docker_env: {image: python:3.11-slim}` to MLproject, or set "
            "RUN_PROJECT_DOCKER_IMAGE for projects without docker_env",
        )
    return image or ""


def _dockerfile_base(path: Path) -> str | None:
    """The image of the first FROM line of a Dockerfile (for the record only)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        words = [w for w in line.split() if not w.startswith("--")]
        if words and words[0].upper() == "FROM" and len(words) > 1:
            return words[1]
    return None


def _inspect_quietly(image: str) -> dict[str, Any] | None:
    """The image if it is here; None for one to be pulled or named by a build ARG."""
    try:
        return docker_cli.inspect_image(image) if image else None
    except EnvError:
        return None


def _find_base(image: str) -> dict[str, Any]:
    info = docker_cli.inspect_image(image)
    if info is not None:
        return info
    pulled = docker_cli.docker("pull", "--", image, check=False, timeout=600)
    info = docker_cli.inspect_image(image) if pulled.returncode == 0 else None
    if info is None:
        raise EnvError(
            f"docker_env.image '{image}' is not on this machine and could not be pulled: "
            + (pulled.stderr.strip().splitlines() or ["(no output)"])[-1],
            f"`docker pull {image}` (or `docker load` it) and rerun",
        )
    return info


def _facts(state: _State, images: list[docker_build.Image]) -> dict[str, Any]:
    final = images[-1]
    env_image = images[0] if len(images) > 1 else None
    return {
        "image": final.tag,
        "image_id": final.id,
        "image_digest": final.id,  # local builds have no registry digest; the id is content
        "image_built": final.built,
        "env_image": env_image.tag if env_image else None,
        "env_image_id": env_image.id if env_image else None,
        "env_image_built": env_image.built if env_image else None,
        "base_image": state.plan.base_image if state.plan else None,
        "base_image_id": state.base_id or None,
        "base_image_digest": state.base_digest or None,
        "docker_host": os.environ.get("DOCKER_HOST") or None,
    }
