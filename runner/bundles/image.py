"""`pack --image TAG`: the project as a Docker image, built by the docker kind (its env
layer, then its code at /project) and tagged TAG, so a teammate runs an entry point with
`docker run --rm -v "$PWD/outputs:/run-project/outputs" TAG <command>` (the printed line);
`run_project_client` is in the image, logging to the output directory; the entry points'
commands are printed and kept as a label."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from runner import envs
from runner.envs.docker.cli import docker
from runner.errors import UsageError
from runner.progress import Progress
from runner.project.manifest import Project
from runner.sources.checkout import Checkout
from runner.tracking.client import client_dir

CLIENT = "run_project_client.py"
IMAGE_DIR = "/run-project"  # in the image: the client module and the output directory


def build_image(project: Project, checkout: Checkout, tag: str, progress: Progress) -> None:
    """Build (or reuse, by content) the project's image and tag it `tag`."""
    if not tag or tag.startswith("-") or any(c.isspace() for c in tag):
        raise UsageError(f"--image {tag!r} is not a Docker image tag", "e.g. --image team/churn:1")
    kind = envs.new_kind("docker")  # no -A or --allow-*: what the image holds is the manifest's
    with envs.prepared(kind, project.env, checkout, progress) as env:
        image_id = str(env.lock.facts["image_id"])
    commands = {name: entry.command for name, entry in sorted(project.entry_points.items())}
    become_root, own_user = _user_lines(image_id)
    dockerfile = (
        f"FROM {image_id}\n"
        # `import run_project_client` works outside run-project too (its calls then log
        # to the events file in the output directory, or do nothing without one).
        f"COPY {CLIENT} {IMAGE_DIR}/client/{CLIENT}\n"
        f"ENV PYTHONPATH={IMAGE_DIR}/client${{PYTHONPATH:+:$PYTHONPATH}}\n"
        f"ENV RUN_PROJECT_OUTPUT_DIR={IMAGE_DIR}/outputs\n"
        f"ENV RUN_PROJECT_EVENTS={IMAGE_DIR}/outputs/events.jsonl\n"
        f"{become_root}RUN mkdir -p {IMAGE_DIR}/outputs && chmod 1777 {IMAGE_DIR}/outputs\n"
        f"{own_user}"
        f"LABEL run-project.entry-points={json.dumps(json.dumps(commands))}\n"
        f"LABEL run-project.commit={json.dumps(checkout.commit or '')}\n"
    )
    with tempfile.TemporaryDirectory(prefix="run-project-image-") as context:
        (Path(context) / "Dockerfile").write_text(dockerfile)
        shutil.copyfile(client_dir() / CLIENT, Path(context) / CLIENT)
        docker("build", "-q", "-t", tag, "--", context, timeout=600)
    print(f"built image {tag} (from {image_id[:19]}); entry points, run in /project, "
          "outputs and logged metrics to ./outputs:")  # fmt: skip
    for name, command in commands.items():
        print(f"  {name}: {run_command(tag, command)}")


def run_command(tag: str, command: str) -> str:
    """The `docker run` line a teammate types: the output directory mounted from ./outputs
    (the image's user runs the command, so it can still write in /project)."""
    return f'docker run --rm -v "$PWD/outputs:{IMAGE_DIR}/outputs" {tag} {command}'


def _user_lines(image_id: str) -> tuple[str, str]:
    """Become root for the image's own setup, then give the image its user back."""
    from runner.envs.docker.cli import inspect_image

    info = inspect_image(image_id) or {}
    user = str((info.get("Config") or {}).get("User") or "")
    return ("USER root\n", f"USER {user}\n") if user else ("", "")
