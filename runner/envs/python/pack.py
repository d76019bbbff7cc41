"""`pack` for virtualenv projects: the pylock.toml of the environment built here, or one
resolved for another platform with `uv pip compile --python-platform` (uv keeps only that
platform's wheels), and with --with-deps every wheel it installs, in the bundle.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from runner.envs.base import EnvKind, Packed, PackInto
from runner.envs.python import inputs as python_inputs
from runner.envs.python import uvtool
from runner.errors import EnvError
from runner.progress import Progress
from runner.project.manifest import EnvSpec
from runner.sources.checkout import Checkout

# conda subdir → uv's --python-platform (glibc 2.28: what current manylinux wheels need).
# Its keys are the platforms `pack --platform` accepts.
UV_PLATFORMS = {
    "linux-64": "x86_64-manylinux_2_28",
    "linux-aarch64": "aarch64-manylinux_2_28",
    "osx-64": "x86_64-apple-darwin",
    "osx-arm64": "aarch64-apple-darwin",
    "win-64": "x86_64-pc-windows-msvc",
}


def pack_built(
    kind: EnvKind, spec: EnvSpec, checkout: Checkout, into: PackInto, progress: Progress
) -> Packed:
    """Build (or reuse) the environment here, write its lock into the bundle and, with
    --with-deps, the wheels it installed."""
    from runner.envs import prepared

    with prepared(kind, spec, checkout, progress) as env:  # in use while its wheels are read
        name, text = env.lock.lock_name, env.lock.lock_text
        if name is None or text is None:
            return Packed()
        wheels: list[dict[str, str]] = []
        if into.with_deps and name == "pylock.toml" and env.env_dir is not None:
            progress.step("downloading the wheels of " + name)
            text, wheels = _bundle_wheels(text, env.env_dir, into)
        elif into.with_deps:
            raise EnvError(
                f"--with-deps cannot bundle the packages of {name} yet",
                "pack without --with-deps (the lock is still included)",
            )
    (into.top / name).write_text(text)
    return Packed(name, tuple(wheels))


def pack_foreign(
    spec: EnvSpec, checkout: Checkout, into: PackInto, platform: str, progress: Progress
) -> Packed:
    """Resolve the project for `platform`, write the lock into the bundle and, with
    --with-deps, that platform's wheels."""
    inputs = python_inputs.detect(spec, checkout.path)
    if inputs.lock is not None:  # the project's own lock is packed with it and wins
        if into.with_deps:
            raise EnvError(
                f"--with-deps --platform {platform}: the project ships {inputs.lock.name}, "
                "whose wheels for another platform cannot be chosen here yet",
                "pack without --with-deps, or on a machine of that platform",
            )
        (into.top / inputs.lock.name).write_text(inputs.lock.read_text())
        return Packed(inputs.lock.name)
    version = _python_version(inputs.python)
    progress.step(f"resolving {inputs.source} for {platform} (Python {version})")
    with tempfile.TemporaryDirectory(prefix="run-project-platform-") as tmp:
        source = inputs.pyproject
        if source is None:
            source = Path(tmp) / "requirements.in"
            source.write_text("".join(line + "\n" for line in inputs.requirements))
        out = Path(tmp) / "pylock.toml"
        args = ["pip", "compile", "--format", "pylock.toml", "--no-header",
                "--python-platform", UV_PLATFORMS[platform], "--python-version", version,
                str(source), "-o", str(out)]  # fmt: skip
        uvtool.run(args, progress, checkout.path, f"resolving {inputs.source} for {platform}")
        text = out.read_text()
    wheels: list[dict[str, str]] = []
    if into.with_deps:
        progress.step(f"downloading the {platform} wheels of pylock.toml")
        text, wheels = _bundle_wheels(text, None, into)
    (into.top / "pylock.toml").write_text(text)
    return Packed("pylock.toml", tuple(wheels))


def _bundle_wheels(
    text: str, env_dir: Path | None, into: PackInto
) -> tuple[str, list[dict[str, str]]]:
    """The wheels into the bundle's wheels/, the lock rewritten to point at them."""
    from runner.envs.python.wheelhouse import bundle_wheels

    prefix = (into.files / "wheels").relative_to(into.top).as_posix()
    return bundle_wheels(text, env_dir, into.top / prefix, prefix)


def _python_version(requested: str | None) -> str:
    """`X.Y` of the Python the project asks for, else of the one running run-project."""
    if requested:
        parts = requested.strip().lstrip("=~<>!").split(".")
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            return f"{parts[0]}.{parts[1]}"
    return f"{sys.version_info.major}.{sys.version_info.minor}"
