"""The `local` kind: no isolation; the command runs with this machine's PATH (MLflow's
`--env-manager local`)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from runner.envs.base import EnvLock, KindDefaults, Launch
from runner.progress import Progress
from runner.project.manifest import EnvSpec
from runner.sources.checkout import Checkout


class LocalEnv(KindDefaults):
    """Runs commands as they are; `python` is the one on PATH (else this interpreter)."""

    name = "local"
    builds = False
    relocatable = True

    def key(self, spec: EnvSpec, checkout: Checkout) -> str:
        return "local"

    def build(self, spec: EnvSpec, checkout: Checkout, into: Path, progress: Progress) -> EnvLock:
        return EnvLock()

    def healthy(self, env_dir: Path) -> bool:
        return True

    def command(
        self, env_dir: Path | None, argv: tuple[str, ...], env: Mapping[str, str]
    ) -> Launch:
        if argv and argv[0] == "python" and shutil.which("python", path=env.get("PATH")) is None:
            argv = (sys.executable, *argv[1:])
        return Launch(argv=argv, env=env)
