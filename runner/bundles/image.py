"""`pack --image TAG`: the project as a Docker image, built by the docker kind (its env
layer, then its code at /project) and tagged TAG, so a teammate runs an entry point with
`docker run --rm TAG <command>`; the entry points' commands are printed and kept as a label."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from runner import envs
from runner.envs.docker.cli import docker
from runner.errors import EnvError
from runner.progress import Progress
from runner.project.manifest import Project
from runner.sources.checkout import Checkout


def build_image(project: Project, checkout: Checkout, tag: str, progress: Progress) -> None:
    """Build (or reuse, by content) the project's image and tag it `tag`."""
    if not tag or tag.startswith("-") or any(c.isspace() for c in tag):
        raise EnvError(f"--image {tag!r} is not a Docker image tag", "e.g. --image team/churn:1")
    kind = envs.new_kind("docker")  # no -A or --allow-*: what the image holds is the manifest's
    with envs.prepared(kind, project.env, checkout, progress) as env:
        image_id = str(env.lock.facts["image_id"])
    commands = {name: entry.command for name, entry in sorted(project.entry_points.items())}
    dockerfile = (
        f"FROM {image_id}\n"
        f"LABEL run-project.entry-points={json.dumps(json.dumps(commands))}\n"
        f"LABEL run-project.commit={json.dumps(checkout.commit or '')}\n"
    )
    with tempfile.TemporaryDirectory(prefix="run-project-image-") as context:
        (Path(context) / "Dockerfile").write_text(dockerfile)
        docker("build", "-q", "-t", tag, "--", context, timeout=600)
    print(f"built image {tag} (from {image_id[:19]}); entry points, run in /project:")
    for name, command in commands.items():
        print(f"  {name}: docker run --rm {tag} {command}")
