"""Building (or reusing) the images of a plan with `docker build`, the build log kept.

An image whose tag exists and whose labels carry the same content key is reused without
building. A failed build raises an EnvError that shows the log's last lines.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.envs.docker import cli as docker_cli
from runner.envs.docker import context as docker_context
from runner.envs.docker.plan import Layer, Plan
from runner.errors import EnvError
from runner.progress import Progress

LOG_TAIL = 15


@dataclass(frozen=True)
class Image:
    """A ready image of one layer: tag, id, and whether this call built it."""

    role: str
    tag: str
    id: str
    built: bool


def ensure_images(
    plan: Plan, base_id: str, project: str, log_path: Path, progress: Progress
) -> list[Image]:
    """Each layer's image, built on its parent unless an image with its key already exists."""
    parent = base_id
    images = []
    for layer in plan.layers:
        info = docker_cli.inspect_image(layer.tag)
        labels = ((info or {}).get("Config") or {}).get("Labels") or {}
        if info is not None and labels.get(docker_cli.KEY_LABEL) == layer.key:
            progress.step(f"reusing {layer.role} image {layer.tag}")
            images.append(Image(layer.role, layer.tag, str(info["Id"]), built=False))
        else:
            progress.step(f"building {layer.role} image {layer.tag}")
            _build(layer, parent, project, log_path, progress)
            built = docker_cli.inspect_image(layer.tag)
            if built is None:
                raise EnvError(f"docker build reported success but {layer.tag} is missing",
                               "check dockerd's log; then rerun")  # fmt: skip
            images.append(Image(layer.role, layer.tag, str(built["Id"]), built=True))
            progress.done(f"built {layer.role} image {layer.tag}")
        parent = images[-1].id
    return images


def describe(plan: Plan, base_id: str, images: list[Image]) -> str:
    """The Dockerfiles of the images, parents filled in: the lock text kept with each run."""
    parents = [base_id, *(image.id for image in images)]
    text = ""
    for layer, parent, image in zip(plan.layers, parents, images, strict=False):
        body = layer.dockerfile.replace("{parent}", parent)
        if not layer.dockerfile:
            body = f"# (the project's own {layer.dockerfile_name})\n"
        text += f"# {layer.role} image {image.tag} = {image.id}\n{body}\n"
    return text


def _build(layer: Layer, parent: str, project: str, log_path: Path, progress: Progress) -> None:
    extra = dict(layer.extra)
    if layer.dockerfile:
        extra[layer.dockerfile_name] = layer.dockerfile.replace("{parent}", parent).encode()
    labels = {docker_cli.MANAGED_LABEL: "true", docker_cli.ROLE_LABEL: layer.role,
              docker_cli.KEY_LABEL: layer.key, docker_cli.PROJECT_LABEL: project}  # fmt: skip
    args = ["build", "--rm", "--force-rm", "--tag", layer.tag, "--file", layer.dockerfile_name]
    args += [f"--label={name}={value}" for name, value in labels.items()]
    args += [f"--build-arg={name}={value}" for name, value in sorted(layer.build_args.items())]
    if layer.offline:
        args.append("--network=none")  # a wheelhouse build must not need (or use) the network
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=log_path.parent) as context:
        docker_context.write_tar(context, layer.items, layer.prefix, extra)
        context.seek(0)
        code = _run_logged(["docker", *args, "-"], context, log_path, progress)
    if code != 0:
        _remove_intermediates(log_path)
        tail = log_path.read_text(errors="replace").splitlines()[-LOG_TAIL:]
        raise EnvError(
            f"building the {layer.role} image {layer.tag} failed (docker build exit code "
            f"{code}); last lines of the build log:\n  " + "\n  ".join(tail),
            f"the whole log is {log_path}; fix the Dockerfile or requirements and rerun",
        )


def _remove_intermediates(log_path: Path) -> None:
    """The classic builder keeps an untagged image per finished step, also when a later step
    fails; nothing would ever use or list them (they lack our labels), so remove them now.
    Only dangling ones go: the `FROM` step's id is the base image, which is tagged."""
    ids = set(re.findall(r"^ ---> ([0-9a-f]{12})$", log_path.read_text(errors="replace"), re.M))
    dangling = docker_cli.docker("image", "ls", "-q", "--filter", "dangling=true", check=False)
    doomed = sorted(ids & set(dangling.stdout.split()))
    if doomed:
        docker_cli.docker("image", "rm", *doomed, check=False)


def _run_logged(argv: list[str], stdin: Any, log_path: Path, progress: Progress) -> int:
    """Run the build, writing its output to the log and the current step to the progress line."""
    proc = subprocess.Popen(
        argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=docker_cli.client_env(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        with open(log_path, "wb") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                text = line.decode(errors="replace").strip()
                if text.startswith("Step "):
                    progress.update(text[:100])
        return proc.wait()
    except BaseException:
        # Ctrl-C or SIGTERM during a build: closing the client cancels the daemon's build.
        proc.terminate()
        proc.wait()
        raise
