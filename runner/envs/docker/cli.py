"""The docker command-line client, called as a subprocess (no docker-py: 108 ms of imports and a
dependency for what a few CLI calls do). Also the image listing that `envs list|gc` uses: only
images labelled as ours are ever listed or removed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from runner.errors import EnvError

MANAGED_LABEL = "run-project.managed"
ROLE_LABEL = "run-project.role"
KEY_LABEL = "run-project.key"
PROJECT_LABEL = "run-project.project"
RUN_LABEL = "run-project.run"
OUR_REPOSITORIES = ("run-project/", "run-project-env:")


def client_env() -> dict[str, str]:
    """The environment for the docker client: the user's (DOCKER_HOST, config), legacy builder.

    The classic builder is asked for explicitly: it builds `FROM <image id>` from local images
    and needs no buildx plugin, which Debian's docker.io does not ship.
    """
    return {**os.environ, "DOCKER_BUILDKIT": "0", "DOCKER_CLI_HINTS": "false"}


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `docker ARGS`, capturing text output; a failure is an EnvError naming the call."""
    if shutil.which("docker") is None:
        raise EnvError(
            "the docker command is not installed",
            "install Docker (Debian: apt-get install docker.io) or choose another --env-manager",
        )
    try:
        proc = subprocess.run(
            ["docker", *args], capture_output=True, text=True, env=client_env(),
            timeout=timeout, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise EnvError(
            f"`docker {args[0]}` did not answer in {timeout:.0f}s", _DAEMON_HINT
        ) from exc
    if check and proc.returncode != 0:
        raise EnvError(f"`docker {' '.join(args[:3])}` failed: {_last(proc.stderr)}", _DAEMON_HINT)
    return proc


_DAEMON_HINT = "check that dockerd is running and that you may use it (`docker info`)"


def _last(text: str, lines: int = 3) -> str:
    return " / ".join(text.strip().splitlines()[-lines:]) or "(no output)"


def inspect_image(ref: str) -> dict[str, Any] | None:
    """`docker image inspect REF` as a dict, or None when there is no such image here."""
    proc = docker("image", "inspect", "--", ref, check=False)
    if proc.returncode != 0:
        if "No such" in proc.stderr or "no such" in proc.stderr:
            return None
        raise EnvError(f"`docker image inspect {ref}` failed: {_last(proc.stderr)}", _DAEMON_HINT)
    data: list[dict[str, Any]] = json.loads(proc.stdout)
    return data[0] if data else None


def image_digest(info: dict[str, Any]) -> str:
    """The registry digest of an image if it has one (pulled/pushed), else its local id."""
    digests = info.get("RepoDigests") or []
    return str(digests[0]) if digests else str(info["Id"])


@dataclass(frozen=True)
class ImageInfo:
    """One image built by run-project, as `envs list` shows it."""

    id: str
    tags: tuple[str, ...]
    role: str
    key: str
    project: str
    created: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": "docker", "id": self.id, "tags": list(self.tags), "role": self.role,
                "key": self.key, "project": self.project, "created": self.created,
                "size": self.size}  # fmt: skip


def list_images() -> list[ImageInfo]:
    """Images labelled as built by run-project (never any other); [] when docker is absent."""
    if shutil.which("docker") is None:
        return []
    proc = docker("image", "ls", "-q", "--no-trunc", "--filter", f"label={MANAGED_LABEL}=true")
    ids = sorted(set(proc.stdout.split()))
    if not ids:
        return []
    # An image removed between `ls` and `inspect` (another run's gc) is simply gone: docker
    # still prints the others and exits 1, which is not an error here.
    found = docker("image", "inspect", *ids, check=False).stdout.strip()
    infos: list[dict[str, Any]] = json.loads(found) if found.startswith("[") else []
    return [_image_info(info) for info in infos if _is_ours(info)]


def _is_ours(info: dict[str, Any]) -> bool:
    labels = (info.get("Config") or {}).get("Labels") or {}
    return labels.get(MANAGED_LABEL) == "true"


def _image_info(info: dict[str, Any]) -> ImageInfo:
    labels = (info.get("Config") or {}).get("Labels") or {}
    return ImageInfo(
        id=str(info["Id"]),
        tags=tuple(info.get("RepoTags") or ()),
        role=labels.get(ROLE_LABEL, ""),
        key=labels.get(KEY_LABEL, ""),
        project=labels.get(PROJECT_LABEL, ""),
        created=str(info.get("Created", "")),
        size=int(info.get("Size") or 0),
    )


def remove_image(ref: str) -> bool:
    """Remove one of our images (by id or tag); False if a container still uses it.

    An image without our label is refused: `envs gc` must never touch anyone else's images.
    """
    info = inspect_image(ref)
    if info is None:
        return True
    if not _is_ours(info):
        raise EnvError(
            f"image {ref} was not built by run-project (no {MANAGED_LABEL}=true label)",
            "remove it with docker itself if you really mean to",
        )
    all_tags = list(info.get("RepoTags") or [])
    tags = [t for t in all_tags if t.startswith(OUR_REPOSITORIES)]
    if len(tags) < len(all_tags):
        # Someone tagged our image for themselves: drop only our names; theirs keeps it.
        if tags:
            docker("image", "rm", "--no-prune", *tags, check=False)
        return True
    proc = docker("image", "rm", *(tags or [str(info["Id"])]), check=False)
    if proc.returncode != 0:
        if "conflict" in proc.stderr or "being used" in proc.stderr:
            return False
        raise EnvError(f"cannot remove image {ref}: {_last(proc.stderr)}", _DAEMON_HINT)
    return True


def remove_container(name: str) -> None:
    """Kill and remove a run's container if it is still there (idempotent)."""
    if shutil.which("docker") is not None:
        docker("rm", "--force", "--volumes", name, check=False, timeout=60)
