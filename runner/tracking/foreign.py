"""Paths in events written where the run's files are seen under other names: in a container
(docker kind) or on a cluster node (Ray, Slurm).

Such a path means a file in the command's own view, not on this machine. Only what lies in
the directories the run shares with its command (the working copy, the output dir) has a
copy here: those paths are mapped to this machine's, and every other path is refused, so an
events file naming `/etc/shadow` reads nothing of the host's
(docs/security.md#outputs-artifacts-and-the-store).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from pathlib import Path

# The names a kind or backend gives the run's shared directories (`Launch.view`).
WORKDIR, OUTPUTS, RETURNED = "workdir", "outputs", "returned"


class ForeignView:
    """How the command saw the run's directories: {its path: the directory here}."""

    def __init__(self, roots: Mapping[str, Path], workdir: Path) -> None:
        self.roots = dict(roots)
        self.workdir = workdir

    @classmethod
    def of(
        cls, view: Mapping[str, str], workdir: Path, output_dir: Path, run_dir: Path
    ) -> ForeignView:
        """`view` names each directory of the command's by what it holds (WORKDIR, OUTPUTS);
        this machine's own paths of those directories map to themselves."""
        here = {WORKDIR: workdir, OUTPUTS: output_dir, RETURNED: run_dir / "workdir"}
        roots = {str(path): path for path in here.values()}
        roots.update({theirs: here[name] for theirs, name in view.items()})
        return cls(roots, workdir)

    def local(self, raw: str) -> Path | None:
        """The file here that `raw` names in the command's view; None: none of the run's."""
        joined = raw if raw.startswith("/") else posixpath.join(str(self.workdir), raw)
        clean = posixpath.normpath(joined)
        for theirs, here in sorted(self.roots.items(), key=lambda kv: -len(kv[0])):
            top = theirs.rstrip("/") or "/"
            if clean != top and not clean.startswith(top.rstrip("/") + "/"):
                continue
            local = here / clean[len(top) :].lstrip("/")
            # A link in the working copy may not lead the mapped path out again.
            real, base = os.path.realpath(local), os.path.realpath(here)
            return local if os.path.commonpath([real, base]) == base else None
        return None
