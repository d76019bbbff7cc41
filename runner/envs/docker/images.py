"""Docker images built by run-project, as rows of `envs list` and removals of `envs gc`.

The docker kind's cache entry is a small directory naming its images; the images themselves
live in dockerd. `envs list` shows both, and `envs gc` removes an entry's images with it.
Only images labelled `run-project.managed=true` are ever listed or removed.
"""

from __future__ import annotations

import shutil
from datetime import datetime

from runner.envs.base import EnvRow
from runner.errors import RunnerError


def image_rows() -> list[EnvRow]:
    """Our images in dockerd ([] when docker is absent or not answering)."""
    if shutil.which("docker") is None:
        return []
    from runner.envs.docker import cli as docker_cli

    try:
        images = docker_cli.list_images()
    except RunnerError:
        return []
    return [
        EnvRow(key=image.id.removeprefix("sha256:"), kind=f"docker image ({image.role})",
               size=image.size, last_used=_timestamp(image.created),
               projects=[image.project] if image.project else [], python=None,
               path=image.tags[0] if image.tags else image.id)
        for image in images
    ]  # fmt: skip


def remove_images(refs: list[str]) -> list[str]:
    """Remove our images (a removed cache entry's); returns those that could not go."""
    from runner.envs.docker import cli as docker_cli

    kept = []
    for ref in refs:
        try:
            if not docker_cli.remove_image(ref):
                kept.append(ref)
        except RunnerError:
            kept.append(ref)
    return kept


def _timestamp(created: str) -> float:
    try:
        return datetime.fromisoformat(created.replace("Z", "+00:00")[:26] + "+00:00").timestamp()
    except ValueError:
        return 0.0
