"""The registry of environment kinds, and the choice of kind for a run.

Adding a kind: one module with a class satisfying `EnvKind`, one entry in `KINDS`.
"""

from __future__ import annotations

from runner.envs.base import EnvKind
from runner.envs.local import LocalEnv
from runner.errors import EnvError
from runner.manifest import EnvSpec

KINDS: dict[str, EnvKind] = {"local": LocalEnv()}
# --env-manager spellings (MLflow's) → kind names.
MANAGERS = {
    "local": "local",
    "virtualenv": "virtualenv",
    "uv": "virtualenv",
    "conda": "conda",
    "docker": "docker",
}


def select(env_manager: str | None, declared: EnvSpec) -> EnvKind:
    """The kind for this run: --env-manager if given, else what the manifest declares."""
    if env_manager is not None and env_manager not in MANAGERS:
        raise EnvError(
            f"unknown --env-manager {env_manager!r}", "choose one of: " + ", ".join(MANAGERS)
        )
    wanted = MANAGERS[env_manager] if env_manager else (declared.kind or "local")
    if wanted not in KINDS:
        raise EnvError(
            f"environment kind '{wanted}' is not available in this version of run-project",
            "run with --env-manager local to use this machine's Python",
        )
    return KINDS[wanted]
