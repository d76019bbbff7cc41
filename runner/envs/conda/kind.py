"""The `conda` kind (MLflow's `conda_env` and `--env-manager conda`), built with py-rattler.

This module is what every run imports (the registry), so it holds only the cheap parts:
the health check and how to run inside a prefix. Building is in `conda_build` (solve or
lock, install, pip section, lock file) and py-rattler runs in a child: see `conda_worker`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from runner.envs.base import EnvLock, KindDefaults, KindOptions, Launch, Packed, PackInto
from runner.errors import EnvError
from runner.progress import Progress
from runner.project.manifest import EnvSpec
from runner.sources.checkout import Checkout


class CondaEnv(KindDefaults):
    """Conda environments from conda.yaml / conda-lock.yml, cached by content."""

    name = "conda"
    builds = True
    relocatable = True

    def __init__(self, channel_alias: str | None = None) -> None:
        #: --channel-alias; None: RUN_PROJECT_CHANNEL_ALIAS, run-project.toml or the default.
        self.channel_alias = channel_alias

    def configured(self, options: KindOptions) -> CondaEnv:
        """This kind with the run's --channel-alias."""
        return CondaEnv(options.get("channel_alias"))

    def key(self, spec: EnvSpec, checkout: Checkout) -> str:
        """Hash of the resolved channels, specs, pip lines and files, or of the shipped lock."""
        from runner.envs.conda import channels  # imported only by runs that use conda
        from runner.envs.conda import spec as conda_spec

        with channels.flagged(self.channel_alias):
            return conda_spec.key(conda_spec.load(spec, checkout.path), checkout.path)

    def build(self, spec: EnvSpec, checkout: Checkout, into: Path, progress: Progress) -> EnvLock:
        """Solve (or read the lock), install into `into`, add pip packages, return the lock."""
        from runner.envs.conda import build as conda_build
        from runner.envs.conda import channels

        with channels.flagged(self.channel_alias):
            return conda_build.build(spec, checkout.path, into, progress)

    def pack_lock(
        self, spec: EnvSpec, checkout: Checkout, into: PackInto, progress: Progress
    ) -> Packed:
        """The conda-lock.yml of the environment built here, where the run will find it."""
        from runner.envs.conda import bundle, channels

        with channels.flagged(self.channel_alias):
            return bundle.pack_built(self, spec, checkout, into, progress)

    def foreign_lock(
        self, spec: EnvSpec, checkout: Checkout, into: PackInto, platform: str, progress: Progress
    ) -> Packed:
        """A solve for `platform` (nothing installed), written where the run will find it."""
        from runner.envs.conda import bundle, channels

        with channels.flagged(self.channel_alias):
            return bundle.pack_foreign(spec, checkout, into, platform, progress)

    def healthy(self, env_dir: Path) -> bool:
        """conda-meta is there, and every file of the `python` package (if any) still is."""
        meta = env_dir / "conda-meta"
        if not meta.is_dir():
            return False
        for record in meta.glob("python-[0-9]*.json"):
            try:
                files = json.loads(record.read_text()).get("files", [])
            except (OSError, ValueError):
                return False
            # exists() follows symlinks: a deleted host interpreter fails here too
            if not all(os.path.exists(env_dir / f) for f in files):
                return False
        return True

    def command(
        self, env_dir: Path | None, argv: tuple[str, ...], env: Mapping[str, str]
    ) -> Launch:
        """Run with the prefix's bin first on PATH, as `conda activate` would."""
        if env_dir is None:
            raise EnvError("the conda environment was not built", "this is a bug; please report")
        new = dict(env)
        new.pop("VIRTUAL_ENV", None)  # the runner's own venv must not leak into the child
        new.pop("PYTHONHOME", None)
        new["PATH"] = os.pathsep.join(filter(None, [str(env_dir / "bin"), env.get("PATH")]))
        new.update(CONDA_PREFIX=str(env_dir), CONDA_DEFAULT_ENV=str(env_dir))
        new.update(_variables(env_dir))
        python = env_dir / "bin" / "python"
        if argv and argv[0] == "python" and python.exists():
            argv = (str(python), *argv[1:])
        return Launch(argv=argv, env=new)


def _variables(env_dir: Path) -> dict[str, str]:
    try:
        state = json.loads((env_dir / "conda-meta" / "state").read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in (state.get("env_vars") or {}).items()}
