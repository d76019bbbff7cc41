"""The `conda` kind (MLflow's `conda_env` and `--env-manager conda`), built with py-rattler.

A build solves `conda.yaml` for this platform (or takes a shipped `conda-lock.yml` exactly,
with no solve), installs into the staging prefix that `cache.py` hands us with
`alternative_target_prefix` set to the final path (so the rename keeps every embedded path
right), installs the `pip:` section with uv, and returns the solution as a conda-lock.yml.
py-rattler itself runs in a child process: see `conda_worker`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner import cache, settings
from runner.envs import channels, conda_lock, conda_pip, conda_spec
from runner.envs.base import EnvLock, Launch
from runner.envs.conda_lock import Locked
from runner.envs.conda_spec import CondaSpec
from runner.errors import EnvError
from runner.manifest import EnvSpec
from runner.progress import Progress
from runner.sources.checkout import Checkout

# Bump when a change here changes what a build produces: old entries are then not reused.
KIND_VERSION = "1"
PLATFORM = "linux-64" if sys.platform.startswith("linux") else f"{sys.platform}-64"


class CondaEnv:
    """Conda environments from conda.yaml / conda-lock.yml, cached by content."""

    name = "conda"
    builds = True
    relocatable = True

    def key(self, spec: EnvSpec, checkout: Checkout) -> str:
        """Hash of the resolved channels, specs, pip lines and files, or of the shipped lock."""
        conda = conda_spec.load(spec, checkout.path)
        return _key(conda, checkout.path)

    def build(self, spec: EnvSpec, checkout: Checkout, into: Path, progress: Progress) -> EnvLock:
        """Solve (or read the lock), install into `into`, add pip packages, return the lock."""
        conda = conda_spec.load(spec, checkout.path)
        final = _final_path(into, _key(conda, checkout.path))
        with tempfile.TemporaryDirectory(prefix=f"{into.name}-work-", dir=into.parent) as tmp:
            work = Path(tmp)
            if conda.lock is not None:
                return _from_lock(conda, checkout.path, into, final, work, progress)
            return _solved(conda, checkout.path, into, final, work, progress)

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


def _key(conda: CondaSpec, project: Path) -> str:
    material: dict[str, Any] = {"kind_version": KIND_VERSION, "platform": PLATFORM}
    if conda.lock is not None:
        material["lock"] = hashlib.sha256(conda.lock.read_bytes()).hexdigest()
        material["alias"] = channels.alias(project)  # lock URLs are fetched through it
    else:
        material["channels"] = [channels.resolve(c, project) for c in _channel_list(conda)]
        material["specs"] = list(conda.specs)
    material.update(pip=list(conda.pip), pip_files=list(conda.pip_files),
                    variables=list(conda.variables))  # fmt: skip
    blob = json.dumps(material, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def _channel_list(conda: CondaSpec) -> tuple[str, ...]:
    return conda.channels or ("conda-forge",)  # conda's own default is `defaults`: see channels


def _final_path(into: Path, key: str) -> Path:
    """Where `into` will be renamed to (cache.py's layout: `<area>/<key>`)."""
    return into.parent / key if into.name.startswith(cache.STAGING_PREFIX) else into


def _solved(
    conda: CondaSpec, project: Path, into: Path, final: Path, work: Path, progress: Progress
) -> EnvLock:
    if "defaults" in conda.channels:
        progress.warn(f"{conda.source.name}: channel `defaults` is read as conda-forge")
    urls = [channels.resolve(c, project) for c in _channel_list(conda)]
    shown = ", ".join(channels.short_name(channels.canonical(u, project)) for u in urls)
    progress.step(f"solving conda environment {conda.source.name} ({shown})")
    request = {"mode": "solve", "channels": urls, "specs": list(conda.specs)}
    records = _run_worker(request, into, final, work, progress)
    pip: list[Locked] = []
    if conda.pip:
        python = _python(into, conda)
        progress.step(f"installing {len(conda.pip)} pip requirement(s) with uv")
        pip = conda_pip.resolve(conda.pip, conda.source.parent, python, work, progress)
        conda_pip.install(pip, conda.source.parent, python, work, progress)
        conda_pip.fix_shebangs(into, into, final)
    _write_state(into, conda)
    progress.done(f"conda environment built: {len(records)} conda, {len(pip)} pip packages")
    locked = [_locked_conda(r, project) for r in records]
    text = conda_lock.write(
        [*locked, *pip],
        PLATFORM,
        [channels.short_name(channels.canonical(u, project)) for u in urls],
        [os.path.relpath(conda.source, os.path.realpath(project))],
        _key(conda, project),
    )
    return EnvLock("conda-lock.yml", text, _facts("solved", records, pip, shown))


def _from_lock(
    conda: CondaSpec, project: Path, into: Path, final: Path, work: Path, progress: Progress
) -> EnvLock:
    assert conda.lock is not None
    contents = conda_lock.read(conda.lock, PLATFORM)
    progress.step(f"installing exactly from {conda.lock.name} (no solve)")
    locked = [{"url": channels.to_mirror(p.url, project), "sha256": p.sha256, "md5": p.md5}
              for p in contents.conda]  # fmt: skip
    records = _run_worker({"mode": "locked", "locked": locked}, into, final, work, progress)
    if contents.pip:
        for entry in contents.pip:  # a local file a lock names must be in the project too
            if "://" not in entry.url:
                rel = os.path.relpath(conda.lock.parent / entry.url, os.path.realpath(project))
                conda_spec.inside(project, rel, f"{conda.lock.name} pip url")
        progress.step(f"installing {len(contents.pip)} locked pip package(s) with uv")
        python = _python(into, conda)
        conda_pip.install(list(contents.pip), conda.lock.parent, python, work, progress)
        conda_pip.fix_shebangs(into, into, final)
    _write_state(into, conda)
    progress.done(f"conda environment built from {conda.lock.name}: {len(records)} packages")
    facts = _facts("conda-lock.yml", records, list(contents.pip), "from lock")
    return EnvLock("conda-lock.yml", conda.lock.read_text(), facts)


def _locked_conda(record: dict[str, Any], project: Path) -> Locked:
    return Locked(
        "conda", record["name"], record["version"], channels.canonical(record["url"], project),
        record["sha256"], record["md5"], conda_lock.dependencies(record["depends"]),
    )  # fmt: skip


def _python(prefix: Path, conda: CondaSpec) -> Path:
    python = prefix / "bin" / "python"
    if not python.exists():
        raise EnvError(
            f"{conda.source.name} has a pip: section but its environment has no python",
            "add `python` (e.g. `python=3.11`) to its dependencies",
        )
    return python


def _write_state(prefix: Path, conda: CondaSpec) -> None:
    """`variables:` go where conda keeps them (conda-meta/state), read back by `command`."""
    if conda.variables:
        state = {"env_vars": dict(conda.variables)}
        (prefix / "conda-meta" / "state").write_text(json.dumps(state, indent=2))


def _variables(env_dir: Path) -> dict[str, str]:
    try:
        state = json.loads((env_dir / "conda-meta" / "state").read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in (state.get("env_vars") or {}).items()}


def _facts(
    source: str, records: list[dict[str, Any]], pip: list[Locked], shown: str
) -> dict[str, Any]:
    python = next((r["version"] for r in records if r["name"] == "python"), None)
    return {"source": source, "platform": PLATFORM, "channels": shown, "python": python,
            "conda_packages": len(records), "pip_packages": len(pip)}  # fmt: skip


def _run_worker(
    request: dict[str, Any], into: Path, final: Path, work: Path, progress: Progress
) -> list[dict[str, Any]]:
    """Run `conda_worker` on `request`; its records, or an EnvError saying what failed."""
    pkgs = settings.cache_dir() / "conda-pkgs"
    request = {**request, "prefix": str(into), "final": str(final), "pkgs_dir": str(pkgs),
               "repodata_dir": str(settings.cache_dir() / "conda-repodata"),
               "platform": PLATFORM}  # fmt: skip
    (work / "request.json").write_text(json.dumps(request))
    result_path = work / "result.json"
    code = _spawn([str(work / "request.json"), str(result_path)], work, progress)
    try:
        result = json.loads(result_path.read_text())
    except (OSError, ValueError):
        stderr = (work / "worker.stderr").read_text(errors="replace")[-2000:]
        raise EnvError(
            f"the conda installer (py-rattler) died with exit code {code} before finishing:\n"
            + channels.redact(stderr),
            "run again; if it repeats, report it with this output",
        ) from None
    if not result["ok"]:
        raise _worker_error(result)
    records: list[dict[str, Any]] = result["records"]
    return records


def _spawn(args: list[str], work: Path, progress: Progress) -> int:
    import importlib.util

    if importlib.util.find_spec("rattler") is None:
        raise EnvError(
            "conda environments need py-rattler, which is not installed",
            "pip install 'run-project[conda]' (or: pip install py-rattler)",
        )
    env = dict(os.environ)
    # The worker imports this very package, wherever it was run from.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    with open(work / "worker.stderr", "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner.envs.conda_worker", *args],
            stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, env=env, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                _relay(line, progress)
            return proc.wait()
        except BaseException:  # Ctrl-C or SIGTERM: stop the worker before cache.py cleans up
            proc.kill()
            proc.wait()
            raise


def _relay(line: str, progress: Progress) -> None:
    try:
        event = json.loads(line)
    except ValueError:
        return
    if isinstance(event, dict) and event.get("step"):
        progress.step(str(event["step"]))
    elif isinstance(event, dict) and event.get("update"):
        progress.update(str(event["update"]))


def _worker_error(result: dict[str, Any]) -> EnvError:
    message = channels.redact(str(result.get("message", "")))
    kind = result.get("error")
    hints = {
        "unsatisfiable": "relax the version constraints named above in the conda environment file",
        "spec": "fix that dependency line: conda match specs look like `numpy >=1.26,<2`",
        "channel": "check the channels: list",
        "fetch": "check the channel names and the channel alias (--channel-alias, "
        "RUN_PROJECT_CHANNEL_ALIAS); is the mirror reachable?",
        "hash": "the channel served a file other than the one it (or the lock) names; "
        "check the mirror, or regenerate the lock file",
        "install": "if it says hash mismatch, the channel or mirror serves corrupt or altered "
        "packages; otherwise check disk space and the package named above",
    }
    whats = {"unsatisfiable": "the conda environment cannot be solved",
             "hash": "a conda package failed its hash check",
             "spec": "the conda environment file has a malformed dependency"}  # fmt: skip
    what = whats.get(str(kind), "conda failed")
    return EnvError(f"{what}: {message}", hints.get(str(kind), "report this with the message"))
