"""Building one virtualenv with uv, its independent steps side by side.

    uv venv ───────── file checks ─┐
    uv pip compile (or uv export) ─┴─ uv pip sync --offline ─ (then online) ── built

The resolution runs against the base interpreter the venv is made from (the same markers),
so it need not wait for the venv. The install is tried from uv's cache alone first: a lock
pins every file by URL and hash, so a cached file is that very file, and asking the index
about it again only costs time; a lock naming a file uv's cache lacks goes to the network.
Every process is started from the calling (main) thread, and all are killed if a step fails.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runner.envs.python import uv_index, uvtool
from runner.envs.python.interpreters import Interpreter
from runner.envs.python.layout import (
    LOCK_NAME,
    META,
    read_pyvenv_cfg,
    venv_problems,
    venv_python,
)
from runner.envs.python.requested import PythonInputs
from runner.errors import EnvError
from runner.progress import Progress

# What uv says when --offline meets a file it does not hold.
OFFLINE_MISS = "Network connectivity is disabled"
_REPAIR = "repair or reinstall that Python (e.g. `pyenv install --force`), then run again"


@dataclass(frozen=True)
class Built:
    """What a build produced: the installed lock, its packages (name → version), uv's version."""

    lock_text: str
    packages: dict[str, str]
    installer: str


class _Steps:
    """The uv processes of one build, started in `project`; `stop_all` ends any still running."""

    def __init__(self, project: Path) -> None:
        self.project = project
        self.started: list[uvtool.Running] = []

    def start(self, args: list[str]) -> uvtool.Running:
        self.started.append(uvtool.start(args, self.project))
        return self.started[-1]

    def stop_all(self) -> None:
        for running in self.started:
            running.stop()


def build(
    inputs: PythonInputs, interp: Interpreter, into: Path, project: Path, progress: Progress
) -> Built:
    """Create the venv in `into` (empty), resolve (or take the project's lock) and install it."""
    meta = into / META
    meta.mkdir()
    policy = uv_index.pypi_policy(project, meta)
    steps = _Steps(project)
    try:
        venv = steps.start(["venv", "--allow-existing", "--relocatable", "--no-python-downloads",
                            "--python", str(interp.path), str(into)])  # fmt: skip
        lock, resolving, what = _start_lock(inputs, interp, meta, steps, policy)
        venv.wait(progress, "creating the virtualenv")
        _check_files(into, interp)
        if resolving is not None:
            if what.startswith("resolving"):
                progress.step(what)
            resolving.wait(progress, what)
        text, packages = _read_lock(lock)
        progress.step(f"installing {_summary(packages)} from {lock.name}")
        try:
            _sync(lock, into, steps, policy, progress)
        except EnvError:
            check_interpreter(into, interp)  # uv could not start it: say so, with the fix
            raise
    finally:
        steps.stop_all()
    return Built(text, packages, _installer(into))


def _start_lock(
    inputs: PythonInputs, interp: Interpreter, meta: Path, steps: _Steps, policy: list[str]
) -> tuple[Path, uvtool.Running | None, str]:
    """The pylock.toml to install: the project's own, exported from uv.lock, or resolved;
    with the uv process that makes it (still running) and what it does, for messages."""
    if inputs.lock is not None and inputs.lock.name == LOCK_NAME:
        return inputs.lock, None, ""
    out = meta / LOCK_NAME
    if inputs.lock is not None:  # uv.lock: exactly what it pins, without the project itself
        args = ["export", "--frozen", "--format", "pylock.toml", "--no-emit-project",
                "--no-header", "--no-python-downloads", "-o", str(out)]  # fmt: skip
        return out, steps.start(args), "exporting uv.lock"
    if inputs.pyproject is not None:
        source = inputs.pyproject
    else:
        source = meta / "requirements.in"
        source.write_text("".join(line + "\n" for line in inputs.requirements))
    args = ["pip", "compile", *policy, "--format", "pylock.toml", "--no-header",
            "--python", str(interp.path), str(source), "-o", str(out)]  # fmt: skip
    return out, steps.start(args), f"resolving {inputs.source}"


def _sync(lock: Path, into: Path, steps: _Steps, policy: list[str], progress: Progress) -> None:
    """`uv pip sync` of the lock: from uv's cache alone, else (files missing) online."""
    args = ["pip", "sync", "--preview-features", "pylock", "--python", str(venv_python(into)),
            str(lock)]  # fmt: skip
    what = "installing " + lock.name
    if os.environ.get("UV_OFFLINE"):  # the user's own choice: one attempt, as asked
        steps.start(args).wait(progress, what)
        return
    code, _, err = steps.start([*args, "--offline"]).finish(progress)
    if code == 0:
        return
    # Usually a file uv's cache does not hold; any other failure repeats online and is
    # reported from there, so nothing hangs on the wording of uv's messages.
    if any(OFFLINE_MISS in line for line in err):
        progress.update("downloading what uv's cache does not hold")
    steps.start([*args, *policy]).wait(progress, what)


def _installer(into: Path) -> str:
    """'uv 0.13.9': the uv that made the venv writes its version into pyvenv.cfg, which
    spares starting `uv --version`."""
    cfg = read_pyvenv_cfg(into / "pyvenv.cfg") or {}
    return f"uv {cfg['uv']}" if cfg.get("uv") else uvtool.uv_version()


def _read_lock(lock: Path) -> tuple[str, dict[str, str]]:
    """The lock's text, and name → version of its packages (what `runs compare` shows)."""
    import tomllib  # here, not at the top: a warm run reuses the env and never parses it

    try:
        text = lock.read_text()
        packages = tomllib.loads(text).get("packages") or []
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise EnvError(f"cannot read {lock}: {exc}", "fix or regenerate the lock file") from exc
    found = {str(p.get("name")): str(p.get("version", "")) for p in packages if isinstance(p, dict)}
    return text, found


def _summary(packages: dict[str, str]) -> str:
    """ "3 packages: idna, pip, six" (the first few names), for progress lines."""
    names = list(packages)
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    return f"{len(names)} packages" + (f": {shown}" if names else "")


def _check_files(into: Path, interp: Interpreter) -> None:
    """A venv whose interpreter is incomplete is not kept (file checks, no process)."""
    problems = venv_problems(into)
    if problems:
        raise EnvError(
            f"Python {interp.version} at {interp.path} is incomplete: " + "; ".join(problems),
            _REPAIR,
        )


def check_interpreter(into: Path, interp: Interpreter) -> None:
    """An EnvError when the venv's interpreter is incomplete or cannot start. Run only after
    an install failed: `uv pip sync` starts the interpreter itself, so on success it can."""
    _check_files(into, interp)
    proc = subprocess.run(
        [str(venv_python(into)), "-c", "import site, sys"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[:5])
        raise EnvError(f"Python {interp.version} at {interp.path} cannot start:\n{tail}", _REPAIR)
