"""Containers whose run is over, found and removed by `envs gc`.

A run's container goes away when its command ends (run-project copies out what it wrote
in /project, then removes it) or when run-project stops it. A runner killed with -9 can do
neither: its docker client dies with it, but the container runs on. Every container
run-project starts carries its run's id as a label, so `envs gc` can ask the store about
each one: a container whose run is no longer active (LOST once the store's sweep has seen
the runner gone, or ended) is removed. A container whose run this store does not know
belongs to another store and is left alone.
"""

from __future__ import annotations

import shutil

from runner.envs.docker import cli as docker_cli
from runner.errors import RunnerError
from runner.tracking.record import ACTIVE
from runner.tracking.store import Store


def labelled_containers() -> list[tuple[str, str]]:
    """(container id, run id) of every container run-project started, running or not; empty
    when docker is not installed or its daemon does not answer (nothing to clean then)."""
    if shutil.which("docker") is None:
        return []
    run_label = f'{{{{.Label "{docker_cli.RUN_LABEL}"}}}}'
    proc = docker_cli.docker(
        "ps", "--all", "--no-trunc", "--filter", f"label={docker_cli.MANAGED_LABEL}=true",
        "--format", "{{.ID}}\t" + run_label, check=False, timeout=30,
    )  # fmt: skip
    if proc.returncode != 0:
        return []
    found = []
    for line in proc.stdout.splitlines():
        container, _, run_id = line.partition("\t")
        if container and run_id:
            found.append((container, run_id))
    return found


def remove_orphans(store: Store, dry_run: bool) -> list[str]:
    """Remove the containers of runs that are over; returns one line per container."""
    containers = labelled_containers()
    if not containers:
        return []
    store.sweep_lost()  # a runner killed with -9 leaves its run active until swept
    lines = []
    for container, run_id in containers:
        try:
            status = store.get_run(run_id)["status"]
        except RunnerError:
            continue  # not a run of this store: another store's to judge
        if status in ACTIVE:
            continue
        what = f"container {container[:12]} of {status} run {run_id[:8]}"
        if dry_run:
            lines.append(f"would remove {what}")
        else:
            docker_cli.remove_container(container)
            lines.append(f"removed {what}")
    return lines
